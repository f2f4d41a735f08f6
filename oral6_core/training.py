"""The one training loop: composes an optimizer, an optional regularizer and an optional pruner.

``train(run)`` builds every component by name from the registry and calls ``fit``; library users
with their own model or data call ``fit`` directly. Under ``torchrun`` the loop trains with
DistributedDataParallel; only rank 0 writes files.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import distributed, registry
from .components import Batch, OptimizerFactory, Pruner, Regularizer, TrainContext
from .config import RunConfig, TrainConfig
from .data import BatchLoader, DataBundle
from .errors import CheckpointError, ConfigError, NonFiniteLossError, ShapeError
from .io import append_jsonl, load_torch, save_torch, write_json
from .metrics import evaluate
from .models import FeaturesAndLogits

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"


@dataclass
class RunResult:
    """What a run produced: its summary, per-epoch history and the trained model."""

    summary: dict[str, Any]
    history: list[dict[str, Any]]
    model: nn.Module
    out_dir: Path | None = None
    pruner: Pruner | None = field(default=None, repr=False)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available (this rank's GPU under torchrun), else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("The device cuda was asked for, but no CUDA GPU is available; use cpu or auto.")
        return torch.device("cuda", distributed.local_rank())
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_shapes(model: nn.Module, bundle: DataBundle, model_name: str = "the model") -> None:
    """Run one tiny batch through ``model`` and explain a shape mismatch as a ``ShapeError``."""
    probe = bundle.train[torch.arange(2)] if hasattr(bundle.train, "subset") else None
    x = probe.x if isinstance(probe, Batch) else torch.zeros(2, *bundle.input_shape)
    device = next(iter(model.parameters()), torch.empty(0)).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x.to(device))
    except RuntimeError as exc:
        raise ShapeError(
            f"{model_name} cannot take inputs of shape {tuple(bundle.input_shape)} from dataset "
            f"{bundle.name!r}: {str(exc).splitlines()[0]}. Pick a model built for this input (e.g. mlp works "
            f"on anything)."
        ) from None
    finally:
        model.train(was_training)
    expected = bundle.num_classes if bundle.task.likelihood == "categorical" else math.prod(bundle.input_shape)
    if out.dim() != 2 or out.shape[1] != expected:
        raise ShapeError(f"{model_name} outputs shape {tuple(out.shape)}, but dataset {bundle.name!r} needs (N, {expected}).")


def _schedule(optimizer: torch.optim.Optimizer, kind: str, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-step learning-rate schedule (None for a constant rate: nothing to do per step)."""
    if kind == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))
    return None


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), transient=True,
    )


