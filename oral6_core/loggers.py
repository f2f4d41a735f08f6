"""Loggers: where a run's parameters, metrics and files go besides its own folder.

Built-ins: ``jsonl`` (training always writes its ``metrics.jsonl``; other workflows write
``metrics-WORKFLOW.jsonl`` with it), ``tensorboard`` and ``mlflow``; plugins add more through
the ``oral6_loggers`` hook. Each logger gets ``start(run)`` once, ``log(metrics, step)`` for
every epoch row (and, when its ``step_interval`` is positive, every that many steps with keys
prefixed ``step/``), ``log_artifact(path)`` for the run's files and ``finish(status)`` once, with
status ``completed``, ``failed``, ``interrupted`` or ``pruned``. Only rank 0 of a ``torchrun``
job logs.
"""

from __future__ import annotations

import logging
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

from pydantic import Field

from .components import Component
from .config import ComponentConfig
from .errors import ConfigError, Oral6Error
from .extras import require
from .io import append_jsonl, write_json

STATUSES = ("completed", "failed", "interrupted", "pruned")


class LoggerError(Oral6Error):
    """A logger that cannot start (e.g. a tracking server that refuses the run)."""


@dataclass
class RunInfo:
    """What a logger learns about the run at its start."""

    out_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    workflow: str = "train"
    resume: bool = False
    start_step: int = 0

    def local(self, name: str) -> Path:
        """A logger's file or folder in the run folder (suffixed by the workflow outside training)."""
        if self.workflow == "train":
            return self.out_dir / name
        stem, dot, suffix = name.partition(".")
        return self.out_dir / f"{stem}-{self.workflow}{dot}{suffix}"

    @property
    def params(self) -> dict[str, bool | int | float | str]:
        """The run's configuration as flat ``section.option`` parameters (other values as text)."""
        return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in _flatten(self.config).items()}


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers among ``metrics`` (booleans as 0/1), without the ``step`` counter."""
    out = {}
    for key, value in metrics.items():
        if key != "step" and isinstance(value, (bool, int, float)) and math.isfinite(value):
            out[key] = float(value)
    return out


class Logger(Component):
    """Base class of loggers; every method is optional (a no-op here)."""

    step_interval: ClassVar[int] = 0

    def start(self, run: RunInfo) -> None:
        """Open the destination; on ``run.resume`` continue the run's earlier record."""

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Record one row of metrics at ``step`` (the global training step, or the workflow's index)."""

    def log_artifact(self, path: Path) -> None:
        """Record a file the run wrote (PNG plots, JSON summaries)."""

    def finish(self, status: str) -> None:
        """Close the destination; ``status`` is one of ``STATUSES``."""


class JsonlLogger(Logger):
    """One JSON line per logged row: metrics-WORKFLOW.jsonl (training always writes its metrics.jsonl itself)."""

    name = "jsonl"

    def start(self, run: RunInfo) -> None:
        self.path = run.local("metrics.jsonl")
        if not run.resume:
            self.path.unlink(missing_ok=True)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        append_jsonl(dict(metrics), self.path)


class TensorBoardConfig(ComponentConfig):
    every_n_steps: int = Field(50, ge=0, description="Write the training loss and learning rate every this many steps (0: per epoch only).")
    log_dir: Path | None = Field(None, description="Event-file folder (default: the run folder's tensorboard/).")
    images: bool = Field(True, description="Write the run's PNG files as images.")


class TensorBoardLogger(Logger):
    """TensorBoard event files: scalars per step and per epoch, hyperparameters, the run's PNGs."""

    name = "tensorboard"
    Config = TensorBoardConfig
    # Per-step scalars are written in batches (with each epoch row, or this many at once), so the
    # event writer's thread does not compete with the training steps for the interpreter lock.
    BATCH: ClassVar[int] = 200

    @property
    def step_interval(self) -> int:  # type: ignore[override]
        return self.config.every_n_steps

    def start(self, run: RunInfo) -> None:
        require("tensorboard", "tensorboard", "The tensorboard logger")
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = self.config.log_dir or run.local("tensorboard")
        # A resumed run appends to the same folder; events logged after its checkpoint are dropped.
        self.writer = SummaryWriter(str(self.log_dir), purge_step=run.start_step + 1 if run.resume else None)
        self.params, self.last, self.step = run.params, {}, run.start_step
        self.pending: list[tuple[str, float, int]] = []

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        values = numeric(metrics)
        self.pending.extend((key, value, step) for key, value in values.items())
        self.step = max(self.step, step)
        if any(not key.startswith("step/") for key in values) or len(self.pending) >= self.BATCH:
            self._flush()
        self.last.update({k: v for k, v in values.items() if not k.startswith("step/")})

    def _flush(self) -> None:
        for key, value, step in self.pending:
            self.writer.add_scalar(key, value, step)
        self.pending = []

    def log_artifact(self, path: Path) -> None:
        if self.config.images and path.suffix.lower() == ".png":
            import numpy as np
            from PIL import Image

            image = np.asarray(Image.open(path).convert("RGB"))
            self.writer.add_image(path.stem, image, self.step, dataformats="HWC")

    def finish(self, status: str) -> None:
        from torch.utils.tensorboard.summary import hparams

        self._flush()
        if self.params:
            for summary in hparams(self.params, {**self.last, "completed": float(status == "completed")}):
                self.writer.file_writer.add_summary(summary)
        self.writer.close()


class MlflowConfig(ComponentConfig):
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI (a server, a database, file:...); default: sqlite mlflow.db beside the run folder."
    )
    experiment: str = Field("oral6", description="MLflow experiment name.")
    every_n_steps: int = Field(50, ge=0, description="Log the training loss and learning rate every this many steps (0: per epoch only).")


