"""FishLeg on a sparse network: Q(λ) learns the inverse of the restricted Fisher, and pruned weights never move."""

import pytest
import torch
from torch import nn

from oral6_core import registry
from oral6_core.bench import run_benchmark
from oral6_core.config import RunConfig, TrainConfig
from oral6_core.errors import CheckpointError, ConfigError
from oral6_core.training import fit, train
from oral6_fishleg import BernoulliLikelihood, FishLeg, FishLegConfig, GaussianLikelihood
from oral6_fishleg.autoencoders import autoencoder_bundle
from oral6_fishleg.diagnostics import compare_with_exact

DT = torch.float64


def _learned_error(mask: torch.Tensor, sparse: bool, seed: int = 0, updates: int = 300) -> float:
    """Fit Q(λ) along random directions of the kept coordinates; its mean relative error against (F_SS + γI)⁻¹."""
    torch.manual_seed(seed)
    x = torch.randn(96, 4, dtype=DT) @ torch.randn(4, 4, dtype=DT) + 0.3  # correlated inputs
    model = nn.Linear(4, 3).to(DT)
    with torch.no_grad():
        model.weight.mul_(mask)
    opt = FishLeg(model, GaussianLikelihood(0.5), FishLegConfig(fvp="hvp", aux_lr=0.03, init_scale=0.5, sparse=sparse))
    opt.set_masks({model.weight: mask})
    opt.observe(x)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(updates):
        opt.aux_update([torch.randn(p.shape, generator=generator, dtype=DT) * (mask if p is model.weight else 1)
                        for p in (model.weight, model.bias)])
    directions = torch.randn(16, 15, generator=generator, dtype=DT)
    return compare_with_exact(opt, x, directions, {model.weight: mask})["random_rel_error"]


def test_sparse_q_learns_the_inverse_of_the_restricted_fisher():
    """F_γ of a linear Gaussian layer is (C/σ² + γ) ⊗ I. Pruning whole input columns keeps it Kronecker on S, so
    PQ(λ)P can equal (F_SS + γI)⁻¹ exactly; the dense Q fitted to the same directions learns the restriction of
    the full inverse, (F_γ⁻¹)_SS, which differs because kept and pruned inputs are correlated."""
    columns = torch.ones(3, 4, dtype=torch.bool)
    columns[:, [1, 3]] = False
    sparse, dense = _learned_error(columns, True), _learned_error(columns, False)
    assert sparse < 0.01 and dense > 0.2
    # an unstructured mask: no Q(λ) restricted to S is exact, but the sparse one is still far closer
    scattered = torch.rand(3, 4, generator=torch.Generator().manual_seed(0)) > 0.5
    sparse, dense = _learned_error(scattered, True), _learned_error(scattered, False)
    assert sparse < 0.1 and dense > 3 * sparse


def test_update_is_zero_at_masked_weights_and_the_dense_one_is_not():
    torch.manual_seed(0)
    x = (torch.rand(32, 6) > 0.5).float()
    steps = {}
    for sparse in (True, False):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 6))
        mask = torch.rand(5, 6, generator=torch.Generator().manual_seed(2)) > 0.5
        with torch.no_grad():
            model[0].weight.mul_(mask)
        opt = FishLeg(model, BernoulliLikelihood(), FishLegConfig(aux_every=1, sparse=sparse))
        opt.set_masks({model[0].weight: mask})
        before = model[0].weight.detach().clone()
        for _ in range(3):
            opt.observe(x)
            opt.zero_grad()
            BernoulliLikelihood().nll(model(x), x).backward()  # gradients not masked: FishLeg must do it itself
            opt.step()
        steps[sparse] = (model[0].weight.detach() - before)[~mask]
    assert torch.equal(steps[True], torch.zeros_like(steps[True])) and steps[False].abs().max() > 0


