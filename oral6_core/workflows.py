"""Library functions behind the workflow commands: adapt, search, fit-generative, represent."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable


from . import registry
from .components import BlackBox, SearchTask
from .config import RunConfig, TrainConfig
from .data import ArrayDataset, DataBundle
from .errors import CheckpointError, ConfigError, DataError, ShapeError
from .io import save_torch, write_json
from .metrics import evaluate
from .training import CHECKPOINT, build_model, fit, load_trained_model, resolve_device, seed_everything


def resumable_run(run_dir: Path, epochs: int | None = None) -> RunConfig:
    """The ``RunConfig`` of the run in ``run_dir`` (optionally with more epochs), ready to resume."""
    config_file = run_dir / "config.json"
    if not (run_dir / CHECKPOINT).is_file() or not config_file.is_file():
        raise CheckpointError(f"Cannot resume {run_dir}: it holds no {CHECKPOINT} and config.json from `oral6 train`.")
    saved = json.loads(config_file.read_text())
    train_cfg = TrainConfig(**saved["train"])
    if epochs is not None:
        train_cfg = train_cfg.model_copy(update={"epochs": epochs})
    return RunConfig(model=saved["model"], dataset=saved["dataset"], optimizer=saved["optimizer"],
                     regularizer=saved["regularizer"], pruner=saved["pruner"], options=saved["options"],
                     train=train_cfg, out=run_dir)


def _load_bundle(name: str, options: dict[str, Any] | None, seed: int) -> DataBundle:
    return registry.create("dataset", name, options).load(seed=seed)


def _outputs(bundle: DataBundle) -> int:
    return bundle.num_classes


def adapt(adapter_name: str, source: str, target: str, model: str, source_model: str, source_epochs: int, source_lr: float,
          mode: str, k: int, seed: int, device: str, options: dict[str, dict[str, Any]], out: Path | None) -> dict[str, Any]:
    """Train a source model, hide it behind a ``BlackBox``, adapt a student on unlabelled target data."""
    seed_everything(seed)
    adapter = registry.create("adapter", adapter_name, options.get("adapter"))
    src = _load_bundle(source, options.get("source"), seed)
    tgt = _load_bundle(target, options.get("target"), seed)
    if src.input_shape != tgt.input_shape or src.num_classes != tgt.num_classes:
        raise ShapeError(
            f"Source {source!r} gives inputs {src.input_shape} with {src.num_classes} classes, target {target!r} "
            f"gives {tgt.input_shape} with {tgt.num_classes}: a black box trained on one cannot label the other."
        )
    if not isinstance(tgt.train, ArrayDataset):
        raise DataError(f"Target dataset {target!r} must be held in memory (an ArrayDataset) to hide its labels.")
    src_net = build_model(RunConfig(model=source_model, dataset=source, options={"model": options.get("model", {})}), src)
    trained = fit(src_net, src, registry.create("optimizer", "adam", {"lr": source_lr}),
                  TrainConfig(epochs=source_epochs, seed=seed, device=device, progress=False, checkpoint=False)).model
    dev = resolve_device(device)
    black_box = BlackBox(trained, src.num_classes, mode=mode, k=k)  # type: ignore[arg-type]
    source_on_target = evaluate(trained, tgt.test, tgt.task, dev)["accuracy"]  # type: ignore[arg-type]
    seed_everything(seed)
    student = build_model(RunConfig(model=model, dataset=target, options={"model": options.get("model", {})}), tgt).to(dev)
    started = time.perf_counter()
    student = adapter.adapt(black_box, tgt.train.without_labels(), student)
    queries, seconds = black_box.queries, time.perf_counter() - started
    report = {
        "adapter": adapter_name, "source": source, "target": target,
        "source_accuracy_on_source": evaluate(trained, src.test, src.task, dev)["accuracy"],  # type: ignore[arg-type]
        "source_accuracy_on_target": source_on_target,
        "adapted_accuracy_on_target": evaluate(student, tgt.test, tgt.task, dev)["accuracy"],  # type: ignore[arg-type]
        "black_box_queries": queries, "black_box_mode": mode, "adapt_seconds": seconds,
    }
    if out is not None:
        write_json(report, out / "adapt.json")
        save_torch({"model": student.state_dict(), "adapter": adapter_name,
                    "run": {"model": model, "dataset": target, "options": {"model": options.get("model", {})}}}, out / "student.pt")
    return report


def search(predictor_name: str, dataset: str, teacher_ckpt: Path, budget: int | None, predictor_ckpt: Path | None,
           top_k: int, distil: bool, seed: int, device: str, options: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Rank a predictor's candidates for a teacher and dataset under a parameter budget."""
    seed_everything(seed)
    predictor = registry.create("predictor", predictor_name, options.get("predictor"))
    dev = resolve_device(device)
    teacher, _ = load_trained_model(teacher_ckpt)
    teacher.to(dev)
    bundle = _load_bundle(dataset, options.get("dataset"), seed)
    split = bundle.val if bundle.val is not None else bundle.test
    try:
        teacher_acc = evaluate(teacher, split, bundle.task, dev)["accuracy"]  # type: ignore[arg-type]
    except RuntimeError as exc:
        raise ShapeError(f"The teacher in {teacher_ckpt} does not fit dataset {dataset!r}: {str(exc).splitlines()[0]}") from None
    if predictor_ckpt is not None:
        if not predictor_ckpt.is_file():
            raise CheckpointError(f"No predictor checkpoint at {predictor_ckpt}.")
        predictor.load(predictor_ckpt)
    task = SearchTask(bundle, teacher, teacher_acc, budget, dev)
    started = time.perf_counter()
    candidates = [c for c in predictor.candidates(task) if budget is None or c.num_params <= budget]
    if not candidates:
        raise ConfigError(f"No candidate fits a budget of {budget:,} parameters; raise --budget-params.")
    scores = predictor.predict(candidates, task).detach().float().cpu()
    seconds = time.perf_counter() - started
    order = scores.argsort(descending=True).tolist()
    top = [{"candidate": candidates[i].describe(), "parameters": candidates[i].num_params, "score": float(scores[i])} for i in order[:top_k]]
    report: dict[str, Any] = {"teacher_accuracy": teacher_acc, "candidates": len(candidates), "seconds": seconds, "top": top}
    if distil:
        _, report["distilled_accuracy"] = predictor.distil(candidates[order[0]], task)
    return report


