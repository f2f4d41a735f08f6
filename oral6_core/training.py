"""The one training loop: composes an optimizer, an optional regularizer and an optional pruner.

``train(run)`` builds every component by name from the registry and calls ``fit``; library users
with their own model or data call ``fit`` directly. Under ``torchrun`` the loop trains with
DistributedDataParallel; only rank 0 writes files.
"""

from __future__ import annotations

import json
import math
import random
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from . import distributed, registry
from .components import Batch, OptimizerFactory, Pruner, Regularizer, TrainContext
from .config import RunConfig, TrainConfig, check_resume, check_selected
from .data import BatchLoader, DataBundle
from .errors import CheckpointError, ConfigError, NonFiniteLossError, RunInterrupted, ShapeError
from .loggers import Logger, LoggerGroup, RunInfo, build_loggers, run_artifacts
from .io import append_jsonl, load_torch, save_torch, write_json, write_jsonl
from .metrics import evaluate
from .models import FeaturesAndLogits
from .progress import Progress
from .rundir import RunFolder, resolved, versions

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
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
    except Exception as exc:  # models report bad shapes as RuntimeError, AssertionError, ValueError, ...
        raise ShapeError(
            f"{model_name} cannot take inputs of shape {tuple(bundle.input_shape)} from dataset "
            f"{bundle.name!r}: {(str(exc).splitlines() or [type(exc).__name__])[0]}. Pick a model built for this input (e.g. mlp works "
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
    overwrite: bool = False,
    loggers: Sequence[Logger] = (),
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Train ``model`` on ``bundle``: evaluation each epoch, JSONL metrics, atomic checkpoints.

    ``out_dir`` is claimed for this run (``RunFolder``): a folder that already holds a run needs
    ``resume`` (continue from its checkpoint, ending exactly where an uninterrupted run would have)
    or ``overwrite``. SIGINT or SIGTERM stops the run after the current step with a checkpoint and
    raises ``RunInterrupted``. A NaN or infinite loss raises ``NonFiniteLossError`` naming the step.
    ``loggers`` (rank 0 only) get the run's start, per-step and per-epoch metrics, files and end;
    ``on_epoch_end(row)`` is called with each finished epoch's row (a sweep's pruning hook).
    """
    train = train or TrainConfig()
    with RunFolder(out_dir, resume, overwrite) if out_dir is not None else nullcontext(), _StopRequest() as stop:
        return _fit(model, bundle, optimizer, train, regularizer, pruner, out_dir, resume, describe, stop, loggers, on_epoch_end)


def _fit(model: nn.Module, bundle: DataBundle, optimizer: OptimizerFactory, train: TrainConfig, regularizer: Regularizer | None,
         pruner: Pruner | None, out_dir: Path | None, resume: bool, describe: dict[str, Any] | None, stop: "_StopRequest",
         loggers: Sequence[Logger], on_epoch_end: Callable[[dict[str, Any]], None] | None) -> RunResult:
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
    skip, sums = 0, (0.0, 0)  # batches done and loss sums of a checkpoint's unfinished epoch
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
        skip = ckpt.get("batch", 0)
        if skip:
            if len(ckpt["monitor"]) != dist.world_size:
                raise CheckpointError(f"{out_dir / CHECKPOINT} was written mid-epoch by {len(ckpt['monitor'])} processes; "
                                      f"resume it with as many (it holds each one's position and loss sums).")
            sums = tuple(ckpt["monitor"][dist.rank])  # type: ignore[assignment]
        if train.epochs < start_epoch + (skip > 0):
            raise ConfigError(f"The run in {out_dir} has already begun epoch {start_epoch + (skip > 0)}; --epochs must be at least that.")
        _set_rng_state(ckpt["rng"])
    feed_masks = _MaskFeed(model, opt, pruner)
    feed_masks()
    if writer:
        if resume:
            write_jsonl(history, out_dir / METRICS)  # type: ignore[operator]  # drops rows of an epoch the checkpoint does not hold
        write_json(_config_record(describe, train, optimizer, regularizer, pruner), out_dir / "config.json")  # type: ignore[operator]
    logs = LoggerGroup(loggers if dist.is_main else ())
    if logs:
        if out_dir is None:
            raise ConfigError("Loggers write next to the run's files: give the run a folder (out_dir) to use them.")
        logs.start(RunInfo(out_dir, {**(describe or {}), "train": train.model_dump(mode="json")}, "train", resume, step))

    def save_checkpoint(epochs_done: int, batch: int, loss_sums: list[tuple[float, int]] | None, seconds: float) -> None:
        save_torch(
            {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": scheduler.state_dict() if scheduler is not None else None,
             "pruner": pruner.state_dict() if pruner is not None else None, "epoch": epochs_done, "batch": batch, "monitor": loss_sums,
             "step": step, "elapsed": seconds, "history": history, "rng": _rng_state(), "run": describe or {}},
            out_dir / CHECKPOINT,  # type: ignore[operator]
        )

    best_key = _selection_key(bundle)

    observe = getattr(opt, "observe", None)
    on_cpu = device.type == "cpu"
    progress = Progress("train", total_steps, enabled=None if train.progress and dist.is_main else False, completed=step)
    model.train()
    with progress, logs:
        for epoch in range(start_epoch, train.epochs):
            t0 = time.perf_counter()
            loader.set_epoch(epoch, skip)
            monitor = _LossMonitor(device, epoch, *sums)
            batch_index, skip, sums = skip, 0, (0.0, 0)
            for batch in loader:
                step += 1
                batch_index += 1
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
                    feed_masks()
                opt.zero_grad(set_to_none=True)
                logs.log_step(step, lambda: {"step/train_loss": loss.item(), "step/lr": opt.param_groups[0]["lr"]})
                signum = stop.requested()
                every = train.checkpoint_every
                if out_dir is not None and (signum or (every and step % every == 0 and batch_index < steps_per_epoch)):
                    monitor.check(step)
                    sums_by_rank = distributed.gather(monitor.sums())
                    if writer:
                        save_checkpoint(epoch, batch_index, sums_by_rank, elapsed + time.perf_counter() - t0)
                if signum:
                    raise _interrupted(signum, out_dir, epoch, batch_index, steps_per_epoch)
                if progress.live and step % 10 == 0:
                    progress.update(step, description=f"train epoch {epoch + 1}/{train.epochs}", loss=loss.item())
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
            signum = stop.requested() if epoch + 1 < train.epochs else None
            if writer:
                append_jsonl(row, out_dir / METRICS)  # type: ignore[operator]
                if train.checkpoint and best_key in row and row[best_key] > max((h[best_key] for h in history[:-1]), default=-math.inf):
                    save_torch({"model": model.state_dict(), "epoch": epoch + 1, best_key: row[best_key], "run": describe or {}},
                               out_dir / BEST)  # type: ignore[operator]
                if train.checkpoint or signum:
                    save_checkpoint(epoch + 1, 0, None, elapsed)
            logs.log(row, step)
            if on_epoch_end is not None:
                on_epoch_end(row)
            progress.stage(f"epoch {epoch + 1}/{train.epochs}", step, **_shown(row))
            if signum:
                raise _interrupted(signum, out_dir, epoch, steps_per_epoch, steps_per_epoch)
    if pruner is not None:
        pruner.on_train_end()
    summary = _summarise(history, model, pruner, elapsed, step, describe, ["val", *bundle.extra_splits])
    if writer and train.checkpoint and history and best_key in history[0]:
        chosen = max(history, key=lambda h: h[best_key])
        summary["best_checkpoint"] = {"file": BEST, "epoch": chosen["epoch"], "selected_by": best_key}
    if dist.world_size > 1:
        final_loss = history[-1].get("test_loss", history[-1]["train_loss"]) if history else 0.0
        summary["distributed"] = {"world_size": dist.world_size, "ranks_agree": distributed.agree(final_loss)}
    if writer:
        write_json(summary, out_dir / SUMMARY)  # type: ignore[operator]
    if logs:
        logs.log_artifacts(run_artifacts(out_dir))  # type: ignore[arg-type]
        logs.finish("completed")
    return RunResult(summary, history, model, out_dir, pruner)


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """The metrics of an epoch's row that the progress display shows: accuracies first, then losses and sparsity."""
    keys = [k for k in row if k.endswith("_accuracy") and not k.startswith("test_")]
    keys += [k for k in ("val_loss", "train_loss", "sparsity") if k in row]
    return {k: row[k] for k in keys}


