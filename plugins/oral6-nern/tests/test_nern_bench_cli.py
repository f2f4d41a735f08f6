"""The benchmark in quick mode and the command line end to end."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from oral6_core.bench import run_benchmark

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain(text: str) -> str:
    return " ".join(ANSI.sub("", text).split())


def test_benchmark_quick_writes_its_files_and_rows(tmp_path):
    result = run_benchmark("nern-resnet20", tmp_path, quick=True)
    for path in result.files:
        assert path.is_file() and path.stat().st_size > 0
    assert (tmp_path / "nern_resnet20.png") in result.files
    fits = [r for r in result.rows if r["table"] == "fits"]
    runs = ["ratio 0.5", "ratio 1", "no permutation", "infilter", "reconstruction only", "half the distillation steps", "GMP-pruned 0.5"]
    assert [r["run"] for r in fits] == [run for run in runs for _ in (0, 1)] and {r["seed"] for r in fits} == {0, 1}
    assert all(0 <= r["reconstructed_acc"] <= 1 and 0 < r["ratio"] for r in fits)
    assert all(r["ratio"] <= 0.5 for r in fits if r["run"] not in ("ratio 1", "GMP-pruned 0.5"))
    pruned = [r for r in fits if r["run"] == "GMP-pruned 0.5"]
    dense = [r for r in fits if r["run"] == "ratio 0.5"]
    assert all(r["zero_where_original_zero"] for r in pruned) and pruned[0]["hidden"] == dense[0]["hidden"]
    assert pruned[0]["represented"] < dense[0]["represented"]
    curves = [r for r in result.rows if r["table"] == "curves"]
    assert {"rel_error", "accuracy"} <= set(curves[0]) and max(r["step"] for r in curves) == 6
    speed = [r for r in result.rows if r["table"] == "speed"]
    assert len(speed) == 3 and all(r["steps_per_s"] > 0 for r in speed)
    crossfilter = [r for r in result.rows if r["table"] == "crossfilter"]
    assert [r["measure"] for r in crossfilter] == ["time", "smoothness"] * 2
    assert all(r["relative"] <= 1 + 1e-9 for r in crossfilter if r["measure"] == "smoothness")
    assert result.markdown.count("\n- ") == 15 and "| ratio 0.5 |" in result.markdown
    assert json.loads((tmp_path / "results.json").read_text())["claims"] == result.claims


def test_represent_and_importance_commands(tmp_path):
    from oral6_core.cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train", "--model", "resnet20", "--dataset", "shapes32", "--optimizer", "adam", "--epochs", "1",
                                  "--set", "model.width=2", "--set", "dataset.num_samples=120", "--out", str(run)])
    assert trained.exit_code == 0, plain(trained.output)
    sets = ["hidden=8", "levels=4", "steps=4", "batch_size=8", "kernel_batch=128"]
    represented = runner.invoke(app, ["represent", "--method", "nern", "--checkpoint", str(run / "checkpoint.pt"), "--out", str(run),
                                      *[a for s in sets for a in ("--set", f"representation.{s}")]])
    text = plain(represented.output)
    assert represented.exit_code == 0, text
    assert "reconstructed accuracy" in text and "compression ratio" in text
    saved = run / "nern-representation.pt"
    assert saved.is_file()
    out = tmp_path / "importance.json"
    result = runner.invoke(app, ["nern", "importance", "--representation", str(saved), "--checkpoint", str(run / "checkpoint.pt"),
                                 "--sparsity", "0.2", "--out", str(out)])
    assert result.exit_code == 0, plain(result.output)
    rows = json.loads(out.read_text())["rows"]
    assert {r["criterion"] for r in rows} == {"reconstruction-error", "magnitude", "random"}
    bad = runner.invoke(app, ["nern", "importance", "--representation", str(run / "checkpoint.pt"), "--checkpoint", str(run / "checkpoint.pt")])
    assert bad.exit_code == 2 and "not a NeRN representation" in plain(bad.output)


def test_represent_learns_the_builder_of_any_model_from_the_checkpoint(tmp_path):
    from oral6_core.cli import app
    from oral6_core.io import load_torch

    runner = CliRunner()
    trained = runner.invoke(app, ["train", "--model", "cnn", "--set", "model.channels=[4,6]", "--epochs", "1", "--no-progress",
                                  "--out", str(tmp_path)])
    assert trained.exit_code == 0, plain(trained.output)
    sets = ["hidden=8", "levels=4", "steps=2", "batch_size=8", "kernel_batch=64", "layers=[\"body.*\"]"]
    represented = runner.invoke(app, ["represent", "--method", "nern", "--checkpoint", str(tmp_path / "checkpoint.pt"), "--no-data",
                                      *[a for s in sets for a in ("--set", f"representation.{s}")]])
    assert represented.exit_code == 0, plain(represented.output)
    saved = load_torch(tmp_path / "nern-representation.pt")
    assert "cnn" in repr(saved) and "[4, 6]" in repr(saved) and "8, 8" in repr(saved)


def test_fits_in_worker_processes_match_the_fits_in_this_process():
    import torch

    from oral6_core import registry
    from oral6_nern.benchmark import QUICK, NeRNBenchConfig, NeRNResNet20, shrink_images

    bundle = shrink_images(registry.create("dataset", "shapes32", {"num_samples": 120, "data_seed": 0}).load(), 8)
    torch.manual_seed(0)
    net = registry.create("model", "resnet20", {"width": 2}).build(bundle.input_shape, bundle.num_classes).eval()
    runs = [("a", {"ratio": 0.5}, net), ("b", {"ratio": 0.5, "distill_weight": 0.0, "attention_weight": 0.0}, net)]
    rows = {}
    for workers in (1, 2):
        config = NeRNBenchConfig(**{**QUICK, "seeds": [0], "workers": workers})
        fits, curves, extra = NeRNResNet20._fits(config, bundle, runs, lambda: workers)
        assert extra == workers
        rows[workers] = [{k: v for k, v in r.items() if k != "fit_s"} for r in fits["rows"]], curves
    assert [r["run"] for r in rows[2][0]] == ["a", "b"] and rows[2][0][0]["distillation"] and not rows[2][0][1]["distillation"]
    assert rows[1] == rows[2]


def test_claims_of_ablations_that_were_not_run_are_not_evaluated_and_the_half_run_gates_the_headline():
    from oral6_nern.benchmark import CONVERGED, HALF, HEADLINE, NeRNResNet20, _untestable
    from oral6_nern.importance import CRITERIA
    from oral6_nern.speed import STEPS

    def row(run, acc, ratio=0.44):
        return {"run": run, "ratio": ratio, "acc_mean": acc, "original": 0.95, "gap_mean": 100 * (0.95 - acc),
                "error_mean": 0.5, "converged": 2, "seeds": 2, "masked_exactly": True}

    summary = [row("ratio 0.44", 0.75), row(HALF, 0.25)]
    importance = [{"criterion": k, "accuracy": 0.5} for k in CRITERIA]
    speed = [{"width": 8, "step": name, "steps_per_s": 1.0, "peak_extra_mib": 1.0} for name, _, _ in STEPS]
    claims = NeRNResNet20._claims(summary, importance, speed, [], 0.44, None)
    assert claims[CONVERGED] is False and claims["distillation beats reconstruction only"] is None
    assert claims["crossfilter permutation beats no permutation"] is None and claims[HEADLINE] is False
    assert "still raised the rebuilt accuracy at ratio 0.44 by 50.0 points" in _untestable(summary, 0.1, "ratio 0.44")[HEADLINE]
    flat = [row("ratio 0.44", 0.75), row(HALF, 0.745)]
    assert NeRNResNet20._claims(flat, importance, speed, [], 0.44, None)[CONVERGED] and HEADLINE not in _untestable(flat, 0.1, "ratio 0.44")
