"""The pruners: exact sparsity, zeros through SGD-momentum/Adam/reload/resume, any load order, schedules, RigL, SNIP, IMP, oBERT."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from oral6_core import registry
from oral6_core.components import TrainContext
from oral6_core.config import TrainConfig
from oral6_core.data import BatchLoader
from oral6_core.errors import CheckpointError
from oral6_core.models.nets import MLP
from oral6_core.testing import tiny_bundle
from oral6_core.training import fit
from oral6_smc.schedules import cosine_drop_fraction, gmp_sparsity, imp_rounds
from oral6_smc.scores import inverse_fisher_diagonal, snip_scores

ALL = {
    "omp": {}, "random": {}, "snip": {}, "obert": {"num_grads": 4}, "gmp": {"update_every": 2},
    "imp": {}, "rigl": {"update_every": 3}, "set": {"update_every": 3},
}


def train(name, options, optimizer="sgd", epochs=13, out_dir=None, resume=False, seed=0):
    """Fit a two-hidden-layer MLP on the core's tiny problem (4 steps per epoch) with a pruner."""
    torch.manual_seed(seed)
    bundle, model = tiny_bundle(), MLP(8, 3, (32, 32))
    pruner = registry.create("pruner", name, options)
    config = TrainConfig(epochs=epochs, batch_size=16, progress=False, checkpoint=out_dir is not None, device="cpu", seed=seed)
    result = fit(model, bundle, registry.create("optimizer", optimizer), config, pruner=pruner, out_dir=out_dir, resume=resume)
    return result.model, pruner


def assert_masked_zero(model, pruner):
    params = dict(model.named_parameters())
    for name, mask in pruner.masks().items():
        assert bool((params[name][~mask] == 0).all()), name


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_pruner_reaches_the_exact_sparsity(name):
    model, pruner = train(name, {**ALL[name], "sparsity": 0.7}, epochs=5)
    masks = pruner.masks()
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(0.3 * total)
    assert_masked_zero(model, pruner)
    # measured on the weights: regrown (RigL/SET) weights start at 0 and may still be 0 at the end
    assert 0.7 - 2 / total <= pruner.sparsity()["overall"] <= 0.71
    assert set(pruner.sparsity()) == {"body.1.weight", "body.3.weight", "overall"}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("name", ["omp", "rigl"])
def test_masks_stay_zero_after_50_steps_with_momentum_and_adam_state(name, optimizer):
    model, pruner = train(name, {**ALL[name], "sparsity": 0.8}, optimizer=optimizer)
    assert_masked_zero(model, pruner)
    state = pruner.ctx.optimizer.state
    params = dict(model.named_parameters())
    for pname, mask in pruner.masks().items():
        buffers = [v for v in state[params[pname]].values() if isinstance(v, torch.Tensor) and v.shape == mask.shape]
        assert buffers, "the optimizer keeps per-weight state"
        assert all(bool((b[~mask] == 0).all()) for b in buffers)


def test_masks_survive_save_and_reload(tmp_path):
    model, pruner = train("gmp", {"sparsity": 0.8, "update_every": 2}, epochs=5)
    torch.save(pruner.state_dict(), tmp_path / "pruner.pt")
    fresh_model = MLP(8, 3, (32, 32))
    fresh = registry.create("pruner", "gmp", {"sparsity": 0.8})
    opt = torch.optim.Adam(fresh_model.parameters())
    fresh.on_train_start(TrainContext(fresh_model, opt, [], None, torch.device("cpu"), 10, lambda m, b: 0))  # type: ignore[arg-type]
    fresh.load_state_dict(torch.load(tmp_path / "pruner.pt"))
    assert all(torch.equal(fresh.masks()[n], m) for n, m in pruner.masks().items())
    assert_masked_zero(fresh_model, fresh)
    assert fresh.sparsity()["overall"] == pytest.approx(0.8, abs=1e-3)


