"""Hyperparameter sweeps on Optuna: one search mechanism for the CLI and every benchmark.

``parse_space`` turns a TOML ``[space]`` table into distributions, ``optimize`` runs an objective
over them and returns a :class:`SweepResult`. Optuna is imported inside ``optimize`` only, so the
rest of oral6 works without it.

``trials`` is the size of the study, not of one call: ``optimize`` starts trials until the study
holds ``trials`` finished or running ones, so a sweep resumed on the same storage adds only the
missing trials and several processes sharing one storage split the work. A trial interrupted by
Ctrl-C is recorded as failed and does not count. Failed trials (an ``Oral6Error`` or a non-finite
value) are recorded with their message and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .errors import ConfigError, Oral6Error

DIRECTIONS = ("minimize", "maximize")
SAMPLERS = ("tpe", "random", "grid")


class SweepError(Oral6Error):
    """A sweep that cannot run or that produced no completed trial."""


class TrialPruned(Exception):
    """Raised by :meth:`Trial.report` when the pruner stops the trial; let it propagate."""


@dataclass(frozen=True)
class Range:
    """A numeric range; integer when ``low``, ``high`` and ``step`` are all integers."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high, self.step))


@dataclass(frozen=True)
class Choice:
    """A categorical dimension."""

    choices: tuple[Any, ...]


Dimension = Range | Choice
_RANGE_KEYS = {"low", "high", "log", "step"}


def _number(name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"Search space entry {name!r}: {key} must be a finite number, got {value!r}.")
    return value


def _dimension(name: str, spec: Any) -> Dimension:
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"Search space entry {name!r} must be a table such as {{low = 1e-4, high = 1e-1, log = true}} "
            f"or {{choices = [1, 2, 3]}}, got {spec!r}."
        )
    keys = set(spec)
    if "choices" in keys:
        if keys != {"choices"}:
            raise ConfigError(f"Search space entry {name!r}: 'choices' cannot be combined with {sorted(keys - {'choices'})}.")
        choices = spec["choices"]
        if not isinstance(choices, (list, tuple)) or not choices:
            raise ConfigError(f"Search space entry {name!r}: choices must be a non-empty list, got {choices!r}.")
        for value in choices:
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise ConfigError(f"Search space entry {name!r}: choice {value!r} is not a number, string or boolean.")
        return Choice(tuple(choices))
    if not keys >= {"low", "high"} or not keys <= _RANGE_KEYS:
        raise ConfigError(
            f"Search space entry {name!r} needs 'low' and 'high' (optionally 'log', 'step') or 'choices'; "
            f"got keys {sorted(keys)}."
        )
    low, high = _number(name, "low", spec["low"]), _number(name, "high", spec["high"])
    step = spec.get("step")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"Search space entry {name!r}: log must be true or false, got {log!r}.")
    if step is not None and _number(name, "step", step) <= 0:
        raise ConfigError(f"Search space entry {name!r}: step must be positive, got {step!r}.")
    if low >= high:
        raise ConfigError(f"Search space entry {name!r}: low ({low}) must be below high ({high}).")
    if log and low <= 0:
        raise ConfigError(f"Search space entry {name!r}: a log range needs low > 0, got {low}.")
    if log and step is not None and not isinstance(step, int):
        raise ConfigError(f"Search space entry {name!r}: a log range cannot have a fractional step.")
    return Range(low, high, log, step)


def parse_space(table: Mapping[str, Any]) -> dict[str, Dimension]:
    """Validate a ``[space]`` table (option path -> range or choices) into dimensions."""
    if not isinstance(table, Mapping) or not table:
        raise ConfigError("The search space is empty: give at least one option under [space].")
    return {str(name): _dimension(str(name), spec) for name, spec in table.items()}