def test_a_mask_of_the_wrong_shape_is_a_config_error():
    model = nn.Linear(3, 2)
    opt = FishLeg(model, GaussianLikelihood(1.0))
    with pytest.raises(ConfigError, match="shape"):
        opt.set_masks({model.weight: torch.ones(3, 2, dtype=torch.bool)})


def test_with_gmp_masked_weights_stay_zero_and_lambda_is_untouched():
    """The pruner zeroes every state tensor shaped like its weight: ḡ must be, λ must not (a square bias-free layer)."""
    bundle = autoencoder_bundle("digits")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64, bias=False), nn.ReLU(), nn.Linear(64, 64))
    factory = registry.create("optimizer", "fishleg", {"aux_every": 2, "lr": 0.02, "init_scale": 5.0})
    pruner = registry.create("pruner", "gmp", {"sparsity": 0.8, "end": 0.5})
    result = fit(model, bundle, factory, TrainConfig(epochs=2, batch_size=64, progress=False, checkpoint=False),
                 pruner=pruner)
    mask = pruner.masks()["0.weight"]
    assert abs(1 - mask.float().mean().item() - 0.8) < 0.01
    assert torch.equal(model[0].weight[~mask], torch.zeros(int((~mask).sum())))
    opt = result.pruner.ctx.optimizer
    state = opt.state[model[0].weight]
    assert torch.equal(state["momentum"][~mask], torch.zeros(int((~mask).sum())))
    assert all((lam[~mask] != 0).float().mean() > 0.5 for lam in state["lambda"].values())  # 0 if the pruner hit λ
    assert result.history[-1]["test_loss"] < result.history[0]["test_loss"]


class Stop(Exception):
    pass


def _stop_after_first_epoch(row):
    if row["epoch"] == 1:
        raise Stop


def test_fishleg_with_gmp_resumes_bit_for_bit(tmp_path):
    """A run stopped after its first epoch (checkpoint written) and resumed ends where the straight run does."""
    def run(out):
        options = {"pruner": {"sparsity": 0.8}, "optimizer": {"aux_every": 5}}
        config = TrainConfig(epochs=3, batch_size=96, device="cpu", progress=False)
        return RunConfig(optimizer="fishleg", pruner="gmp", options=options, train=config, out=out)

    straight = train(run(tmp_path / "straight"))
    with pytest.raises(Stop):
        train(run(tmp_path / "resumed"), on_epoch_end=_stop_after_first_epoch)
    resumed = train(run(tmp_path / "resumed"), resume=True)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert straight.summary["sparsity"]["overall"] == pytest.approx(0.8, abs=0.01)


def test_sparse_benchmark_quick_mode_runs_every_row(tmp_path):
    result = run_benchmark("fishleg-sparse-autoencoder", tmp_path, quick=True)
    assert (tmp_path / "fishleg_sparse_autoencoder.png").is_file()
    runs = [r for r in result.rows if "test_losses" in r]
    assert [r["optimizer"] for r in runs] == ["fishleg", "fishleg, dense Q projected", "adam"]
    assert all(r["sparsity"] == pytest.approx(0.8, abs=0.01) and r["test_losses"][0] > 0 for r in runs)
    assert runs[1]["params"] == {**runs[0]["params"], "sparse": False}
    diagnostics = [r for r in result.rows if "random rel. error" in r]
    assert {r["optimizer"] for r in diagnostics} == {"fishleg", "fishleg, dense Q projected"}
    assert len(result.claims) == 2


def test_a_state_saved_with_lambda_beside_the_momentum_is_a_checkpoint_error():
    model = nn.Linear(3, 2)
    state = FishLeg(model, GaussianLikelihood(1.0)).state_dict()
    for entry in state["state"].values():
        entry.update({f"q_{name}": value for name, value in entry.pop("lambda").items()})
    with pytest.raises(CheckpointError, match="earlier version"):
        FishLeg(model, GaussianLikelihood(1.0)).load_state_dict(state)
