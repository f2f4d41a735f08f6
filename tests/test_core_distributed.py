"""`oral6 train` under torchrun (2 CPU processes, gloo) equals one process with the same global batch."""

import json
import os
import subprocess
import sys

import torch

from oral6_core.config import RunConfig, TrainConfig
from oral6_core.training import train

BATCH = 146  # divides the 1,168 training digits, so no rank sees a partial batch


def _torchrun(*args):
    env = {**os.environ, "ORAL6_LOAD_PLUGINS": "", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "oral6_core", "train", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_process_ddp_equals_single_process_and_resumes(tmp_path):
    run = tmp_path / "ddp"
    common = ["--optimizer", "adam", "--batch-size", BATCH, "--seed", 5, "--out", run]
    first = _torchrun(*common, "--epochs", 1)
    assert first.stdout.count("Training run") == 1 and first.stderr.count("train epoch 1/1 [") == 1, "rank 0 alone prints"
    assert not list(run.glob(".*.tmp")), "only complete files are left behind"
    _torchrun("--resume", run, "--epochs", 2, "--no-progress")
    single = train(RunConfig(optimizer="adam", train=TrainConfig(epochs=2, batch_size=BATCH, seed=5, progress=False), out=tmp_path / "single"))
    ddp_state = torch.load(run / "checkpoint.pt", weights_only=False)["model"]
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp_state[key], value, rtol=1e-5, atol=1e-6)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["distributed"] == {"world_size": 2, "ranks_agree": True}
    assert abs(summary["final"]["test_accuracy"] - single.summary["final"]["test_accuracy"]) < 0.01
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