def fit(
    model: nn.Module,
    bundle: DataBundle,
    optimizer: OptimizerFactory,
    train: TrainConfig | None = None,
    regularizer: Regularizer | None = None,
    pruner: Pruner | None = None,
    out_dir: Path | None = None,
    resume: bool = False,
    describe: dict[str, Any] | None = None,
) -> RunResult:
    """Train ``model`` on ``bundle``: evaluation each epoch, JSONL metrics, atomic checkpoints.

    With ``resume`` the run continues from ``out_dir/checkpoint.pt`` and ends exactly where an
    uninterrupted run would have. A NaN or infinite loss raises ``NonFiniteLossError`` naming the step.
    """
    train = train or TrainConfig()
    dist = distributed.setup(train.device)
    device = resolve_device(train.device)
    task = bundle.task
    model.to(device)
    check_shapes(model, bundle)
    net: nn.Module = model if regularizer is None else FeaturesAndLogits(model)
    if dist.world_size > 1:
        net = distributed.wrap(net, device)
    opt = optimizer.build(model, task)
    loader = BatchLoader(bundle.train, train.batch_size, shuffle=True, seed=train.seed, rank=dist.rank, world_size=dist.world_size)
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * train.epochs
    scheduler = _schedule(opt, train.lr_schedule, total_steps)
    ctx = TrainContext(model, opt, loader, task, device, total_steps, lambda m, b: task.nll(m(b.x), b.y), dist.world_size, scheduler)
    if regularizer is not None:
        regularizer.on_train_start(ctx, bundle)
    if pruner is not None:
        pruner.on_train_start(ctx)

    writer = out_dir is not None and dist.is_main
    history: list[dict[str, Any]] = []
    start_epoch, step, elapsed = 0, 0, 0.0
    if resume:
        if out_dir is None or not (out_dir / CHECKPOINT).is_file():
            raise CheckpointError(f"Cannot resume: no {CHECKPOINT} in {out_dir}.")
        ckpt = load_torch(out_dir / CHECKPOINT, map_location=device)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        if pruner is not None:
            pruner.load_state_dict(ckpt["pruner"])
        start_epoch, step, elapsed, history = ckpt["epoch"], ckpt["step"], ckpt["elapsed"], ckpt["history"]
        _set_rng_state(ckpt["rng"])
    if writer:
        out_dir.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        if not resume:
            (out_dir / METRICS).unlink(missing_ok=True)  # type: ignore[operator]
        write_json({**(describe or {}), "train": train.model_dump()}, out_dir / "config.json")  # type: ignore[operator]

    observe = getattr(opt, "observe", None)
    on_cpu = device.type == "cpu"
    progress = _progress(train.progress and dist.is_main)
    model.train()
    with progress or nullcontext():
        bar = progress.add_task("train", total=total_steps, completed=step, info="") if progress else None
        for epoch in range(start_epoch, train.epochs):
            t0 = time.perf_counter()
            loader.set_epoch(epoch)
            monitor = _LossMonitor(device, epoch)
            for batch in loader:
                step += 1
                if not on_cpu:
                    batch = batch.to(device)
                if observe is not None:
                    observe(batch)
                if regularizer is None:
                    loss = task.nll(net(batch.x), batch.y)
                else:
                    regularizer.on_step_start(step, total_steps)
                    features, logits = net(batch.x)
                    loss = task.nll(logits, batch.y) + regularizer.penalty(features, logits, batch)
                monitor.record(loss, step)
                loss.backward()
                if train.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
                if pruner is not None:
                    pruner.on_after_backward(step)
                opt.step()
                if scheduler is not None:
                    scheduler.step()
                if pruner is not None:
                    pruner.on_step_end(step, total_steps)
                opt.zero_grad(set_to_none=True)
                if bar is not None and step % 10 == 0:
                    progress.update(bar, completed=step, description=f"epoch {epoch + 1}/{train.epochs}", info=f"loss {loss.item():.4f}")  # type: ignore[union-attr]
            monitor.check(step)
            elapsed += time.perf_counter() - t0
            row = {"epoch": epoch + 1, "step": step, "train_loss": monitor.mean(),
                   "lr": opt.param_groups[0]["lr"], "time": elapsed}
            splits = {"val": bundle.val, "test": bundle.test, **bundle.extra_splits}
            for split, data in splits.items():
                if data is not None:
                    row.update({f"{split}_{k}": v for k, v in evaluate(model, data, task, device, train.eval_batch_size).items()})
            if pruner is not None:
                row["sparsity"] = pruner.sparsity()["overall"]
            history.append(row)
            if writer:
                append_jsonl(row, out_dir / METRICS)  # type: ignore[operator]
                if train.checkpoint:
                    save_torch(
                        {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": scheduler.state_dict() if scheduler is not None else None,
                         "pruner": pruner.state_dict() if pruner is not None else None, "epoch": epoch + 1, "step": step,
                         "elapsed": elapsed, "history": history, "rng": _rng_state(), "run": describe or {}},
                        out_dir / CHECKPOINT,  # type: ignore[operator]
                    )
            if bar is not None:
                progress.update(bar, completed=step)  # type: ignore[union-attr]
    if pruner is not None:
        pruner.on_train_end()
    summary = _summarise(history, model, pruner, elapsed, step, describe, ["val", *bundle.extra_splits])
    if dist.world_size > 1:
        final_loss = history[-1].get("test_loss", history[-1]["train_loss"]) if history else 0.0
        summary["distributed"] = {"world_size": dist.world_size, "ranks_agree": distributed.agree(final_loss)}
    if writer:
        write_json(summary, out_dir / SUMMARY)  # type: ignore[operator]
    return RunResult(summary, history, model, out_dir, pruner)


class _LossMonitor:
    """Sums an epoch's losses and stops on the first NaN/inf, naming its step.

    On the CPU every loss is checked at once; on a GPU losses are checked every 25 steps so the
    loop does not wait on the device each step.
    """

    def __init__(self, device: torch.device, epoch: int) -> None:
        self.on_cpu, self.epoch = device.type == "cpu", epoch
        self.total, self.count = 0.0, 0
        self.pending: list[Tensor] = []

    def record(self, loss: Tensor, step: int) -> None:
        self.count += 1
        if self.on_cpu:
            value = loss.item()
            if not math.isfinite(value):
                self._fail(value, step)
            self.total += value
            return
        self.pending.append(loss.detach())
        if len(self.pending) >= 25:
            self.check(step)

    def check(self, step: int) -> None:
        """Check (and sum) the losses not yet checked; ``step`` is the last one recorded."""
        if not self.pending:
            return
        values = torch.stack(self.pending).float().cpu()
        self.pending.clear()
        bad = (~torch.isfinite(values)).nonzero()
        if len(bad):
            self._fail(values[bad[0, 0]].item(), step - len(values) + 1 + int(bad[0, 0]))
        self.total += values.sum().item()

    def mean(self) -> float:
        """Mean loss of the epoch, averaged over ranks."""
        return distributed.mean(torch.tensor(self.total / max(self.count, 1)))

    def _fail(self, value: float, step: int) -> None:
        raise NonFiniteLossError(
            f"The training loss became {value} at step {step} (epoch {self.epoch + 1}). Training stopped and no "
            f"checkpoint was written for this epoch. Lower the learning rate, add --set train.grad_clip=1.0, or check "
            f"the data for NaN values."
        )


