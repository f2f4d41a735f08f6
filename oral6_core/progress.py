"""Progress of long work: a live bar with metrics on a terminal, one plain line per epoch or stage otherwise.

Every long loop (the training loop, workflows, plugins' own loops) reports through ``Progress``::

    with Progress("nern fit", total=steps) as progress:
        for step in ...:
            progress.update(step, loss=loss)            # the bar (a terminal only)
        progress.stage("epoch 1/5", val_accuracy=0.9)   # bar text, or one plain line in a log file

On a terminal (standard error is a TTY) the bar is redrawn in place and vanishes when done. Under
``nohup``, SLURM or a pipe there is no bar; each ``stage`` prints one timestamped line with the
elapsed time, the estimated time left and the metrics, so a log file shows how far the work got.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Iterable, Iterator, TypeVar

from rich.console import Console

from .rundir import is_main_process

_SHOWN: ContextVar[bool] = ContextVar("oral6_progress_shown", default=True)
_ACTIVE: list["Progress"] = []  # entered displays, innermost last
T = TypeVar("T")


@contextmanager
def shown(enabled: bool) -> Iterator[None]:
    """Within the block, every ``Progress`` created without ``enabled`` shows (or hides) itself as told.

    Commands wrap their work in it (``--progress/--no-progress``) so that plugins' loops follow the flag.
    """
    token = _SHOWN.set(enabled)
    try:
        yield
    finally:
        _SHOWN.reset(token)


def format_metrics(metrics: dict[str, Any]) -> str:
    """``loss 0.1234  val_accuracy 0.95`` (floats to four significant digits, None left out)."""
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items() if v is not None)


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s`` or ``1h02m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


_LIVE: dict[str, Any] = {"bar": None}


def _new_bar(console: Console) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar
    from rich.table import Column

    # on a narrow terminal the metrics give way first: the other columns take at most 54 characters
    description = Column(no_wrap=True, overflow="ellipsis", max_width=24)
    info = Column(no_wrap=True, overflow="ellipsis", max_width=max(12, console.width - 54))
    return Bar(TextColumn("[bold]{task.description}", table_column=description), BarColumn(bar_width=10),
               MofNCompleteColumn(table_column=Column(no_wrap=True)), TimeRemainingColumn(),
               TextColumn("{task.fields[info]}", table_column=info), console=console, transient=True)


class Progress:
    """Progress of task ``name`` over ``total`` units (steps, students, environments); see the module docstring.

    ``enabled=False`` shows nothing; left out (None), it follows ``shown`` (default: shown). Under
    torchrun only rank 0 shows anything.
    """

    def __init__(self, name: str, total: int | None = None, enabled: bool | None = None, completed: int = 0,
                 console: Console | None = None) -> None:
        enabled = _SHOWN.get() if enabled is None else enabled
        self.name, self.total, self.enabled, self.completed = name, total, enabled and is_main_process(), completed
        self.console = console or Console(stderr=True)
        self.live = self.enabled and self.console.is_terminal
        self.description = name
        self.metrics: dict[str, Any] = {}  # the last stage's, shown first, then the live ones
        self.live_metrics: dict[str, Any] = {}
        self._bar: Any = None
        self._task: Any = None
        self._owner = False
        self._started = time.perf_counter()
        self._start_completed = completed

    def __enter__(self) -> "Progress":
        self._started = time.perf_counter()
        if self.live:
            self._owner = _LIVE["bar"] is None  # a Progress inside another one adds its line to the same display
            if self._owner:
                _LIVE["bar"] = _new_bar(self.console)
                _LIVE["bar"].start()
            self._bar = _LIVE["bar"]
            self._task = self._bar.add_task(self.description, total=self.total, completed=self.completed, info="")
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        if self._bar is None:
            return
        self._bar.remove_task(self._task)
        if self._owner:
            self._bar.stop()
            _LIVE["bar"] = None
        self._bar = None

    def update(self, completed: int | None = None, advance: int = 0, description: str | None = None, **metrics: Any) -> None:
        """Move the bar to ``completed`` (or by ``advance``) and show ``metrics`` next to it."""
        self.completed = (self.completed if completed is None else completed) + advance
        self.live_metrics.update(metrics)
        if description is not None:
            self.description = description
        self._redraw()

    def _redraw(self) -> None:
        if self._bar is not None:
            shown_metrics = {**self.metrics, **{k: v for k, v in self.live_metrics.items() if k not in self.metrics}}
            info = format_metrics({k.replace("accuracy", "acc"): v for k, v in shown_metrics.items()})
            self._bar.update(self._task, completed=self.completed, description=self.description, info=info)

    def stage(self, label: str, completed: int | None = None, **metrics: Any) -> None:
        """An epoch or stage is done: on a terminal its metrics join the bar, otherwise one plain line is printed."""
        self.metrics = dict(metrics)
        self.update(completed, description=f"{self.name} {label}")
        if self.enabled and not self.live:
            self.console.print(self.line(label, metrics), highlight=False, markup=False, soft_wrap=True)

    def line(self, label: str, metrics: dict[str, Any]) -> str:
        """``12:01:07 train epoch 3/10 [150/500, 12s, about 28s left] loss 0.12``: the plain line of a stage."""
        elapsed = time.perf_counter() - self._started
        where = [f"{self.completed}/{self.total}" if self.total else str(self.completed), format_seconds(elapsed)]
        done = self.completed - self._start_completed
        if self.total and 0 < done and self.completed < self.total:
            where.append(f"about {format_seconds(elapsed / done * (self.total - self.completed))} left")
        return f"{datetime.now():%H:%M:%S} {self.name} {label} [{', '.join(where)}] {format_metrics(metrics)}".rstrip()


def track(items: Iterable[T], name: str, unit: str = "epoch", total: int | None = None, every: int = 1) -> Iterator[T]:
    """Iterate ``items`` inside a ``Progress``: after each item's work, the stage ``UNIT i/total`` is done.

    A plain line is printed every ``every`` items (and after the last), with the metrics last given
    to ``report``. A plugin's loop needs one changed line: ``for epoch in track(range(epochs), "beta")``.
    """
    total = len(items) if total is None else total  # type: ignore[arg-type]
    with Progress(name, total) as progress:
        for i, item in enumerate(items, 1):
            yield item
            if i % every == 0 or i == total:
                progress.stage(f"{unit} {i}/{total}", i, **progress.live_metrics)
            else:
                progress.update(i, description=f"{name} {unit} {i}/{total}")


def report(**metrics: Any) -> None:
    """Show ``metrics`` on the innermost active progress display (nothing when there is none)."""
    if _ACTIVE:
        _ACTIVE[-1].update(**metrics)