def test_masks_survive_checkpoint_resume_through_the_core_loop(tmp_path):
    options = {"sparsity": 0.8, "update_every": 2}
    train("gmp", options, epochs=2, out_dir=tmp_path)
    model, pruner = train("gmp", options, epochs=6, out_dir=tmp_path, resume=True, seed=0)
    assert_masked_zero(model, pruner)
    assert pruner.sparsity()["overall"] == pytest.approx(0.8, abs=1e-3)


def test_gmp_schedule_values():
    assert gmp_sparsity(5, 10, 80, 0.0, 0.9) == 0.0
    assert gmp_sparsity(10, 10, 80, 0.0, 0.9) == 0.0
    assert gmp_sparsity(45, 10, 80, 0.0, 0.9) == pytest.approx(0.9 - 0.9 / 8)
    assert gmp_sparsity(80, 10, 80, 0.0, 0.9) == pytest.approx(0.9)
    assert gmp_sparsity(99, 10, 80, 0.2, 0.9) == pytest.approx(0.9)
    values = [gmp_sparsity(t, 10, 80, 0.0, 0.9) for t in range(10, 81)]
    assert values == sorted(values)


def test_gmp_pruner_follows_the_cubic_schedule_on_its_update_steps():
    model = nn.Sequential(nn.Linear(40, 50), nn.Linear(50, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    pruner = registry.create("pruner", "gmp", {"sparsity": 0.9, "update_every": 10})
    pruner.on_train_start(TrainContext(model, opt, [], None, torch.device("cpu"), 100, lambda m, b: 0))  # type: ignore[arg-type]
    for step in range(1, 46):
        pruner.on_step_end(step, 100)
    expected = gmp_sparsity(40, 10, 80, 0.0, 0.9)
    assert int(pruner.masks()["0.weight"].sum()) == round((1 - expected) * 2000)


def test_rigl_keeps_layer_nnz_and_regrows_where_the_gradient_is_largest():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    pruner = registry.create("pruner", "rigl", {"sparsity": 0.7, "init": "magnitude", "alpha": 0.5, "update_every": 1, "end": 1.0})
    pruner.on_train_start(TrainContext(model, opt, [], None, torch.device("cpu"), 100, lambda m, b: 0))  # type: ignore[arg-type]
    weight = model[0].weight
    before = pruner.masks()["0.weight"].clone()
    grad = torch.rand(20, 10)
    (weight * grad).sum().backward()
    pruner.on_after_backward(1)
    opt.step()
    pruner.on_step_end(1, 100)
    after = pruner.masks()["0.weight"]
    assert int(after.sum()) == int(before.sum())
    k = int(cosine_drop_fraction(1, 0.5, 100) * int(before.sum()))
    order = weight.detach().abs().masked_fill(~before, math.inf).flatten().argsort()
    kept = before.flatten().clone()
    kept[order[:k]] = False
    regrow = grad.flatten().masked_fill(kept, -math.inf).topk(k).indices
    kept[regrow] = True
    assert torch.equal(after.flatten(), kept)
    assert bool((weight[~after] == 0).all())


def test_snip_scores_equal_abs_weight_times_gradient():
    torch.manual_seed(0)
    bundle, model = tiny_bundle(), MLP(8, 3, (16,))
    loader = BatchLoader(bundle.train, 16)
    params = {"body.1.weight": model.body[1].weight}
    loss_fn = lambda m, b: bundle.task.nll(m(b.x), b.y)  # noqa: E731
    scores = snip_scores(model, params, loader, loss_fn, torch.device("cpu"))
    batch = next(iter(loader))
    (grad,) = torch.autograd.grad(loss_fn(model, batch), [model.body[1].weight])
    assert torch.allclose(scores["body.1.weight"], (model.body[1].weight * grad).abs())


def test_snip_pruner_keeps_the_top_scores():
    torch.manual_seed(0)
    bundle, model = tiny_bundle(), MLP(8, 3, (16,))
    loader = BatchLoader(bundle.train, 16)
    loss_fn = lambda m, b: bundle.task.nll(m(b.x), b.y)  # noqa: E731
    params = {"body.1.weight": model.body[1].weight}
    scores = snip_scores(model, params, loader, loss_fn, torch.device("cpu"))["body.1.weight"].flatten()
    pruner = registry.create("pruner", "snip", {"sparsity": 0.75})
    pruner.on_train_start(TrainContext(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, bundle.task, torch.device("cpu"), 10, loss_fn))
    kept = pruner.masks()["body.1.weight"].flatten()
    assert int(kept.sum()) == 32 and scores[kept].min() >= scores[~kept].max()


def test_imp_rounds_reach_one_minus_point_eight_to_the_k_and_rewind_to_init():
    torch.manual_seed(0)
    bundle, model = tiny_bundle(), MLP(8, 3, (32, 32))
    loader = BatchLoader(bundle.train, 16, shuffle=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    pruner = registry.create("pruner", "imp", {"sparsity": 1 - 0.8**3})
    assert pruner.rounds() == imp_rounds(1 - 0.8**3, 0.2) == 3
    total = 4 * 8
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    pruner.on_train_start(TrainContext(model, opt, loader, bundle.task, torch.device("cpu"), total, lambda m, b: bundle.task.nll(m(b.x), b.y)))
    reached = []
    pruner.round_end_callbacks.append(lambda r, s: reached.append((r, s)))
    step = 0
    while step < total:
        for batch in loader:
            step += 1
            bundle.task.nll(model(batch.x), batch.y).backward()
            pruner.on_after_backward(step)
            opt.step()
            pruner.on_step_end(step, total)
            opt.zero_grad()
            if step % 8 == 0 and step < total:
                masks = pruner.masks()
                for name, p in model.named_parameters():
                    expected = init[name] * masks[name] if name in masks else init[name]
                    assert torch.equal(p.detach(), expected), f"{name} not rewound after round {step // 8}"
                assert not opt.state, "the optimizer restarts each round"
            if step == total:
                break
    pruner.on_train_end()
    n = sum(m.numel() for m in pruner.masks().values())
    assert [r for r, _ in reached] == [0, 1, 2, 3]
    for k, (_, sparsity) in enumerate(reached):
        assert sparsity == pytest.approx(1 - round(0.8**k * n) / n, abs=1e-9) if k else sparsity == 0


def test_imp_lrr_keeps_the_trained_weights():
    torch.manual_seed(0)
    bundle, model = tiny_bundle(), MLP(8, 3, (32, 32))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = registry.create("pruner", "imp", {"sparsity": 0.2, "rewind": "lrr"})
    pruner.on_train_start(TrainContext(model, opt, [], bundle.task, torch.device("cpu"), 4, lambda m, b: 0))  # type: ignore[arg-type]
    batch = bundle.train[torch.arange(16)]
    for step in (1, 2):
        bundle.task.nll(model(batch.x), batch.y).backward()
        opt.step()
        trained = {n: p.detach().clone() for n, p in model.named_parameters()}
        pruner.on_step_end(step, 4)
        opt.zero_grad()
    masks = pruner.masks()
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), trained[name] * masks[name] if name in masks else trained[name])


def test_imp_with_too_few_steps_is_a_clear_error():
    from oral6_core.errors import ConfigError

    with pytest.raises(ConfigError, match="prune rounds"):
        train("imp", {"sparsity": 0.95}, epochs=1)


def test_obert_inverse_fisher_diagonal_and_block_woodbury_match_explicit_inverses():
    torch.manual_seed(0)
    grads, damp = torch.randn(5, 12, dtype=torch.float64), 1e-2
    diag = inverse_fisher_diagonal(grads, damp, 0)
    assert torch.allclose(diag, 1 / (damp + grads.pow(2).mean(0)))
    block = inverse_fisher_diagonal(grads, damp, 4)
    for b in range(3):
        g = grads[:, 4 * b: 4 * b + 4]
        fisher = damp * torch.eye(4, dtype=torch.float64) + g.T @ g / 5
        assert torch.allclose(block[4 * b: 4 * b + 4], torch.linalg.inv(fisher).diagonal(), rtol=1e-6)


# --------------------------------------------------------------------------- load order

# every pruner here prunes in on_train_start, with masks that differ from the ones it ends training with
METHODS = {
    "rigl": {"update_every": 2, "sparsity": 0.8},
    "set": {"update_every": 2, "sparsity": 0.8},
    "snip": {"sparsity": 0.8},
    "gmp": {"initial_sparsity": 0.3, "sparsity": 0.8, "update_every": 2},
}


def fresh_context(model):
    bundle = tiny_bundle()
    loader = BatchLoader(bundle.train, 16)
    return TrainContext(model, torch.optim.Adam(model.parameters()), loader, bundle.task, torch.device("cpu"), 20,
                        lambda m, b: bundle.task.nll(m(b.x), b.y))


@pytest.fixture(scope="module", params=sorted(METHODS))
def saved(request):
    """(name, trained weights, pruner state) after a short run whose masks moved away from the initial ones."""
    model, pruner = train(request.param, METHODS[request.param], epochs=5)
    return request.param, {k: v.clone() for k, v in model.state_dict().items()}, pruner.state_dict()


@pytest.mark.parametrize("order", ["weights, start, masks", "weights, masks, start", "start, weights, masks"])
def test_saved_masks_and_weights_come_back_in_any_order(saved, order):
    name, weights, state = saved
    model = MLP(8, 3, (32, 32))
    pruner = registry.create("pruner", name, METHODS[name])
    steps = {"weights": lambda: model.load_state_dict(weights), "start": lambda: pruner.on_train_start(fresh_context(model)),
             "masks": lambda: pruner.load_state_dict(state)}
    for step in order.split(", "):
        steps[step]()
    assert {k: v for k, v in pruner.state_dict().items() if k != "masks"} == {k: v for k, v in state.items() if k != "masks"}
    assert all(torch.equal(pruner.masks()[n], m) for n, m in state["masks"].items())
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), f"{name}: {key} differs from the loaded weights ({order})"


