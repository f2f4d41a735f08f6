"""What a user sees while a predictor trains: a progress bar with the losses, and a warning when it has not converged."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

from oral6_core.progress import Progress

Monitor = Callable[[int, "dict[str, float] | None"], None]


class NotConvergedWarning(UserWarning):
    """The predictor's weight error was still falling at the end of training."""


class FarFromOriginalWarning(UserWarning):
    """The rebuilt network's probe accuracy ended far below the original network's."""


@contextmanager
def training_progress(steps: int, enabled: bool = True) -> Iterator[Monitor]:
    """The core's progress display over ``steps``: on a terminal a bar with the loss, the weight error and the
    accuracy; in a log file one plain line every tenth of the steps. The yielded monitor takes (step, logged row or None)."""
    with Progress("nern fit", total=steps, enabled=None if enabled else False) as bar:
        tenth = max(1, steps // 10)
        due = [tenth]

        def monitor(step: int, row: dict[str, float] | None) -> None:
            if row is None:
                bar.update(step)
                return
            metrics = {"loss": row["loss"], "weight_error": row["rel_error"], "accuracy": row.get("accuracy")}
            if step >= due[0] or step == steps:
                bar.stage(f"step {step}/{steps}", step, **metrics)
                due[0] = (step // tenth + 1) * tenth
            else:
                bar.update(step, **metrics)

        yield monitor


def _last_tenth(history: list[dict[str, float]], key: str) -> tuple[float, float] | None:
    """(value at the last logged step at or before 90% of training, value at the end) of ``key``; None: too few rows."""
    rows = [r for r in history if key in r]
    if len(rows) < 2:
        return None
    before = [r for r in rows[:-1] if r["step"] <= 0.9 * rows[-1]["step"]]
    return (before[-1][key], rows[-1][key]) if before else None


def late_improvement(history: list[dict[str, float]]) -> float | None:
    """Relative fall of the weight error over the last tenth of the logged steps (None: too few rows)."""
    pair = _last_tenth(history, "rel_error")
    if pair is None or pair[0] <= 0:
        return None
    return (pair[0] - pair[1]) / pair[0]


def late_accuracy_gain(history: list[dict[str, float]]) -> float | None:
    """Rise of the logged (probe) accuracy over the last tenth of the steps, as a fraction (None: not logged)."""
    pair = _last_tenth(history, "accuracy")
    return None if pair is None else pair[1] - pair[0]


def warn_if_not_converged(history: list[dict[str, float]], tolerance: float) -> bool:
    """Warn (``NotConvergedWarning``) when, over the last tenth of training, the weight error fell by more than
    ``tolerance`` (relative) or the probe accuracy rose by more than ``tolerance`` (absolute)."""
    drop, gain = late_improvement(history), late_accuracy_gain(history)
    reasons = []
    if drop is not None and drop > tolerance:
        reasons.append(f"its weight error (RMSE / RMS of the represented weights) still fell by {100 * drop:.1f}%")
    if gain is not None and gain > tolerance:
        reasons.append(f"its rebuilt network's probe accuracy still rose by {100 * gain:.1f} points")
    if not reasons:
        return False
    end = history[-1]
    accuracy = f", accuracy {end['accuracy']:.3f}" if "accuracy" in end else ""
    warnings.warn(
        f"The NeRN predictor has not converged: {' and '.join(reasons)} over the last tenth of training (tolerance "
        f"{100 * tolerance:.1f}), ending at weight error {end['rel_error']:.3f}{accuracy}. Raise representation.steps "
        f"(now {int(end['step'])}), e.g. --set representation.steps={4 * int(end['step'])}.",
        NotConvergedWarning, stacklevel=3,
    )
    return True


def warn_if_far_from_original(history: list[dict[str, float]], original: float | None, tolerance: float) -> bool:
    """Warn (``FarFromOriginalWarning``) when the rebuilt network's last probe accuracy is more than ``tolerance``
    (absolute) below the ``original`` network's on the same images; a converged fit can still be a poor one."""
    accuracy = history[-1].get("accuracy") if history else None
    if original is None or accuracy is None or original - accuracy <= tolerance:
        return False
    warnings.warn(
        f"The network rebuilt from the NeRN predictor reaches {accuracy:.3f} probe accuracy against the original's "
        f"{original:.3f} ({100 * (original - accuracy):.1f} points below, tolerance {100 * tolerance:.1f}). Raise "
        f"representation.ratio (a larger predictor) or representation.steps (now {int(history[-1]['step'])}).",
        FarFromOriginalWarning, stacklevel=3,
    )
    return True
