"""FishLeg composed with the core: the training loop, the CLI (with resume) and the benchmark in quick mode."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from oral6_core.bench import run_benchmark
from oral6_core.config import RunConfig, TrainConfig
from oral6_core.training import train
from typer.testing import CliRunner

from oral6_fishleg.autoencoders import autoencoder, curves_images


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def test_core_training_loop_on_digits_learns_well_above_chance():
    run = RunConfig(optimizer="fishleg",
                    train=TrainConfig(epochs=2, progress=False, checkpoint=False, device="cpu"))
    result = train(run)
    assert result.history[-1]["test_accuracy"] > 0.5
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def _cli(*args):
    from oral6_core.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, " ".join(ANSI.sub("", result.output).split())


def test_cli_train_with_fishleg_resumes_to_the_same_result(tmp_path):
    common = ["--optimizer", "fishleg", "--set", "optimizer.aux_every=5", "--batch-size", "96", "--device", "cpu",
              "--no-progress"]
    code, out = _cli("train", *common, "--epochs", "2", "--out", tmp_path / "straight")
    assert code == 0, out
    code, out = _cli("train", *common, "--epochs", "1", "--out", tmp_path / "resumed")
    assert code == 0, out
    code, out = _cli("train", "--resume", tmp_path / "resumed", "--epochs", "2", "--no-progress")
    assert code == 0, out
    straight = json.loads((tmp_path / "straight" / "summary.json").read_text())["final"]
    resumed = json.loads((tmp_path / "resumed" / "summary.json").read_text())["final"]
    assert straight["test_loss"] == resumed["test_loss"] and straight["test_accuracy"] > 0.3


def test_cli_rejects_a_bad_fishleg_option():
    code, out = _cli("train", "--optimizer", "fishleg", "--set", "optimizer.aux_every=0", "--epochs", "1", "--no-progress")
    assert code == 2 and "aux_every" in out


def test_benchmark_quick_mode_writes_its_files_and_rows(tmp_path):
    result = run_benchmark("fishleg-autoencoder", tmp_path, quick=True)
    for path in result.files:
        assert path.is_file() and path.stat().st_size > 0
    assert (tmp_path / "fishleg_autoencoder.png").is_file()
    runs = [r for r in result.rows if "optimizer" in r]
    assert {r["optimizer"] for r in runs} == {"fishleg", "fishleg, Q frozen at Q₀", "adam", "sgd-m", "soap"}
    assert all(len(r["test_losses"]) == 1 and r["test_losses"][0] > 0 for r in runs)
    swept = [r for r in runs if "sweep" in r]
    assert len(swept) == 16 and all(len(r["sweep"]["trials"]) == 1 for r in swept)
    assert all(r["sweep"]["trials"][0]["state"] == "complete" for r in swept)
    digits = {r["batch"]: r["steps"] for r in runs if r["dataset"] == "digits"}
    assert digits == {32: 40, 64: 40}  # equal numbers of steps at both batch sizes
    assert any("FishLeg below tuned Adam" in claim for claim in result.claims)
    assert "fishleg amortised" in result.markdown
    assert any("gbar_rel_error" in r for r in result.rows)


def test_curves_images_and_autoencoder_shapes():
    images = curves_images(5, side=16, seed=3)
    assert images.shape == (5, 256) and 0 <= images.min() and images.max() <= 1
    assert torch.equal(images, curves_images(5, side=16, seed=3)) and not torch.equal(images, curves_images(5, side=16, seed=4))
    net = autoencoder([256, 32, 6])
    assert net(images).shape == (5, 256)
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU", "Linear", "Linear", "ReLU", "Linear"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("fvp", ["fisher", "hvp", "antithetic"])
def test_fishleg_runs_on_cuda_without_cpu_tensors(fvp):
    from oral6_fishleg import BernoulliLikelihood, FishLeg, FishLegConfig
    from oral6_fishleg.diagnostics import track_inverse_fisher

    model = autoencoder([64, 32, 8]).cuda()
    opt = FishLeg(model, BernoulliLikelihood(), FishLegConfig(aux_every=1, fvp=fvp, aux_batch_size=8))
    x = torch.rand(16, 64, device="cuda")
    for _ in range(3):
        opt.observe(x)
        opt.zero_grad()
        BernoulliLikelihood().nll(model(x), x).backward()
        opt.step()
    state = [t for s in opt.state.values() for v in s.values() for t in (v.values() if isinstance(v, dict) else [v])]
    assert all(t.is_cuda for t in state if torch.is_tensor(t)) and len(state) > len(opt.state)
    assert opt.aux_update().is_cuda
    mask = torch.rand_like(model[0].weight) > 0.5
    opt.set_masks({model[0].weight: mask})
    before = model[0].weight.detach().clone()
    opt.observe(x)
    opt.zero_grad()
    BernoulliLikelihood().nll(model(x), x).backward()
    opt.step()
    assert torch.equal(model[0].weight[~mask], before[~mask]) and opt.aux_update().is_cuda
    assert all(torch.isfinite(p).all() for p in model.parameters())
    rows = track_inverse_fisher(autoencoder([64, 2]).cuda(), BernoulliLikelihood(), x, x, FishLegConfig(aux_every=1, fvp=fvp),
                                steps=4, batch_size=8, checkpoints=[0, 4], probe_size=8, directions=2)
    assert rows[-1]["gbar_aux_loss"] >= rows[-1]["gbar_aux_optimum"] - 1e-6


def test_two_process_ddp_ranks_take_the_same_fishleg_steps(tmp_path):
    """Under torchrun each rank samples labels on its own shard; the averaged F̂z keeps λ and θ identical.

    With GMP pruning the first layers (the head stays dense), so both the sparse and the dense path run.
    """
    env = {**os.environ, "ORAL6_LOAD_PLUGINS": "fishleg,smc", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "oral6_core", "train",
           "--no-progress", "--optimizer", "fishleg", "--set", "optimizer.aux_every=5", "--pruner", "gmp", "--set",
           "pruner.sparsity=0.8", "--batch-size", "146", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "ddp")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["distributed"] == {"world_size": 2, "ranks_agree": True}
    assert summary["sparsity"]["overall"] == pytest.approx(0.8, abs=0.01)