def _active_dims(encode: Callable[[Any], Any], x: Any, relative: float = 0.1) -> int:
    """Code dimensions whose standard deviation over ``x`` (up to 2,000 rows) exceeds ``relative`` × the largest."""
    import torch

    with torch.no_grad():
        codes = torch.cat([encode(x[i : i + 256]).float().cpu().flatten(1) for i in range(0, min(len(x), 2000), 256)])
    spread = codes.std(dim=0)
    return int((spread > relative * spread.max().clamp_min(1e-12)).sum())


def _stream_summary(rows: list[dict[str, Any]], environments: int, active: list[int], train_seconds: float,
                    steps: int | None) -> dict[str, Any]:
    """Scores after the last environment averaged over environments, active dims per environment, training time."""
    last = [r for r in rows if r["after"] == environments]
    keys = [k for k, v in (last[0].items() if last else []) if isinstance(v, float)]
    summary: dict[str, Any] = {f"final_{k}": sum(r[k] for r in last) / len(last) for k in keys}
    summary.update(active_dims=active, train_seconds=train_seconds)
    if steps:
        summary.update(steps=steps, seconds_per_step=train_seconds / steps)
    return summary


def fit_generative(model_name: str, dataset: str, out: Path | None, seed: int, options: dict[str, dict[str, Any]],
                   on_row: Callable[[dict[str, Any]], None] | None = None, device: str | None = None,
                   on_summary: Callable[[dict[str, Any]], None] | None = None) -> tuple[list[dict[str, Any]], Path]:
    """Fit a generative model on a dataset's stream; disentanglement of every seen environment after each one.

    ``metrics.json`` also holds a summary: the final scores (mean over environments after the last one),
    the active code dims of each environment after it (std > 0.1 × the largest) and the training
    time per step (evaluation and pictures excluded; steps from the model's ``global_step`` where it has one).
    """
    from .metrics.disentanglement import evaluate_representation

    seed_everything(seed)
    if device is not None:
        if "device" not in registry.get("generative-model", model_name).Config.model_fields:
            raise ConfigError(f"Generative model {model_name!r} has no device option; it decides where it runs itself.")
        options = {**options, "model": {**options.get("model", {}), "device": device}}
    if "seed" in registry.get("generative-model", model_name).Config.model_fields and "seed" not in options.get("model", {}):
        options = {**options, "model": {**options.get("model", {}), "seed": seed}}  # --seed seeds the model too
    model = registry.create("generative-model", model_name, options.get("model"))
    bundle = _load_bundle(dataset, options.get("dataset"), seed)
    if not bundle.stream:
        raise DataError(f"Dataset {dataset!r} has no stream of environments; pick a stream dataset (see list-plugins).")
    out_dir = out or Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{model_name}-{dataset}"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    active: list[int] = []
    clock = {"train": 0.0, "since": time.perf_counter()}

    def after_environment(index: int, _env: Any) -> None:
        clock["train"] += time.perf_counter() - clock["since"]
        active.append(_active_dims(model.encode, bundle.stream[index].data.x))
        for seen, env in enumerate(bundle.stream[: index + 1]):
            scores = evaluate_representation(model.encode, env.data, env.factor_names, seed=seed)
            row = {"after": index + 1, "environment": env.name, **scores}
            rows.append(row)
            if on_row is not None:
                on_row(row)
        if hasattr(model, "save_visuals"):
            model.save_visuals(out_dir, index)
        clock["since"] = time.perf_counter()

    model.fit(bundle.stream, after_environment)
    summary = _stream_summary(rows, len(bundle.stream), active, clock["train"], getattr(model, "global_step", None))
    if hasattr(model, "active_dims"):  # the model's own count per environment (CUDOS: spike above its threshold)
        summary["model_active_dims"] = [int(model.active_dims(k).sum()) for k in range(len(bundle.stream))]
    write_json({"model": model_name, "dataset": dataset, "options": options, "rows": rows, "summary": summary},
               out_dir / "metrics.json")
    if on_summary is not None:
        on_summary(summary)
    if hasattr(model, "save"):
        model.save(out_dir / "model.pt")
    return rows, out_dir


