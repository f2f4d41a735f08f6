"""The Fisher-vector products against a Fisher materialised exactly, and the likelihoods against the core's Task."""

import pytest
import torch
from torch import nn

from oral6_core.components import Task
from oral6_fishleg import (
    BernoulliLikelihood, CategoricalLikelihood, FishLeg, FishLegConfig, GaussianLikelihood, likelihood_for_task,
)
import itertools

from oral6_fishleg.fisher import exact_fisher, fisher_vector_product


DT = torch.float64


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def exact_categorical_fisher(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """F = (1/N) Σₙ Σ_c p(c | xₙ) ∇ℓ(xₙ, c) ∇ℓ(xₙ, c)ᵀ, enumerating every label."""
    params = list(model.parameters())
    size = sum(p.numel() for p in params)
    fisher = torch.zeros(size, size, dtype=DT)
    for n in range(x.shape[0]):
        probs = model(x[n : n + 1]).softmax(-1)[0].detach()
        for c in range(probs.shape[0]):
            loss = nn.functional.cross_entropy(model(x[n : n + 1]), torch.tensor([c]))
            g = flat(torch.autograd.grad(loss, params))
            fisher += probs[c] * torch.outer(g, g) / x.shape[0]
    return fisher


def exact_bernoulli_fisher(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The same for independent bits, enumerating all 2^K label vectors."""
    params = list(model.parameters())
    size = sum(p.numel() for p in params)
    fisher = torch.zeros(size, size, dtype=DT)
    likelihood = BernoulliLikelihood()
    for n in range(x.shape[0]):
        probs = torch.sigmoid(model(x[n : n + 1]))[0].detach()
        for bits in itertools.product([0.0, 1.0], repeat=probs.shape[0]):
            y = torch.tensor([bits], dtype=DT)
            g = flat(torch.autograd.grad(likelihood.nll(model(x[n : n + 1]), y), params))
            weight = torch.where(y[0] > 0, probs, 1 - probs).prod()
            fisher += weight * torch.outer(g, g) / x.shape[0]
    return fisher


@pytest.mark.parametrize("likelihood, enumerate_labels", [
    (CategoricalLikelihood(), exact_categorical_fisher), (BernoulliLikelihood(), exact_bernoulli_fisher)])
def test_exact_fisher_matches_the_enumeration_over_labels(likelihood, enumerate_labels):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).to(DT)
    x = torch.randn(7, 3, dtype=DT)
    fisher = exact_fisher(model, likelihood, x, chunk=3)
    torch.testing.assert_close(fisher, enumerate_labels(model, x))
    assert torch.linalg.eigvalsh(fisher).min() > -1e-10


@pytest.mark.parametrize("method", ["hvp", "antithetic"])
def test_fisher_vector_product_matches_the_exact_damped_fisher(method):
    torch.manual_seed(0)
    model = nn.Linear(4, 3).to(DT)
    x = torch.randn(12, 4, dtype=DT)
    damping = 0.01
    fisher = exact_categorical_fisher(model, x) + damping * torch.eye(15, dtype=DT)
    opt = FishLeg(model, CategoricalLikelihood(), FishLegConfig(fvp=method, fd_eps=1e-5, damping=damping))
    opt.observe(x)
    for _ in range(3):
        v = [torch.randn_like(p) for p in model.parameters()]
        fv = flat(opt.fisher_vector_product(v)) + damping * flat(v)
        expected = fisher @ flat(v)
        assert ((fv - expected).norm() / expected.norm()).item() < 1e-4


def test_fisher_vector_product_is_not_the_identity_or_the_empirical_fisher():
    torch.manual_seed(0)
    model = nn.Linear(4, 3).to(DT)
    x = torch.randn(12, 4, dtype=DT)
    y = torch.randint(0, 3, (12,))
    params = list(model.parameters())
    g = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params)
    opt = FishLeg(model, CategoricalLikelihood())
    opt.observe(x)
    fv = flat(opt.fisher_vector_product(list(g)))
    assert fv @ flat(g) > 0
    assert not torch.allclose(fv, flat(g) * (fv.norm() / flat(g).norm()), rtol=1e-2)


def test_sampled_outer_product_fisher_is_unbiased_and_positive():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).to(DT)
    x = torch.randn(8, 3, dtype=DT)
    params = list(model.parameters())
    v = [torch.randn_like(p) for p in params]
    fisher = exact_categorical_fisher(model, x)
    generator = torch.Generator().manual_seed(1)
    repeated = x.repeat(50, 1)  # the same inputs with 50 independent label draws each: the same exact Fisher
    likelihood = CategoricalLikelihood()
    draws = [flat(fisher_vector_product(model, likelihood, repeated, params, v, generator, "fisher")) for _ in range(8)]
    estimate = torch.stack(draws).mean(0)
    expected = fisher @ flat(v)
    assert ((estimate - expected).norm() / expected.norm()).item() < 0.1
    assert all((d @ flat(v)).item() >= -1e-12 for d in draws)


@pytest.mark.parametrize("task, target", [
    (Task("categorical", 5), torch.tensor([0, 4, 2, 1, 3, 0])),
    (Task("bernoulli", 0, (5,)), torch.rand(6, 5).round()),
    (Task("gaussian", 0, (5,), sigma=0.7), torch.randn(6, 5)),
])
def test_likelihoods_match_the_task_and_draw_from_the_model(task, target):
    torch.manual_seed(0)
    output = torch.randn(6, 5)
    likelihood = likelihood_for_task(task)
    assert torch.allclose(likelihood.nll(output, target), task.nll(output, target))
    draws = torch.stack([likelihood.draw(output) for _ in range(2000)]).float()
    if task.likelihood == "categorical":
        freq = torch.nn.functional.one_hot(draws.long(), 5).float().mean(0)
        assert torch.allclose(freq, output.softmax(-1), atol=0.05)
    elif task.likelihood == "bernoulli":
        assert torch.allclose(draws.mean(0), torch.sigmoid(output), atol=0.05)
    else:
        assert torch.allclose(draws.mean(0), output, atol=0.08)
        assert abs(draws.std(0).mean().item() - 0.7) < 0.03


def test_likelihood_classes_by_name():
    assert isinstance(likelihood_for_task(Task("bernoulli")), BernoulliLikelihood)
    assert isinstance(likelihood_for_task(Task("gaussian", sigma=2.0)), GaussianLikelihood)
    assert likelihood_for_task(Task("gaussian", sigma=2.0)).sigma == 2.0
