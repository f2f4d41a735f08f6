"""``oral6 sweep``: tune the ``--set`` options of a training run or a benchmark on the core sweep API.

Each trial is an ordinary run folder ``trial-NNNN`` under the sweep folder, which also holds the
Optuna study (``study.db``, unless another storage is given), ``sweep.json`` and ``sweep.png``.
Rerunning the same command resumes the study; several processes given the same storage share it.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Callable, Mapping

from .config import load_toml, parse_set_options
from .errors import ConfigError, Oral6Error, RunInterrupted
from .io import write_json
from .sweep import Dimension, SweepResult, Trial, TrialPruned, optimize, parse_space

SWEEP_FILE = "sweep.json"
PLOT_FILE = "sweep.png"
Echo = Callable[[str], None]


def load_space(path: Path, sections: tuple[str, ...]) -> dict[str, Dimension]:
    """The ``[space]`` table of a TOML file, each key checked to be a ``SECTION.OPTION`` of ``sections``."""
    data = load_toml(path)
    if set(data) != {"space"}:
        raise ConfigError(f"{path} must hold one [space] table (option -> range or choices); it has {sorted(data) or 'nothing'}.")
    space = parse_space(data["space"])
    parse_set_options([f"{name}=0" for name in space], sections)
    return space


def trial_sets(params: Mapping[str, Any]) -> list[str]:
    """A trial's parameters as ``--set`` items."""
    return [f"{name}={json.dumps(value)}" for name, value in params.items()]


def metric_of(row: Mapping[str, Any], metric: str) -> float:
    """``row[metric]`` as a float, or an error listing the metrics the row has."""
    if not isinstance(row.get(metric), (int, float)):
        known = ", ".join(k for k, v in row.items() if isinstance(v, (int, float)))
        raise ConfigError(f"The run reports no metric {metric!r}; pick --metric from: {known}.")
    return float(row[metric])


def _reported(trial: Trial, echo: Echo, run: Callable[[], float]) -> float:
    """Run one trial and print one line about how it ended."""
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    try:
        value = run()
    except TrialPruned as exc:
        echo(f"trial {trial.number} ({params}): {exc}")
        raise
    except RunInterrupted as exc:  # Ctrl-C inside the training loop stops the sweep, not just the trial
        raise KeyboardInterrupt(str(exc)) from exc
    except Oral6Error as exc:
        echo(f"trial {trial.number} ({params}): failed: {exc}")
        raise
    echo(f"trial {trial.number} ({params}): {value:.6g}")
    return value


SECTIONS = {"train": ("model", "dataset", "optimizer", "regularizer", "pruner", "train"), "bench": ("bench",)}
Invoke = Callable[[list[str], "Callable[[dict[str, Any]], None] | None"], None]


def check_command(command: list[str]) -> str:
    """The kind (``train`` or ``bench``) of the command a sweep runs per trial; the sweep owns ``--out``."""
    if not command or command[0] not in SECTIONS or (command[0] == "bench" and command[1:2] != ["run"]):
        raise ConfigError(
            "Give the command to tune after the sweep's options, e.g. `oral6 sweep space.toml --trials 8 -- train "
            "--epochs 5` or `... -- bench run NAME --quick`."
        )
    taken = [arg for arg in command if arg.split("=")[0] in ("--out", "--resume", "--overwrite")]
    if taken:
        raise ConfigError(f"The sweep gives every trial its own run folder; drop {', '.join(taken)} from the command.")
    return command[0]


def read_value(kind: str, folder: Path, metric: str) -> float:
    """A finished trial's value: the last epoch's ``metric`` (train), or its mean over the result rows (bench)."""
    if kind == "train":
        return metric_of(json.loads((folder / "summary.json").read_text())["final"], metric)
    rows = json.loads((folder / "results.json").read_text())["rows"]
    if not rows:
        raise ConfigError(f"The benchmark in {folder} returned no rows to read {metric!r} from.")
    return statistics.mean(metric_of(row, metric) for row in rows)


def command_objective(command: list[str], out: Path, metric: str, invoke: Invoke, echo: Echo) -> Callable[[Trial], float]:
    """An objective that runs ``oral6 COMMAND --out TRIAL_FOLDER --set OPTION=VALUE...`` per trial.

    A training command's pruner sees ``metric`` after every epoch.
    """
    kind = check_command(command)

    def objective(trial: Trial) -> float:
        folder = out / f"trial-{trial.number:04d}"
        trial.set_attr("run", str(folder))
        args = [*command, "--out", str(folder), *(arg for item in trial_sets(trial.params) for arg in ("--set", item))]

        def run() -> float:
            def report(row: dict[str, Any]) -> None:
                trial.report(metric_of(row, metric), row["epoch"])

            invoke(args, report if kind == "train" else None)
            return read_value(kind, folder, metric)

        return _reported(trial, echo, run)

    return objective


def run_sweep(objective: Callable[[Trial], float], space: Mapping[str, Dimension], out: Path, metric: str, trials: int | None,
              direction: str = "maximize", sampler: str = "tpe", seed: int | None = 0, storage: str | None = None,
              study_name: str | None = None, prune: bool = False) -> SweepResult:
    """Run (or resume) the study, then write ``sweep.json`` and ``sweep.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    result = optimize(objective, space, trials, direction, sampler, seed, storage, study_name, prune, importance=True)
    write_json({"metric": metric, "storage": storage, **result.to_json()}, out / SWEEP_FILE)
    plot_sweep(result, metric, out / PLOT_FILE)
    return result


def plot_sweep(result: SweepResult, metric: str, path: Path) -> Path:
    """Trial values with the best so far, and parameter importances when there are any."""
    from .bench import new_figure, save_figure

    from matplotlib.ticker import MaxNLocator

    panels = 2 if result.importances else 1
    fig, axes = new_figure(1, panels, figsize=(5 * panels, 3.2), squeeze=False)
    ax = axes[0][0]
    pick = max if result.direction == "maximize" else min
    best, xs, ys = [], [], []
    for t in result.trials:
        if t["state"] == "complete":
            xs.append(t["number"])
            ys.append(t["value"])
            best.append(pick(best[-1], t["value"]) if best else t["value"])
    pruned = [(t["number"], t["value"]) for t in result.trials if t["state"] == "pruned" and t["value"] is not None]
    ax.plot(xs, ys, "o", label="completed")
    if pruned:
        ax.plot(*zip(*pruned), "x", color="grey", label="pruned (last report)")
    if best:
        ax.step(xs, best, where="post", label="best so far")
    failed = sum(t["state"] == "fail" for t in result.trials)
    ax.set_xlabel("trial" + (f" ({failed} failed, not shown)" if failed else ""))
    ax.set_ylabel(metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")
    if result.importances:
        names = sorted(result.importances, key=result.importances.get)  # type: ignore[arg-type]
        axes[0][1].barh(names, [result.importances[n] for n in names])
        axes[0][1].set_xlabel("importance (fANOVA)")
    return save_figure(fig, path)


def best_rows(result: SweepResult) -> list[tuple[str, str]]:
    """(label, value) pairs describing the best trial, for the CLI's table."""
    best = result.best_trial
    rows = [("trial", str(best["number"])), ("value", f"{best['value']:.6g}")]
    rows += [(name, f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else str(v)) for name, v in best["params"].items()]
    rows.append(("run folder", str(best["attrs"].get("run", ""))))
    return rows
