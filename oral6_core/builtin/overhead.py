"""Benchmark ``core-overhead``: oral6's training loop against a minimal hand-written PyTorch loop."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from pydantic import Field
from torch import nn

from .. import registry
from ..bench import markdown_table, new_figure, save_figure
from ..components import Benchmark, BenchResult
from ..config import ComponentConfig, TrainConfig
from ..data import DataBundle
from ..loggers import Logger, RunInfo, build_loggers
from ..training import fit, seed_everything


class OverheadConfig(ComponentConfig):
    models: list[str] = Field(["mlp", "resnet20"], description="Model builders to time on the digits dataset.")
    epochs: int = Field(3, ge=1, description="Epochs per timed run.")
    repeats: int = Field(5, ge=1, description="Timed runs of each variant (the median is reported).")
    batch_size: int = Field(64, ge=1, description="Minibatch size.")
    threads: int = Field(1, ge=1, description="torch threads during the benchmark (1 keeps small-model timings stable).")


def _build(model_name: str, bundle: DataBundle) -> tuple[nn.Module, torch.optim.Optimizer]:
    seed_everything(0)
    model = registry.create("model", model_name).build(bundle.input_shape, bundle.num_classes)
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def hand_written_loop(model_name: str, bundle: DataBundle, epochs: int, batch_size: int) -> tuple[float, int]:
    """The plain PyTorch loop a user would write: returns training seconds and steps."""
    model, opt = _build(model_name, bundle)
    x, y = bundle.train.x, bundle.train.y  # type: ignore[union-attr]
    n, steps, seconds = len(y), 0, 0.0
    model.train()
    for epoch in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
        seconds += time.perf_counter() - start
    return seconds, steps


def oral6_loop(model_name: str, bundle: DataBundle, epochs: int, batch_size: int, progress: bool = False,
               out_dir: Path | None = None, loggers: Sequence[Logger] = ()) -> tuple[float, int, float]:
    """``oral6_core.training.fit`` on the same model: training seconds, steps, and whole-call seconds."""
    model, _ = _build(model_name, bundle)
    sgd = registry.create("optimizer", "sgd", {"lr": 0.05, "momentum": 0.9})
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, progress=progress, checkpoint=out_dir is not None, device="cpu")
    start = time.perf_counter()
    result = fit(model, bundle, sgd, cfg, out_dir=out_dir, loggers=loggers)
    return result.summary["train_seconds"], result.summary["steps"], time.perf_counter() - start


class TimedLogger(Logger):
    """Wraps a logger and adds up the seconds its calls take: per-step calls, and the rest of the run."""

    def __init__(self, inner: Logger) -> None:
        super().__init__()
        self.inner, self.step_seconds, self.run_seconds = inner, 0.0, 0.0

    @property
    def step_interval(self) -> int:  # type: ignore[override]
        return self.inner.step_interval

    def _timed(self, per_step: bool, call: Callable[..., None], *args: Any) -> None:
        start = time.perf_counter()
        call(*args)
        if per_step:
            self.step_seconds += time.perf_counter() - start
        else:
            self.run_seconds += time.perf_counter() - start

    def start(self, run: RunInfo) -> None:
        self._timed(False, self.inner.start, run)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        self._timed(any(k.startswith("step/") for k in metrics), self.inner.log, metrics, step)

    def log_artifact(self, path: Path) -> None:
        self._timed(False, self.inner.log_artifact, path)

    def finish(self, status: str) -> None:
        self._timed(False, self.inner.finish, status)


class CoreOverhead(Benchmark):
    """Time per step of oral6's loop vs a hand-written loop; progress-bar and logging costs apart.

    The logger cost is the time TensorBoard (and, in the full run, MLflow) calls take inside the
    run, logging the loss and learning rate every 10 steps (5x their default rate): per-step calls
    as a share of the training time, and the rest (start, epoch rows, hyperparameters, files) per run.
    """

    name = "core-overhead"
    Config = OverheadConfig
    readme = Path(__file__).parents[2] / "README.md"

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        c = self.config
        models, epochs, repeats = (c.models[:1], 1, 1) if quick else (c.models, c.epochs, c.repeats)
        threads = torch.get_num_threads()
        torch.set_num_threads(c.threads)
        try:
            bundle = registry.create("dataset", "digits").load()
            rows = [self._time_model(m, bundle, epochs, repeats, quick) for m in models]
        finally:
            torch.set_num_threads(threads)
        fig, ax = new_figure(figsize=(5, 3))
        labels = [r["model"] for r in rows]
        width = 0.35
        ax.bar([i - width / 2 for i in range(len(rows))], [r["hand-written ms/step"] for r in rows], width, label="hand-written")
        ax.bar([i + width / 2 for i in range(len(rows))], [r["oral6 ms/step"] for r in rows], width, label="oral6 fit")
        ax.set_xticks(range(len(rows)), labels)
        ax.set_ylabel("ms per training step")
        ax.legend()
        plot = save_figure(fig, out_dir / "overhead.png")
        claims = {f"oral6 costs at most 1.03x a hand-written loop per step ({r['model']})": r["ratio"] <= 1.03 for r in rows}
        loggers = " + ".join(self._loggers(Path(), quick))
        claims.update({f"{loggers} logging costs under 3% per step ({r['model']})": r["logger cost % per step"] < 3 for r in rows})
        return BenchResult(rows, markdown_table(rows, digits=3), [plot], claims)

    @staticmethod
    def _loggers(tmp: Path, quick: bool) -> dict[str, dict[str, Any]]:
        """TensorBoard, plus MLflow (one SQLite store for all runs) outside ``quick``, every 10 steps."""
        loggers: dict[str, dict[str, Any]] = {"tensorboard": {"every_n_steps": 10}}
        if not quick:
            loggers["mlflow"] = {"every_n_steps": 10, "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}"}
        return loggers

    def _time_model(self, model_name: str, bundle: DataBundle, epochs: int, repeats: int, quick: bool) -> dict[str, float | str]:
        bs = self.config.batch_size
        hand, ours, bar, plain_wall, logged_wall, step_cost, run_cost = [], [], [], [], [], [], []
        oral6_loop(model_name, bundle, 1, bs)  # warm-up
        with tempfile.TemporaryDirectory() as store:
            loggers = self._loggers(Path(store), quick)
            for i in range(repeats):
                seconds, steps = hand_written_loop(model_name, bundle, epochs, bs)
                hand.append(seconds / steps)
                seconds, steps, wall = oral6_loop(model_name, bundle, epochs, bs)
                ours.append(seconds / steps)
                plain_wall.append(wall)
                seconds, steps, _ = oral6_loop(model_name, bundle, epochs, bs, progress=True)
                bar.append(seconds / steps)
                with tempfile.TemporaryDirectory() as tmp:
                    logged_wall.append(oral6_loop(model_name, bundle, epochs, bs, out_dir=Path(tmp))[2])
                timed = [TimedLogger(lg) for lg in build_loggers(loggers)]
                seconds, steps, _ = oral6_loop(model_name, bundle, epochs, bs, out_dir=Path(store) / f"run-{i}", loggers=timed)
                in_steps = sum(t.step_seconds for t in timed)
                step_cost.append(in_steps / (seconds - in_steps))
                run_cost.append(sum(t.run_seconds for t in timed))
        h, o, b = statistics.median(hand), statistics.median(ours), statistics.median(bar)
        return {
            "model": model_name, "hand-written ms/step": 1e3 * h, "oral6 ms/step": 1e3 * o, "ratio": o / h,
            "progress bar cost %": 100 * (b - o) / o,
            "logging+checkpoint ms/epoch": 1e3 * (statistics.median(logged_wall) - statistics.median(plain_wall)) / epochs,
            "logger cost % per step": 100 * statistics.median(step_cost),
            "logger ms per run": 1e3 * statistics.median(run_cost),
        }
