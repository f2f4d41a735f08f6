"""What a user sees while a predictor trains: a progress bar with the losses, and a warning when it has not converged."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

Monitor = Callable[[int, "dict[str, float] | None"], None]


class NotConvergedWarning(UserWarning):
    """The predictor's weight error was still falling at the end of training."""


@contextmanager
def training_progress(steps: int, enabled: bool = True) -> Iterator[Monitor]:
    """A rich progress bar over ``steps``; the yielded monitor takes (step, logged row or None)."""
    if not enabled:
        yield lambda step, row: None
        return
    columns = (TextColumn("NeRN"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns) as bar:
        task = bar.add_task("fit", total=steps, status="")

        def monitor(step: int, row: dict[str, float] | None) -> None:
            if row is None:
                bar.update(task, completed=step)
                return
            status = f"loss {row['loss']:.4g}  weight error {row['rel_error']:.3f}"
            if "accuracy" in row:
                status += f"  accuracy {row['accuracy']:.3f}"
            bar.update(task, completed=step, status=status)

        yield monitor


def late_improvement(history: list[dict[str, float]]) -> float | None:
    """Relative fall of the weight error over the last tenth of the logged steps (None: too few rows)."""
    if len(history) < 2:
        return None
    last = history[-1]
    before = [r for r in history[:-1] if r["step"] <= 0.9 * last["step"]]
    if not before or before[-1]["rel_error"] <= 0:
        return None
    return (before[-1]["rel_error"] - last["rel_error"]) / before[-1]["rel_error"]


def warn_if_not_converged(history: list[dict[str, float]], tolerance: float) -> bool:
    """Warn (``NotConvergedWarning``) when the weight error fell by more than ``tolerance`` over the last tenth."""
    drop = late_improvement(history)
    if drop is None or drop <= tolerance:
        return False
    warnings.warn(
        f"The NeRN predictor has not converged: its weight error (RMSE / RMS of the represented weights) still fell by "
        f"{100 * drop:.1f}% over the last tenth of training (tolerance {100 * tolerance:.1f}%), ending at "
        f"{history[-1]['rel_error']:.3f}. Raise representation.steps (now {int(history[-1]['step'])}) or the learning rate.",
        NotConvergedWarning, stacklevel=3,
    )
    return True
