"""FishLeg's optimizer: Q(λ) learns F_γ⁻¹, starts as SGD, resumes bit for bit, handles any layer."""

import io

import pytest
import torch
from torch import nn

from oral6_core import registry
from oral6_core.components import Task
from oral6_core.errors import ConfigError, Oral6Error
from oral6_core.testing import check_component
from oral6_fishleg import BernoulliLikelihood, CategoricalLikelihood, FishLeg, FishLegConfig, GaussianLikelihood
from oral6_fishleg.blocks import DiagonalBlock, KroneckerBlock


DT = torch.float64


def test_conforms_to_the_optimizer_contract():
    check_component("optimizer", "fishleg")
    check_component("benchmark", "fishleg-autoencoder", exercise=False)
    check_component("benchmark", "fishleg-sparse-autoencoder", exercise=False)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="optimizer"):
        registry.create("optimizer", "fishleg", {"aux_every": 0})
    with pytest.raises(ConfigError):
        registry.create("optimizer", "fishleg", {"fvp": "exact"})


def test_learned_q_approaches_the_inverse_damped_fisher_of_a_linear_gaussian_layer():
    """For y = Wx + b with a Gaussian likelihood F_γ = (E[x̃x̃ᵀ]/σ² + γI) ⊗ I exactly, so Q can reach F_γ⁻¹.

    ``hvp`` is the exact F z for this model (any sampled label), so the fit has no noise floor.
    """
    torch.manual_seed(0)
    sigma, damping = 0.5, 0.1
    layer = nn.Linear(4, 3).to(DT)
    x = torch.randn(64, 4, dtype=DT) * torch.tensor([1.0, 0.5, 2.0, 1.0], dtype=DT) + 0.3
    opt = FishLeg(layer, GaussianLikelihood(sigma), FishLegConfig(aux_lr=0.05, damping=damping, fvp="hvp", init_scale=0.5))
    opt.observe(x)
    xt = torch.cat([x, torch.ones(64, 1, dtype=DT)], 1)
    left_inverse = torch.linalg.inv(xt.T @ xt / (64 * sigma**2) + damping * torch.eye(5, dtype=DT))

    def relative_error() -> float:
        errors = []
        for _ in range(10):
            u = [torch.randn_like(p) for p in layer.parameters()]
            q = opt.precondition(u)
            target = torch.cat([u[0], u[1][:, None]], 1) @ left_inverse
            errors.append(((torch.cat([q[0], q[1][:, None]], 1) - target).norm() / target.norm()).item())
        return sum(errors) / len(errors)

    before = relative_error()
    for i in range(200):
        if i == 150:
            opt.param_groups[0]["aux_lr"] = 0.005
        opt.aux_update([torch.randn_like(p) for p in layer.parameters()])
    after = relative_error()
    assert before > 0.5
    assert after < 0.05, after