class MlflowLogger(Logger):
    """MLflow runs: parameters, per-step and per-epoch metrics, the run's files as artifacts."""

    name = "mlflow"
    Config = MlflowConfig
    _STATUS: ClassVar[dict[str, str]] = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "pruned": "KILLED"}

    @property
    def step_interval(self) -> int:  # type: ignore[override]
        return self.config.every_n_steps

    def _store(self, run: RunInfo) -> tuple[str, str | None]:
        """Tracking URI and, for a local SQLite store, its artifact folder (``mlruns/`` beside the database).

        The default is ``sqlite:///<parent of the run folder>/mlflow.db``: MLflow 3 refuses new file
        stores unless ``MLFLOW_ALLOW_FILE_STORE`` is set; a ``file:`` URI still works where it is.
        """
        uri = self.config.tracking_uri or f"sqlite:///{run.out_dir.resolve().parent / 'mlflow.db'}"
        if not uri.startswith("sqlite:///"):
            return uri, None  # servers and file stores place artifacts themselves
        database = Path(uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        return uri, (database.parent / "mlruns").as_uri()

    def start(self, run: RunInfo) -> None:
        require("mlflow", "mlflow", "The mlflow logger")
        for name in ("mlflow", "alembic"):  # quiet the database set-up messages
            logging.getLogger(name).setLevel(logging.WARNING)
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        uri, artifacts = self._store(run)
        record = run.local("mlflow.json")
        self.pending: list[Any] = []
        try:
            self.client = MlflowClient(tracking_uri=uri)
            previous = _read_json(record) if run.resume else None
            if previous and previous.get("tracking_uri") == uri:
                self.run_id = previous["run_id"]
                self.client.update_run(self.run_id, status="RUNNING")
                return
            experiment = self.client.get_experiment_by_name(self.config.experiment)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(self.config.experiment, artifact_location=artifacts)
            created = self.client.create_run(experiment_id, run_name=run.out_dir.name,
                                             tags={"oral6.workflow": run.workflow, "oral6.run_dir": str(run.out_dir.resolve())})
            self.run_id = created.info.run_id
            params = [Param(k, str(v)[:6000]) for k, v in run.params.items()]
            for i in range(0, len(params), 100):
                self.client.log_batch(self.run_id, params=params[i : i + 100])
        except MlflowException as exc:
            raise LoggerError(f"MLflow at {uri} refused the run: {exc}") from None
        write_json({"tracking_uri": uri, "run_id": self.run_id, "experiment": self.config.experiment}, record)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending.extend(Metric(_mlflow_key(k), v, now, step) for k, v in numeric(metrics).items())
        if not any(k.startswith("step/") for k in metrics) or len(self.pending) >= 1000:
            self._flush()

    def _flush(self) -> None:
        for i in range(0, len(self.pending), 1000):
            self.client.log_batch(self.run_id, metrics=self.pending[i : i + 1000])
        self.pending = []

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def finish(self, status: str) -> None:
        self._flush()
        self.client.set_terminated(self.run_id, self._STATUS[status])


def _mlflow_key(key: str) -> str:
    return re.sub(r"[^\w\-. :/]", "_", key)


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def status_of(exc: BaseException | None) -> str:
    """The finish status for a run that ended with ``exc`` (None: completed)."""
    if exc is None:
        return "completed"
    from .sweep import TrialPruned

    if isinstance(exc, TrialPruned):
        return "pruned"
    if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == "RunInterrupted":
        return "interrupted"
    return "failed"


class LoggerGroup:
    """Several loggers called as one; a context manager that finishes them when the block raises."""

    def __init__(self, loggers: Iterable[Logger] = ()) -> None:
        self.loggers = list(loggers)
        self.step_loggers = [lg for lg in self.loggers if lg.step_interval > 0]
        self.started: list[Logger] = []

    def __bool__(self) -> bool:
        return bool(self.loggers)

    def start(self, run: RunInfo) -> LoggerGroup:
        for logger in self.loggers:
            try:
                logger.start(run)
            except BaseException:
                self.finish("failed")
                raise
            self.started.append(logger)
        return self

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        for logger in self.started:
            logger.log(metrics, step)

    def log_step(self, step: int, metrics: Callable[[], Mapping[str, Any]]) -> None:
        """Per-step values for the loggers due at ``step``; ``metrics`` is called only when one is."""
        due = [lg for lg in self.step_loggers if step % lg.step_interval == 0]
        if due:
            values = metrics()
            for logger in due:
                logger.log(values, step)

    def log_artifacts(self, paths: Iterable[Path]) -> None:
        for path in paths:
            if path.is_file():
                for logger in self.started:
                    logger.log_artifact(path)

    def finish(self, status: str) -> None:
        started, self.started = self.started, []
        for logger in started:
            logger.finish(status)

    def __enter__(self) -> LoggerGroup:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is not None:
            self.finish(status_of(exc))


def logger_spec(names: Sequence[str], options: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """``{name: options}`` for the selected loggers; options for an unselected one are an error."""
    options = dict(options or {})
    unused = sorted(set(options) - set(names))
    if unused:
        raise ConfigError(
            f"Options are set for logger {unused[0]!r}, which is not selected, so they would be ignored; add "
            f"--logger {unused[0]} or drop the logger.{unused[0]}.* options."
        )
    for name, values in options.items():
        if not isinstance(values, dict):
            raise ConfigError(f"Set logger options as logger.{name}.OPTION=VALUE, not logger.{name}={values!r}.")
    return {name: dict(options.get(name, {})) for name in dict.fromkeys(names)}


def build_loggers(spec: Mapping[str, Mapping[str, Any]]) -> list[Logger]:
    """Logger instances for ``{name: options}`` (options validated, errors name them)."""
    from . import registry

    return [registry.create("logger", name, dict(values)) for name, values in spec.items()]


def recorded_loggers(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The loggers (with options) recorded in a run folder's config.json, to continue them on resume."""
    return dict((_read_json(run_dir / "config.json") or {}).get("loggers") or {})


def start_loggers(spec: Mapping[str, Mapping[str, Any]], out_dir: Path | None, workflow: str, config: dict[str, Any]) -> LoggerGroup:
    """The loggers of ``spec``, started for a ``workflow`` whose files go to ``out_dir``."""
    group = LoggerGroup(build_loggers(spec))
    if group:
        if out_dir is None:
            raise ConfigError(f"Loggers need a folder for the {workflow} record; give one with --out.")
        group.start(RunInfo(out_dir, config, workflow))
    return group


@contextmanager
def track(spec: Mapping[str, Mapping[str, Any]], out_dir: Path | None, workflow: str, config: dict[str, Any]) -> Iterator[LoggerGroup]:
    """Loggers around a workflow: started here, finished as ``completed`` or with the block's failure."""
    group = start_loggers(spec, out_dir, workflow, config)
    with group:
        yield group
    group.finish("completed")


def run_artifacts(out_dir: Path) -> list[Path]:
    """The files of a run folder worth keeping with its record: JSON summaries and PNG plots."""
    return sorted(p for p in out_dir.glob("*") if p.suffix in (".json", ".jsonl", ".png", ".md") and p.is_file())