class _MaskFeed:
    """Hands the pruner's masks to an optimizer that defines ``set_masks({param: bool_mask})``, when they change.

    A call compares the mask tensors with those last handed over, by identity and in-place version
    counter, so unchanged masks cost a dictionary of references and no copy.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, pruner: Pruner | None) -> None:
        self.set_masks = getattr(optimizer, "set_masks", None) if pruner is not None else None
        self.pruner = pruner
        self.params = dict(model.named_parameters())
        self.seen: list[tuple[str, Tensor, int]] = []

    def __call__(self) -> None:
        if self.set_masks is None:
            return
        masks = self.pruner.masks()  # type: ignore[union-attr]
        seen = [(name, mask, mask._version) for name, mask in masks.items()]
        if len(seen) == len(self.seen) and all(a[0] == b[0] and a[1] is b[1] and a[2] == b[2] for a, b in zip(seen, self.seen)):
            return
        self.seen = seen
        self.set_masks({self.params[name]: mask for name, mask in masks.items() if name in self.params})


class _LossMonitor:
    """Sums an epoch's losses and stops on the first NaN/inf, naming its step.

    On the CPU every loss is checked at once; on a GPU losses are checked every 25 steps so the
    loop does not wait on the device each step.
    """

    def __init__(self, device: torch.device, epoch: int, total: float = 0.0, count: int = 0) -> None:
        self.on_cpu, self.epoch = device.type == "cpu", epoch
        self.total, self.count = total, count
        self.pending: list[Tensor] = []

    def sums(self) -> tuple[float, int]:
        """The checked losses' sum and the number recorded (what a mid-epoch checkpoint keeps)."""
        return self.total, self.count

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