def test_the_initial_prune_really_moves_the_masks(saved):
    """Guard of the test above: a fresh initial prune alone would lose kept weights (GMP's never does: its
    magnitude prune of already-sparse weights removes zeros first)."""
    name, weights, state = saved
    if name == "gmp":
        pytest.skip("magnitude pruning of the saved sparse weights zeroes only zeros")
    model = MLP(8, 3, (32, 32))
    model.load_state_dict(weights)
    pruner = registry.create("pruner", name, METHODS[name])
    pruner.on_train_start(fresh_context(model))
    lost = sum(int((state["masks"][n] & (p == 0) & (weights[n] != 0)).sum()) for n, p in model.named_parameters() if n in state["masks"])
    assert lost > 0


def test_a_state_for_other_weights_is_a_clear_error():
    model = MLP(8, 3, (32, 32))
    pruner = registry.create("pruner", "omp", {"sparsity": 0.5})
    pruner.load_state_dict({"masks": {"body.9.weight": torch.ones(2, 2, dtype=torch.bool)}})
    with pytest.raises(CheckpointError, match="same model"):
        pruner.on_train_start(fresh_context(model))
    with pytest.raises(CheckpointError, match="state_dict"):
        pruner.load_state_dict([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("rewind", ["lrr", "init"])
def test_imp_restarts_the_learning_rate_schedule_each_round(rewind):
    """Two trainings of 4 steps under a cosine schedule over 8: each replays the first 4 steps of the schedule."""
    def final_lrs(pruner):
        torch.manual_seed(0)
        config = TrainConfig(epochs=2, batch_size=16, progress=False, checkpoint=False, device="cpu", lr_schedule="cosine")
        result = fit(MLP(8, 3, (32, 32)), tiny_bundle(), registry.create("optimizer", "sgd"), config, pruner=pruner)
        return [row["lr"] for row in result.history], result.pruner

    lrs, pruner = final_lrs(registry.create("pruner", "imp", {"sparsity": 0.2, "rewind": rewind}))
    base = pruner.ctx.optimizer.defaults["lr"]
    assert pruner.ctx.scheduler is not None
    assert lrs == pytest.approx([base, base * 0.5 * (1 + math.cos(math.pi * 4 / 8))])
    plain, _ = final_lrs(registry.create("pruner", "omp", {"sparsity": 0.2}))
    assert plain == pytest.approx([base * 0.5, 0.0], abs=1e-12)