class Trial:
    """One trial as the objective sees it: its parameters, a report channel and free attributes."""

    def __init__(self, optuna_trial: Any, prune: bool) -> None:
        self._trial = optuna_trial
        self._prune = prune
        self.number: int = optuna_trial.number
        self.params: dict[str, Any] = dict(optuna_trial.params)

    def report(self, value: float, step: int) -> None:
        """Record an intermediate value; raise :class:`TrialPruned` when the pruner stops the trial."""
        value = float(value)
        if not math.isfinite(value):
            return
        self._trial.report(value, step)
        if self._prune and self._trial.should_prune():
            raise TrialPruned(f"pruned at step {step} (value {value:.6g})")

    def set_attr(self, key: str, value: Any) -> None:
        """Store a JSON-ready value with the trial (e.g. the run folder); it appears in ``attrs``."""
        self._trial.set_user_attr(key, value)


@dataclass
class SweepResult:
    """The trials of a study and its best one."""

    direction: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    study_name: str | None = None

    def _best(self) -> dict[str, Any]:
        done = [t for t in self.trials if t["state"] == "complete"]
        if not done:
            failures = "; ".join(f"trial {t['number']}: {t['message']}" for t in self.trials if t["message"])
            raise SweepError(f"No trial of the sweep completed. {failures}".strip())
        pick = max if self.direction == "maximize" else min
        return pick(done, key=lambda t: t["value"])

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self._best()["params"])

    @property
    def best_value(self) -> float:
        return float(self._best()["value"])

    @property
    def best_trial(self) -> dict[str, Any]:
        return self._best()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary: direction, best trial (or null) and every trial."""
        try:
            best: dict[str, Any] | None = self._best()
        except SweepError:
            best = None
        return {
            "study_name": self.study_name,
            "direction": self.direction,
            "best": None if best is None else {"number": best["number"], "params": best["params"], "value": best["value"]},
            "trials": self.trials,
        }


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise SweepError(
            "Sweeps need Optuna, which is not installed. Install it with `pip install oral6-core[sweep]`."
        ) from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _distributions(optuna: Any, space: Mapping[str, Dimension]) -> dict[str, Any]:
    dists = optuna.distributions
    out: dict[str, Any] = {}
    for name, dim in space.items():
        if isinstance(dim, Choice):
            out[name] = dists.CategoricalDistribution(dim.choices)
        elif dim.is_int:
            out[name] = dists.IntDistribution(int(dim.low), int(dim.high), log=dim.log, step=int(dim.step))
        else:
            out[name] = dists.FloatDistribution(float(dim.low), float(dim.high), log=dim.log, step=dim.step)
    return out


def grid_size(space: Mapping[str, Dimension]) -> int:
    """The number of points of a grid over categorical dimensions."""
    size = 1
    for name, dim in space.items():
        if not isinstance(dim, Choice):
            raise ConfigError(f"The grid sampler needs choices for every dimension; {name!r} is a range.")
        size *= len(dim.choices)
    return size


def _sampler(optuna: Any, kind: str, seed: int | None, trials: int) -> Any:
    if kind in ("random", "grid"):  # grid points are enqueued by ``_next_grid_point``
        return optuna.samplers.RandomSampler(seed=seed)
    # TPE starts modelling after a third of the budget (Optuna's default of 10 exceeds small sweeps).
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, trials // 3)))


def _next_grid_point(space: Mapping[str, Dimension], taken: list[Any]) -> dict[str, Any]:
    """The first grid point, in declaration order, that no counted trial has taken."""
    seen = {tuple(t.params.get(name) for name in space) for t in taken}
    for point in itertools.product(*(dim.choices for dim in space.values())):  # type: ignore[union-attr]
        if point not in seen:
            return dict(zip(space, point))
    raise SweepError("Every grid point has a trial already.")


def _lock(storage: str | None) -> contextlib.AbstractContextManager[Any]:
    """A file lock beside a local SQLite database, so processes sharing it never overshoot the budget."""
    if storage is None or not storage.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from filelock import FileLock

    return FileLock(storage[len("sqlite:///"):] + ".lock")


def _counted(trial: Any, state: Any) -> bool:
    if trial.state == state.FAIL:
        return not trial.user_attrs.get("interrupted", False)
    return trial.state in (state.COMPLETE, state.PRUNED, state.RUNNING, state.WAITING)


def _record(trial: Any) -> dict[str, Any]:
    attrs = dict(trial.user_attrs)
    seconds = attrs.pop("seconds", None)
    message = attrs.pop("message", None)
    attrs.pop("interrupted", None)
    return {
        "number": trial.number,
        "params": dict(trial.params),
        "value": trial.value,
        "state": trial.state.name.lower(),
        "message": message,
        "seconds": seconds,
        "attrs": attrs,
    }


@contextlib.contextmanager
def _timed(trial: Any) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))


def _run_trial(study: Any, optuna: Any, objective: Callable[[Trial], float], otrial: Any, prune: bool) -> None:
    state = optuna.trial.TrialState
    try:
        with _timed(otrial):
            value = float(objective(Trial(otrial, prune)))
    except TrialPruned as exc:
        otrial.set_user_attr("message", str(exc))
        study.tell(otrial, state=state.PRUNED)
        return
    except Oral6Error as exc:
        otrial.set_user_attr("message", str(exc))
        study.tell(otrial, state=state.FAIL)
        return
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        otrial.set_user_attr("interrupted", interrupted)
        otrial.set_user_attr("message", "interrupted" if interrupted else f"{type(exc).__name__}: {exc}")
        study.tell(otrial, state=state.FAIL)
        raise
    if not math.isfinite(value):
        otrial.set_user_attr("message", f"the objective returned a non-finite value ({value})")
        study.tell(otrial, state=state.FAIL)
    else:
        study.tell(otrial, value)


def optimize(
    objective: Callable[[Trial], float],
    space: Mapping[str, Dimension],
    trials: int | None = 10,
    direction: str = "minimize",
    sampler: str = "tpe",
    seed: int | None = 0,
    storage: str | None = None,
    study_name: str | None = None,
    prune: bool = False,
) -> SweepResult:
    """Run ``objective`` until the study holds ``trials`` trials; return every trial and the best one."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"Unknown direction {direction!r}; use one of {', '.join(DIRECTIONS)}.")
    if sampler not in SAMPLERS:
        raise ConfigError(f"Unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}.")
    if not space:
        raise ConfigError("The search space is empty.")
    if sampler == "grid":
        size = grid_size(space)
        trials = size if trials is None else min(trials, size)
    if trials is None or trials < 1:
        raise ConfigError(f"The number of trials must be a positive integer, got {trials!r}.")
    if storage is not None and storage.startswith("sqlite:///"):
        Path(storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    optuna = _import_optuna()
    state = optuna.trial.TrialState
    name = study_name or ("oral6" if storage is not None else None)
    try:
        with _lock(storage):
            study = optuna.create_study(
                storage=storage,
                study_name=name,
                direction=direction,
                load_if_exists=True,
                pruner=optuna.pruners.MedianPruner(n_startup_trials=min(5, max(1, trials // 4))) if prune else optuna.pruners.NopPruner(),
            )
    except ValueError as exc:  # e.g. a stored study created with the other direction
        raise SweepError(f"Cannot open study {name!r} in {storage}: {exc}") from exc
    if study.direction.name.lower() != direction:
        raise SweepError(f"Study {name!r} in {storage} was created to {study.direction.name.lower()}, not to {direction}.")
    existing = len(study.get_trials(deepcopy=False))
    # A resumed study draws new random numbers instead of repeating the first trials' proposals.
    study.sampler = _sampler(optuna, sampler, None if seed is None else seed + existing, trials)
    distributions = _distributions(optuna, space)
    while True:
        with _lock(storage):
            taken = [t for t in study.get_trials(deepcopy=False) if _counted(t, state)]
            if len(taken) >= trials:
                break
            if sampler == "grid":
                study.enqueue_trial(_next_grid_point(space, taken))
            otrial = study.ask(distributions)
        _run_trial(study, optuna, objective, otrial, prune)
    return SweepResult(direction, [_record(t) for t in study.get_trials(deepcopy=False)], study.study_name)
