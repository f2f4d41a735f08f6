"""The core sweep API: search spaces, failed and pruned trials, resumable and shared studies."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest

from oral6_core.errors import ConfigError
from oral6_core.sweep import Choice, Range, SweepError, Trial, optimize, parse_space

SPACE = {"x": {"low": -4.0, "high": 4.0}}


def quadratic(trial: Trial) -> float:
    return (trial.params["x"] - 1.0) ** 2


def test_parse_space_kinds():
    space = parse_space(
        {
            "optimizer.lr": {"low": 1e-4, "high": 1e-1, "log": True},
            "model.width": {"low": 8, "high": 64, "step": 8},
            "optimizer.init_scale": {"choices": [1.0, 10.0, 100.0]},
        }
    )
    assert space["optimizer.lr"] == Range(1e-4, 1e-1, True, None) and not space["optimizer.lr"].is_int
    assert space["model.width"].is_int
    assert space["optimizer.init_scale"] == Choice((1.0, 10.0, 100.0))


@pytest.mark.parametrize(
    "table",
    [
        {},
        {"lr": 0.1},
        {"lr": {"low": 1.0}},
        {"lr": {"low": 1.0, "high": 0.5}},
        {"lr": {"low": 0.0, "high": 1.0, "log": True}},
        {"lr": {"low": 0.1, "high": 1.0, "scale": 2}},
        {"lr": {"choices": []}},
        {"lr": {"choices": [[1, 2]]}},
        {"lr": {"choices": [1], "low": 0}},
    ],
)
def test_parse_space_rejects_bad_tables(table):
    with pytest.raises(ConfigError):
        parse_space(table)


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_optimize_finds_better_than_worst(sampler):
    result = optimize(quadratic, parse_space(SPACE), trials=12, sampler=sampler, seed=1)
    values = [t["value"] for t in result.trials]
    assert len(values) == 12 and all(t["state"] == "complete" for t in result.trials)
    assert result.best_value == min(values) < max(values)
    assert result.best_value == pytest.approx((result.best_params["x"] - 1.0) ** 2)
    assert all(-4.0 <= t["params"]["x"] <= 4.0 and t["seconds"] >= 0 for t in result.trials)


def test_maximize_and_int_and_choices():
    space = parse_space({"n": {"low": 1, "high": 9, "step": 2}, "c": {"choices": ["a", "b"]}})
    result = optimize(lambda t: t.params["n"] + (t.params["c"] == "b"), space, trials=8, direction="maximize", sampler="random")
    assert all(t["params"]["n"] in (1, 3, 5, 7, 9) and isinstance(t["params"]["n"], int) for t in result.trials)
    assert result.best_value == max(t["value"] for t in result.trials)


def test_grid_runs_every_point_once():
    space = parse_space({"a": {"choices": [1, 2, 3]}, "b": {"choices": [True, False]}})
    result = optimize(lambda t: t.params["a"] * (2 if t.params["b"] else 1), space, trials=None, sampler="grid")
    points = {(t["params"]["a"], t["params"]["b"]) for t in result.trials}
    assert len(result.trials) == 6 and len(points) == 6
    assert result.best_params == {"a": 1, "b": False}
    with pytest.raises(ConfigError):
        optimize(quadratic, parse_space(SPACE), trials=None, sampler="grid")


def test_failed_trials_are_recorded_and_the_sweep_goes_on():
    def objective(trial: Trial) -> float:
        if trial.number == 1:
            raise ConfigError("bad option value")
        if trial.number == 2:
            return math.nan
        trial.set_attr("run", f"trial-{trial.number}")
        return quadratic(trial)

    result = optimize(objective, parse_space(SPACE), trials=4, sampler="random")
    states = [t["state"] for t in result.trials]
    assert states == ["complete", "fail", "fail", "complete"]
    assert result.trials[1]["message"] == "bad option value"
    assert "non-finite" in result.trials[2]["message"]
    assert result.trials[3]["attrs"] == {"run": "trial-3"}
    assert result.to_json()["best"]["number"] in (0, 3)


def test_no_completed_trial_is_a_clear_error():
    def objective(trial: Trial) -> float:
        raise ConfigError("always wrong")

    result = optimize(objective, parse_space(SPACE), trials=2)
    assert result.to_json()["best"] is None
    with pytest.raises(SweepError, match="always wrong"):
        result.best_params


def test_bugs_propagate_after_being_recorded(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    def objective(trial: Trial) -> float:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        optimize(objective, parse_space(SPACE), trials=2, storage=storage)
    result = optimize(quadratic, parse_space(SPACE), trials=2, storage=storage)
    assert [t["state"] for t in result.trials] == ["fail", "complete"]
    assert result.trials[0]["message"] == "RuntimeError: a bug"


def test_median_pruner_stops_bad_trials():
    def objective(trial: Trial) -> float:
        x = trial.params["x"]
        for step in range(5):
            trial.report(x + 1.0 / (step + 1), step)
        return x

    space = parse_space({"x": {"low": 0.0, "high": 1.0}})
    pruned = optimize(objective, space, trials=16, sampler="random", prune=True)
    states = [t["state"] for t in pruned.trials]
    assert "pruned" in states and "complete" in states
    assert all(t["message"].startswith("pruned at step") for t in pruned.trials if t["state"] == "pruned")
    kept = optimize(objective, space, trials=16, sampler="random", prune=False)
    assert all(t["state"] == "complete" for t in kept.trials)


def test_interrupted_sweep_resumes_with_the_missing_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 'sweep' / 'study.db'}"

    def interrupted(trial: Trial) -> float:
        if trial.number == 2:
            raise KeyboardInterrupt
        return quadratic(trial)

    with pytest.raises(KeyboardInterrupt):
        optimize(interrupted, parse_space(SPACE), trials=5, storage=storage)
    result = optimize(quadratic, parse_space(SPACE), trials=5, storage=storage)
    states = [t["state"] for t in result.trials]
    assert states == ["complete", "complete", "fail", "complete", "complete", "complete"]
    assert result.trials[2]["message"] == "interrupted"
    first_two = {t["params"]["x"] for t in result.trials[:2]}
    assert not first_two & {t["params"]["x"] for t in result.trials[3:]}
    with pytest.raises(SweepError, match="minimize"):
        optimize(quadratic, parse_space(SPACE), trials=6, storage=storage, direction="maximize")


def test_two_processes_share_one_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    worker = textwrap.dedent(
        f"""
        import sys, time
        from oral6_core.sweep import optimize, parse_space
        def objective(trial):
            time.sleep(0.05)
            return trial.params["x"] ** 2
        optimize(objective, parse_space({SPACE!r}), trials=8, storage={storage!r}, seed=int(sys.argv[1]))
        """
    )
    script = tmp_path / "worker.py"
    script.write_text(worker)
    procs = [subprocess.Popen([sys.executable, str(script), str(seed)]) for seed in (0, 100)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    result = optimize(quadratic, parse_space(SPACE), trials=8, storage=storage)
    assert len(result.trials) == 8 and all(t["state"] == "complete" for t in result.trials)
