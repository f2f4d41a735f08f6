"""``oral6 sweep``: trials as run folders, resume, parallel processes, failures, benchmark sweeps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field

from oral6_core import tuning
from oral6_core.components import Benchmark, BenchResult
from oral6_core.config import ComponentConfig
from oral6_core.hookspecs import hookimpl

TRAIN = ["--", "train", "--epochs", "1", "--no-progress", "--set", "train.checkpoint=false"]


def _space(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "space.toml"
    path.write_text("[space]\n" + body)
    return path


def _sweep(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "sweep" / "sweep.json").read_text())


def test_sweep_finds_a_better_lr_than_the_worst_trial(cli, tmp_path):
    space = _space(tmp_path, '"optimizer.lr" = {low = 1e-4, high = 0.3, log = true}\n')
    code, output = cli("sweep", space, "--trials", "3", "--no-prune", "--out", tmp_path / "sweep", *TRAIN)
    assert code == 0, output
    record = _sweep(tmp_path)
    values = {t["params"]["optimizer.lr"]: t["value"] for t in record["trials"]}
    assert len(values) == 3 and all(t["state"] == "complete" for t in record["trials"])
    best_lr = record["best"]["params"]["optimizer.lr"]
    assert values[best_lr] == max(values.values()) > min(values.values())
    assert f"{best_lr:.6g}" in output and "Best of 3 trials" in output
    for t in record["trials"]:  # each trial is an ordinary run folder with the trial's option
        config = json.loads((Path(t["attrs"]["run"]) / "config.json").read_text())
        assert config["options"]["optimizer"]["lr"] == t["params"]["optimizer.lr"]
    assert (tmp_path / "sweep" / "sweep.png").stat().st_size > 0


def test_interrupted_sweep_resumes_with_more_trials(cli, tmp_path, monkeypatch):
    space = _space(tmp_path, '"optimizer.lr" = {low = 1e-3, high = 0.3, log = true}\n')
    args = ("sweep", space, "--trials", "3", "--no-prune", "--out", tmp_path / "sweep", *TRAIN)
    real = tuning.read_value

    def interrupt_third(kind, folder, metric):
        if folder.name == "trial-0002":
            raise KeyboardInterrupt
        return real(kind, folder, metric)

    monkeypatch.setattr(tuning, "read_value", interrupt_third)
    code, _ = cli(*args)
    assert code == 130 and not (tmp_path / "sweep" / "sweep.json").exists()
    monkeypatch.setattr(tuning, "read_value", real)
    code, output = cli(*args)
    assert code == 0, output
    trials = _sweep(tmp_path)["trials"]
    assert [t["state"] for t in trials] == ["complete", "complete", "fail", "complete"]
    assert trials[2]["message"] == "interrupted"
    assert sorted(p.name for p in (tmp_path / "sweep").glob("trial-*")) == [f"trial-000{i}" for i in range(4)]


def test_two_sweep_processes_share_one_study(tmp_path):
    space = _space(tmp_path, '"optimizer.lr" = {low = 1e-3, high = 0.3, log = true}\n')
    command = [sys.executable, "-m", "oral6_core", "sweep", str(space), "--trials", "4", "--no-prune", "--out", str(tmp_path / "sweep")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ORAL6_LOAD_PLUGINS": ""}
    procs = [subprocess.Popen([*command, "--sampler-seed", str(seed), *TRAIN], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for seed in (0, 1)]
    errors = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    trials = _sweep(tmp_path)["trials"]
    assert len(trials) == 4 and all(t["state"] == "complete" for t in trials)
    assert len(list((tmp_path / "sweep").glob("trial-*/summary.json"))) == 4


def test_failed_trials_are_recorded_and_the_sweep_goes_on(cli, tmp_path):
    space = _space(tmp_path, '"optimizer.lr" = {choices = [0.05, 1e30]}\n"optimizer.momentum" = {choices = [0.0, -1.0]}\n')
    code, output = cli("sweep", space, "--sampler", "grid", "--trials", "4", "--out", tmp_path / "sweep", *TRAIN)
    assert code == 0, output
    trials = {(t["params"]["optimizer.lr"], t["params"]["optimizer.momentum"]): t for t in _sweep(tmp_path)["trials"]}
    assert len(trials) == 4 and trials[(0.05, 0.0)]["state"] == "complete"
    assert "optimizer.momentum" in trials[(0.05, -1.0)]["message"]  # a bad option value
    assert "loss became" in trials[(1e30, 0.0)]["message"]  # a NaN loss
    assert [t["state"] for t in trials.values()].count("fail") == 3 and "3 failed" in output


def test_bad_space_or_command_fails_before_any_trial(cli, tmp_path):
    good = _space(tmp_path, '"optimizer.lr" = {low = 1e-3, high = 0.3}\n')
    assert cli("sweep", good, "--out", tmp_path / "s1", "--", "train", "--epochs", "x")[0] == 2
    assert cli("sweep", good, "--out", tmp_path / "s2", "--", "train", "--out", "elsewhere")[0] == 2
    assert cli("sweep", good, "--out", tmp_path / "s3")[0] == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[space]\n"bench.x" = {low = 0, high = 1}\n')
    code, output = cli("sweep", bad, "--out", tmp_path / "s4", *TRAIN)
    assert code == 2 and "bench" in output
    assert not any((tmp_path / name).exists() for name in ("s1", "s2", "s3", "s4"))


class PeakConfig(ComponentConfig):
    x: float = Field(0.0, description="Where to evaluate the peak.")


class Peak(Benchmark):
    """A benchmark whose score peaks at x = 0.3 (test)."""

    name = "peak"
    Config = PeakConfig

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        rows = [{"seed": s, "score": -((self.config.x - 0.3) ** 2) + 0.01 * s} for s in range(2)]
        return BenchResult(rows, "", [], {})


class PeakPlugin:
    @staticmethod
    @hookimpl
    def oral6_benchmarks():
        return [Peak]


def test_sweep_over_a_benchmark(cli, register_plugin, tmp_path):
    register_plugin(PeakPlugin, "peak-plugin")
    space = _space(tmp_path, '"bench.x" = {choices = [0.0, 0.3, 0.9]}\n')
    code, output = cli("sweep", space, "--sampler", "grid", "--metric", "score", "--out", tmp_path / "sweep", "--", "bench", "run", "peak")
    assert code == 0, output
    record = _sweep(tmp_path)
    assert record["best"]["params"] == {"bench.x": 0.3} and record["best"]["value"] == pytest.approx(0.005)
    assert len(record["trials"]) == 3


def test_median_pruner_stops_a_bad_training_trial(cli, tmp_path):
    space = _space(tmp_path, '"optimizer.lr" = {choices = [0.1, 0.05, 1e-6]}\n')
    command = ["--", "train", "--epochs", "2", "--no-progress", "--set", "train.checkpoint=false"]
    code, output = cli("sweep", space, "--sampler", "grid", "--out", tmp_path / "sweep", *command)
    assert code == 0, output
    trials = {t["params"]["optimizer.lr"]: t for t in _sweep(tmp_path)["trials"]}
    assert trials[0.1]["state"] == trials[0.05]["state"] == "complete"
    assert trials[1e-6]["state"] == "pruned" and trials[1e-6]["message"].startswith("pruned at step 1")
    history = (Path(trials[1e-6]["attrs"]["run"]) / "metrics.jsonl").read_text().splitlines()
    assert len(history) == 1  # stopped after its first epoch
