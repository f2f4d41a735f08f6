"""The ``nern`` component end to end: fit, reconstruct, save/load, data-free fitting, importance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from oral6_core import registry
from oral6_core.components import Task
from oral6_core.data import ArrayDataset, DataBundle
from oral6_core.errors import CheckpointError, ConfigError
from oral6_core.testing import check_component
from oral6_nern import NeRN
from oral6_nern.predictor import predictor_parameters
from oral6_nern.importance import prune_highest, pruning_scores, relative_errors

FAST = {"hidden": 12, "levels": 6, "steps": 12, "warmup_steps": 0, "kernel_batch": 64, "batch_size": 8, "log_every": 4, "noise_size": 8}


def tiny_bundle() -> DataBundle:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 3, 8, 8, generator=g), torch.randint(0, 4, (48,), generator=g)
    data = ArrayDataset(x, y)
    return DataBundle("tiny", data, None, data, Task("categorical", 4, (3, 8, 8)))


def tiny_resnet() -> nn.Module:
    torch.manual_seed(0)
    return registry.create("model", "resnet20", {"width": 2}).build((3, 8, 8), 4).eval()


@pytest.fixture(scope="module")
def fitted() -> tuple[NeRN, nn.Module]:
    net = tiny_resnet()
    rep = registry.create("representation", "nern", FAST)
    rep.fit(net, tiny_bundle())
    return rep, net


def test_conforms():
    check_component("representation", "nern", FAST)


def test_fit_learns_and_reports_sizes(fitted):
    rep, net = fitted
    assert rep.history[-1]["rec"] < rep.history[0]["rec"]
    assert {"rec", "kd", "fmap"} <= set(rep.history[-1])
    represented = sum(p.numel() for n, p in net.named_parameters() if n.startswith("layer") and ".conv" in n)
    assert rep.represented_parameters() == represented
    assert rep.num_parameters() == sum(p.numel() for p in rep.predictor.parameters())


def test_reconstruct_keeps_stored_parameters_and_uses_predictions(fitted):
    rep, net = fitted
    rebuilt = rep.reconstruct()
    original, new = net.state_dict(), rebuilt.state_dict()
    predicted = rep.predicted_weights()
    for key, value in original.items():
        if key in predicted:
            assert torch.equal(new[key], predicted[key])
        else:
            assert torch.equal(new[key], value), key
    assert not rebuilt.training


def test_save_load_gives_identical_reconstruction_without_the_original(fitted, tmp_path):
    rep, _ = fitted
    path = tmp_path / "rep.pt"
    rep.save(path)
    fresh = NeRN()
    fresh.load(path)
    assert fresh.config == rep.config
    a, b = rep.reconstruct().state_dict(), fresh.reconstruct().state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(rep.reconstruct()(x), fresh.reconstruct()(x))


def test_data_free_fit_uses_noise_and_reconstruction_only_skips_the_network():
    net = tiny_resnet()
    rep = registry.create("representation", "nern", {**FAST, "permutation": "infilter", "steps": 4})
    rep.fit(net, None)
    assert "kd" in rep.history[-1] and torch.isfinite(torch.tensor(rep.history[-1]["loss"]))
    rec_only = registry.create("representation", "nern", {**FAST, "steps": 4, "distill_weight": 0, "attention_weight": 0})
    rec_only.fit(net, None)
    assert set(rec_only.history[-1]) == {"step", "loss", "rec", "rel_error"}
    warm = registry.create("representation", "nern", {**FAST, "steps": 8, "warmup_steps": 4})
    warm.fit(net, None)
    assert "kd" not in warm.history[0] and "kd" in warm.history[-1]


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="call fit"):
        NeRN().reconstruct()
    bogus = tmp_path / "bogus.pt"
    torch.save({"model": {}}, bogus)
    with pytest.raises(CheckpointError, match="not a NeRN representation"):
        NeRN().load(bogus)
    with pytest.raises(CheckpointError, match="does not exist"):
        NeRN().load(tmp_path / "missing.pt")
    foreign = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ConfigError, match="representation.model"):
        registry.create("representation", "nern", FAST).fit(foreign, None)
    with pytest.raises(ConfigError, match="does not rebuild"):
        registry.create("representation", "nern", {**FAST, "model": "resnet20", "model_options": {"width": 3}}).fit(tiny_resnet(), None)
    with pytest.raises(ConfigError, match="permutation"):
        registry.create("representation", "nern", {"permutation": "sorted"})


def test_pruning_criteria_remove_the_intended_weights(fitted):
    rep, net = fitted
    predicted = rep.predicted_weights()
    params = dict(net.named_parameters())
    original = {k: params[k].detach() for k in predicted}
    errors = relative_errors(original, predicted)
    total = sum(e.numel() for e in errors.values())
    for criterion in ("reconstruction-error", "magnitude", "random"):
        pruned = dict(prune_highest(net, pruning_scores(criterion, original, predicted), 0.3).named_parameters())
        zeros = sum((pruned[k] == 0).sum().item() for k in predicted)
        assert zeros == round(0.3 * total)
        if criterion == "magnitude":
            kept = torch.cat([pruned[k].detach().abs().flatten() for k in predicted])
            assert kept[kept > 0].min() >= torch.cat([o.abs().flatten() for o in original.values()]).kthvalue(round(0.3 * total)).values
        if criterion == "reconstruction-error":
            flat_err = torch.cat([errors[k].flatten() for k in predicted])
            flat_zero = torch.cat([(pruned[k] == 0).flatten() for k in predicted])
            assert flat_err[flat_zero].min() >= flat_err[~flat_zero].max()
    assert torch.equal(dict(net.named_parameters())["layer1.0.conv1.weight"], params["layer1.0.conv1.weight"])


def test_fit_logs_accuracy_and_warns_when_the_predictor_has_not_converged(capsys):
    from oral6_nern.feedback import NotConvergedWarning, late_accuracy_gain, late_improvement, warn_if_not_converged

    rep = registry.create("representation", "nern", {**FAST, "hidden": None, "steps": 30, "log_every": 3, "progress": True, "convergence_tol": 1e-5, "distill_weight": 0, "attention_weight": 0, "lr": 0.05, "final_lr": 0.05})
    with pytest.warns(NotConvergedWarning, match="has not converged"):
        rep.fit(tiny_resnet(), tiny_bundle())
    assert not rep.converged and all(0 <= r["accuracy"] <= 1 for r in rep.history)
    assert rep.config.hidden >= 1 and rep.num_parameters() <= 0.44 * rep.represented_parameters()
    flat = [{"step": float(s), "rel_error": 0.5} for s in range(10, 110, 10)]
    assert late_improvement(flat) == 0 and not warn_if_not_converged(flat, 0.01)
    falling = [{"step": float(s), "rel_error": 1 / s} for s in range(10, 110, 10)]
    assert late_improvement(falling) == pytest.approx(0.1)
    rising = [{**r, "accuracy": r["step"] / 100} for r in flat]
    assert late_accuracy_gain(rising) == pytest.approx(0.1)
    with pytest.warns(NotConvergedWarning, match="accuracy still rose by 10.0 points"):
        assert warn_if_not_converged(rising, 0.01)
    lines = [l for l in capsys.readouterr().err.splitlines() if "nern fit step" in l]  # not a terminal: plain lines
    assert len(lines) == 10 and "weight_error" in lines[-1] and "accuracy" in lines[-1]


def test_default_size_and_schedule_scale_with_the_network():
    from oral6_nern.representation import DEFAULT_STEPS, KERNEL_SHARE, WARMUP_STEPS, default_warmup

    net = tiny_resnet()
    rep = registry.create("representation", "nern", {})
    rep.prepare(net)
    assert rep.config.steps == DEFAULT_STEPS and rep.config.warmup_steps == WARMUP_STEPS < DEFAULT_STEPS // 7
    assert default_warmup(700) == 100 and default_warmup(3500) == WARMUP_STEPS
    assert rep.config.kernel_batch == 256 < rep.layout.num_kernels  # the floor on a tiny network
    wide = registry.create("model", "resnet20", {"width": 8}).build((3, 8, 8), 4)
    scaled = registry.create("representation", "nern", {"hidden": None, "ratio": 0.44})
    scaled.prepare(wide)
    assert scaled.config.kernel_batch == round(KERNEL_SHARE * scaled.layout.num_kernels)
    assert scaled.num_parameters() <= 0.44 * scaled.represented_parameters()
    assert predictor_parameters(scaled.config.hidden + 1) > 0.44 * scaled.represented_parameters()


def test_a_pruned_network_keeps_its_mask_by_construction(tmp_path):
    net = tiny_resnet()
    generator = torch.Generator().manual_seed(1)
    masks = {}
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith("layer") and ".conv" in name:
                masks[name] = torch.rand(p.shape, generator=generator) > 0.6
                p.mul_(masks[name])
    rep = registry.create("representation", "nern", FAST)
    rep.fit(net, tiny_bundle())
    predicted = rep.predicted_weights()
    kept = sum(int(m.sum()) for m in masks.values())
    assert rep.represented_parameters() == kept < sum(m.numel() for m in masks.values())
    assert rep.storage_bytes() == 4 * rep.num_parameters() + -(-sum(m.numel() for m in masks.values()) // 8) + 4 * rep.layout.num_kernels
    for name, mask in masks.items():
        assert torch.all(predicted[name][~mask] == 0) and (predicted[name][mask] != 0).float().mean() > 0.99
    rep.save(tmp_path / "rep.pt")
    loaded = NeRN()
    loaded.load(tmp_path / "rep.pt")
    assert all(torch.equal(loaded.layout.masks[k], m) for k, m in masks.items())
    assert all(torch.equal(loaded.predicted_weights()[k], w) for k, w in predicted.items())
    dense = registry.create("representation", "nern", {**FAST, "keep_zeros": False})
    dense.prepare(net)
    assert not dense.layout.masks and dense.represented_parameters() == sum(m.numel() for m in masks.values())


def test_the_papers_configuration_runs_on_cpu_at_tiny_scale():
    """The options of the paper's GPU run (README), with 3 steps: distillation from the first step on every kernel."""
    paper = {"hidden": 160, "levels": 40, "base": 0.76, "warmup_steps": 0, "kernel_batch": 4096, "batch_size": 64,
             "distill_weight": 1e-4, "attention_weight": 1e-4, "permutation": "crossfilter"}
    rep = registry.create("representation", "nern", {**paper, "steps": 3, "log_every": 1, "progress": False})
    rep.fit(tiny_resnet(), tiny_bundle())
    assert [int(r["step"]) for r in rep.history] == [1, 2, 3] and all("kd" in r and "fmap" in r for r in rep.history)
    assert rep.predictor.mlp[0].out_features == 160 and rep.reconstruct() is not None