def represent(method: str, checkpoint: Path, model_name: str | None, use_data: bool, out: Path | None, seed: int,
              device: str, options: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Fit a weight representation of a trained network and compare the rebuilt network with it."""
    seed_everything(seed)
    rep = registry.create("representation", method, options.get("representation"))
    dev = resolve_device(device)
    net, run = load_trained_model(checkpoint, model_name)
    net.to(dev)
    bundle = _load_bundle(run.get("dataset", "digits"), (run.get("options") or {}).get("dataset"), seed)
    test = bundle.test if bundle.test is not None else bundle.val
    original = evaluate(net, test, bundle.task, dev)["accuracy"]  # type: ignore[arg-type]
    rep.set_source(model_name or run["model"], dict((run.get("options") or {}).get("model") or {}), bundle.input_shape)
    started = time.perf_counter()
    rep.fit(net, bundle if use_data else None)
    rebuilt = rep.reconstruct().to(dev)
    out_dir = out or checkpoint.parent
    path = out_dir / f"{method}-representation.pt"
    rep.save(path)
    size, represented = rep.num_parameters(), rep.represented_parameters()
    return {
        "method": method, "original_accuracy": original,
        "reconstructed_accuracy": evaluate(rebuilt, test, bundle.task, dev)["accuracy"],  # type: ignore[arg-type]
        "representation_parameters": size, "represented_parameters": represented,
        "compression_ratio": size / max(represented, 1), "bytes_on_disk": path.stat().st_size,
        "fit_seconds": time.perf_counter() - started, "saved_to": str(path), "used_data": use_data,
    }