def _summarise(history: list[dict[str, Any]], model: nn.Module, pruner: Pruner | None, elapsed: float, steps: int,
               describe: dict[str, Any] | None, selection_splits: list[str]) -> dict[str, Any]:
    final = dict(history[-1]) if history else {}
    summary: dict[str, Any] = {**(describe or {}), "final": final, "epochs": len(history), "steps": steps,
                               "train_seconds": elapsed, "steps_per_second": steps / elapsed if elapsed else None,
                               "parameters": sum(p.numel() for p in model.parameters())}
    for split in selection_splits:
        key = f"{split}_accuracy"
        if history and key in history[0]:
            best = max(history, key=lambda h: h[key])
            summary[f"selected_by_{split}"] = {"epoch": best["epoch"], key: best[key], "test_accuracy": best.get("test_accuracy")}
    if pruner is not None:
        summary["sparsity"] = pruner.sparsity()
    return summary


def default_out_dir(run: RunConfig) -> Path:
    """``runs/<time>-<dataset>-<model>-<optimizer>`` (with the regularizer and pruner when set)."""
    parts = [datetime.now().strftime("%Y%m%d-%H%M%S"), run.dataset, run.model, run.optimizer]
    if run.regularizer != "none":
        parts.append(run.regularizer)
    if run.pruner:
        parts.append(run.pruner)
    return Path("runs") / "-".join(p.replace(":", "_").replace("/", "_") for p in parts)


def build_model(run: RunConfig, bundle: DataBundle) -> nn.Module:
    """The run's model, sized for its dataset (outputs: classes, or input size for generative tasks)."""
    builder = registry.create("model", run.model, run.options.get("model"))
    outputs = bundle.num_classes if bundle.task.likelihood == "categorical" else math.prod(bundle.input_shape)
    return builder.build(bundle.input_shape, outputs)


def train(run: RunConfig, resume: bool = False) -> RunResult:
    """Build the components named in ``run`` and train: what ``oral6 train`` does."""
    opts = run.options
    seed_everything(run.train.seed)
    optimizer = registry.create("optimizer", run.optimizer, opts.get("optimizer"))
    regularizer = registry.create("regularizer", run.regularizer, opts.get("regularizer")) if run.regularizer != "none" else None
    pruner = registry.create("pruner", run.pruner, opts.get("pruner")) if run.pruner else None
    bundle = registry.create("dataset", run.dataset, opts.get("dataset")).load(seed=run.train.seed)
    model = build_model(run, bundle)
    describe = {"model": run.model, "dataset": run.dataset, "optimizer": run.optimizer, "regularizer": run.regularizer,
                "pruner": run.pruner, "options": opts, "seed": run.train.seed}
    return fit(model, bundle, optimizer, run.train, regularizer, pruner, run.out, resume, describe)


def load_trained_model(checkpoint: Path, model: str | None = None, options: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by ``oral6 train`` from its checkpoint; returns it and the run description."""
    ckpt = load_torch(checkpoint)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{checkpoint} is not an oral6 training checkpoint (no 'model' entry).")
    run = dict(ckpt.get("run") or {})
    name = model or run.get("model")
    if name is None:
        raise CheckpointError(f"{checkpoint} does not say which model it holds; pass --model.")
    if model and run.get("model") and model != run["model"]:
        raise CheckpointError(f"{checkpoint} holds a {run['model']!r} model, not {model!r}.")
    run_opts = dict(run.get("options") or {})
    if options:
        run_opts["model"] = {**run_opts.get("model", {}), **options}
    dataset = run.get("dataset", "digits")
    bundle = registry.create("dataset", dataset, run_opts.get("dataset")).load()
    net = build_model(RunConfig(model=name, dataset=dataset, options=run_opts), bundle)
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint} does not fit model {name!r}: {str(exc).splitlines()[0]}") from None
    return net, run