def test_warns_when_the_rebuilt_network_ends_far_below_the_original():
    from oral6_nern.feedback import FarFromOriginalWarning, warn_if_far_from_original

    history = [{"step": 10.0, "rel_error": 0.5, "accuracy": 0.20}, {"step": 20.0, "rel_error": 0.5, "accuracy": 0.15}]
    with pytest.warns(FarFromOriginalWarning, match="65.0 points below"):
        assert warn_if_far_from_original(history, 0.80, 0.05)
    assert not warn_if_far_from_original(history, 0.19, 0.05)
    assert not warn_if_far_from_original(history, None, 0.05)
    assert not warn_if_far_from_original([{"step": 1.0, "rel_error": 0.5}], 0.8, 0.05)
    import warnings

    from oral6_nern.representation import probe_accuracy

    net, bundle = tiny_resnet(), tiny_bundle()
    rep = registry.create("representation", "nern", {**FAST, "steps": 3, "log_every": 1, "accuracy_tol": 0.0})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep.fit(net, bundle)
    assert rep.original_probe_accuracy == probe_accuracy(net, bundle.test.x, bundle.test.y)
    far = rep.original_probe_accuracy - rep.history[-1]["accuracy"] > 0
    assert any(issubclass(w.category, FarFromOriginalWarning) for w in caught) == far