class _StopRequest:
    """While active, SIGINT and SIGTERM ask the loop to stop after the current step; a second signal stops at once."""

    def __init__(self) -> None:
        self.signum = 0
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum:
            raise RunInterrupted(f"Stopped at once by a second {signal.Signals(signum).name}; the last checkpoint written "
                                 f"(if any) is complete.", 128 + signum)
        self.signum = signum

    def requested(self) -> int:
        """The signal number if any rank received one, else 0 (the same answer on every rank)."""
        return distributed.maximum(self.signum) if distributed.is_active() else self.signum

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def _interrupted(signum: int, out_dir: Path | None, epoch: int, batch: int, steps_per_epoch: int) -> RunInterrupted:
    distributed.maximum(0)  # under torchrun the other ranks wait here until rank 0 has written the checkpoint
    where = f"Stopped by {signal.Signals(signum).name} after batch {batch}/{steps_per_epoch} of epoch {epoch + 1}"
    if out_dir is None:
        return RunInterrupted(f"{where}; nothing was saved (no run folder).", 128 + signum)
    return RunInterrupted(f"{where}; checkpoint saved. Resume with: oral6 train --resume {out_dir}", 128 + signum)


def _selection_key(bundle: DataBundle) -> str:
    """The metric that selects the best epoch, as in ``summary.json``: validation accuracy, else the first extra split's."""
    return f"{'val' if bundle.val is not None else next(iter(bundle.extra_splits), 'val')}_accuracy"


def _config_record(describe: dict[str, Any] | None, train: TrainConfig, *components: Any) -> dict[str, Any]:
    """What ``config.json`` holds: the run's description (resolved options), the loop's options, seed and versions."""
    kinds = ("optimizer", "regularizer", "pruner")
    options = {kind: resolved(c) for kind, c in zip(kinds, components) if getattr(c, "config", None) is not None}
    record = {**(describe or {}), "train": train.model_dump(mode="json"), "seed": train.seed, "versions": versions()}
    given = record.get("options", {})
    record["options"] = {**given, **{kind: value for kind, value in options.items() if kind not in given}}
    return record


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


def train(run: RunConfig, resume: bool = False, overwrite: bool = False,
          on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
    """Build the components named in ``run`` and train: what ``oral6 train`` does.

    Options for an unselected component, and a run folder that cannot take the run, are errors
    raised before any data is loaded. ``config.json`` records every component's resolved options.
    """
    check_selected(run)
    if run.out is not None:
        RunFolder(run.out, resume, overwrite).check()
    opts = run.options
    loggers = build_loggers({name: options for name, options in run.loggers.items() if name != "jsonl"})  # fit writes metrics.jsonl
    seed_everything(run.train.seed)
    components = {"model": registry.create("model", run.model, opts.get("model")),
                  "dataset": registry.create("dataset", run.dataset, opts.get("dataset")),
                  "optimizer": registry.create("optimizer", run.optimizer, opts.get("optimizer"))}
    if run.regularizer != "none":
        components["regularizer"] = registry.create("regularizer", run.regularizer, opts.get("regularizer"))
    if run.pruner:
        components["pruner"] = registry.create("pruner", run.pruner, opts.get("pruner"))
    names = {"model": run.model, "dataset": run.dataset, "optimizer": run.optimizer, "regularizer": run.regularizer, "pruner": run.pruner}
    options = {kind: resolved(c) for kind, c in components.items()}
    if resume and run.out is not None and (run.out / "config.json").is_file():
        check_resume(json.loads((run.out / "config.json").read_text()), names, options, run.train.model_dump(mode="json"), run.out)
    bundle = components["dataset"].load(seed=run.train.seed)
    model = build_model(run, bundle)
    describe = {**names, "options": options, "seed": run.train.seed, "loggers": {lg.name: resolved(lg) for lg in loggers}}
    return fit(model, bundle, components["optimizer"], run.train, components.get("regularizer"), components.get("pruner"),
               run.out, resume, describe, overwrite, loggers, on_epoch_end)


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