@pytest.mark.parametrize("options, sgd_lr", [({"lr": 0.05, "init_scale": 0.2}, 0.01), ({"damping": 0.5}, FishLegConfig().lr / 0.5)])
def test_first_step_is_sgd_with_lr_times_the_initial_scale(options, sgd_lr):
    """Q₀ = s·I (default s = 1/γ), so the first step is SGD with lr η·s, for every form of Q."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LayerNorm(8), nn.Linear(8, 3))
    twin = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LayerNorm(8), nn.Linear(8, 3))
    twin.load_state_dict(model.state_dict())
    x, y = torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 2, 1, 0])
    fishleg = FishLeg(model, CategoricalLikelihood(), FishLegConfig(elementwise_scale=True, **options))
    sgd = torch.optim.SGD(twin.parameters(), lr=sgd_lr)
    for m, opt in ((model, fishleg), (twin, sgd)):
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert [row["form"] for row in fishleg.describe()] == ["kronecker", "kronecker", "diagonal-norm", "diagonal-norm"]


@pytest.mark.parametrize("block", [
    KroneckerBlock(nn.Parameter(torch.randn(3, 4, dtype=DT)), nn.Parameter(torch.randn(3, dtype=DT)), "a", True),
    KroneckerBlock(nn.Parameter(torch.randn(5, 2, 3, dtype=DT)), None, "b", False),
    DiagonalBlock(nn.Parameter(torch.randn(6, dtype=DT)), "c", "diagonal-other"),
])
def test_closed_form_lambda_gradients_match_autograd(block):
    torch.manual_seed(1)
    lam = {n: (v + 0.3 * torch.randn_like(v)).requires_grad_() for n, v in block.init_lambda(2.0, block.params[0]).items()}
    u = block.gather([torch.randn_like(p) for p in block.params])
    d = torch.randn_like(u)
    expected = torch.autograd.grad((d * block.apply(block.factors(lam), u)).sum(), list(lam.values()))
    fixed = {n: v.detach() for n, v in lam.items()}
    closed = block.lambda_grads(fixed, block.factors(fixed), u, d)
    for name, grad in zip(lam, expected):
        torch.testing.assert_close(closed[name], grad)


def _train(model, opt, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x = torch.rand(16, 6, generator=g)
        opt.observe(x)
        loss = BernoulliLikelihood().nll(model(x), (x > 0.5).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _net():
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 6))


def test_state_dict_round_trip_reproduces_the_next_steps_bit_for_bit():
    torch.manual_seed(0)
    model = _net()
    opt = FishLeg(model, BernoulliLikelihood(), FishLegConfig(aux_every=3, seed=5))
    _train(model, opt, 7)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    expected = _train(model, opt, 4, seed=1)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    resumed = _net()
    resumed.load_state_dict(saved["model"])
    opt2 = FishLeg(resumed, BernoulliLikelihood(), FishLegConfig(aux_every=3, seed=123))
    opt2.load_state_dict(saved["opt"])
    assert _train(resumed, opt2, 4, seed=1) == expected
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


class Scale(nn.Module):
    """A layer FishLeg has no structured form for: a learnable elementwise scale."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(n))

    def forward(self, x):
        return x * self.gain


def test_a_model_with_unsupported_layers_still_trains():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), Scale(8), nn.Tanh(), nn.Linear(8, 6, bias=False))
    opt = FishLeg(model, BernoulliLikelihood(), FishLegConfig(lr=0.05, init_scale=4.0, aux_every=5))
    gain = model[1].gain.detach().clone()
    losses = _train(model, opt, 60)
    assert sum(losses[-10:]) < 0.9 * sum(losses[:10])
    assert not torch.equal(gain, model[1].gain)
    assert [row["form"] for row in opt.describe()] == ["kronecker", "kronecker", "diagonal-other"]


def test_embeddings_and_shared_weights_get_one_block_each():
    embedding = nn.Embedding(10, 4)
    head = nn.Linear(4, 10)
    head.weight = embedding.weight  # tied weights
    model = nn.Sequential(embedding, head)
    opt = FishLeg(model, CategoricalLikelihood())
    params = opt.param_groups[0]["params"]
    assert len(params) == len({id(p) for p in params}) == 2
    x = torch.tensor([1, 2, 3])
    opt.observe(x)
    nn.functional.cross_entropy(model(x), torch.tensor([2, 3, 4])).backward()
    opt.step()
    assert opt.aux_update().item() != 0.0


def test_step_without_an_observed_batch_explains_the_fix():
    model = _net()
    opt = FishLeg(model, BernoulliLikelihood(), FishLegConfig(aux_every=1))
    BernoulliLikelihood().nll(model(torch.rand(4, 6)), torch.ones(4, 6)).backward()
    with pytest.raises(Oral6Error, match="observe"):
        opt.step()


def test_frozen_model_is_a_config_error():
    model = _net().requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable"):
        registry.create("optimizer", "fishleg").build(model, Task("bernoulli", 0, (6,)))
