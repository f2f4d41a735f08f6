"""Library functions behind the workflow commands: adapt, search, fit-generative, represent."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable


from . import registry
from .blackbox import BlackBoxServer, SourceSpec, target_check
from .components import SearchTask
from .config import RESUMABLE, RunConfig, TrainConfig, check_resume, validate_config
from .data import ArrayDataset, DataBundle
from .errors import CheckpointError, ConfigError, DataError, ShapeError
from .io import save_torch
from .metrics import evaluate
from .progress import Progress
from .rundir import check_writable, record, resolved
from .training import CHECKPOINT, build_model, check_shapes, load_trained_model, resolve_device, seed_everything


def resumable_run(run_dir: Path, names: dict[str, Any] | None = None, options: dict[str, dict[str, Any]] | None = None,
                  train_values: dict[str, Any] | None = None, out: Path | None = None) -> RunConfig:
    """The ``RunConfig`` of the run in ``run_dir``, ready to resume, with the changes resume allows.

    ``names``, ``options`` and ``train_values`` are what the user gave alongside ``--resume``. Only the
    train options in ``RESUMABLE`` may differ from the run's; any other difference would be ignored by
    the resumed run, so it is an error naming each option.
    """
    config_file = run_dir / "config.json"
    if not (run_dir / CHECKPOINT).is_file() or not config_file.is_file():
        raise CheckpointError(f"Cannot resume {run_dir}: it holds no {CHECKPOINT} and config.json from `oral6 train`.")
    saved = json.loads(config_file.read_text())
    train_values = dict(train_values or {})
    extra = (f"--out ({str(run_dir)!r} -> {str(out)!r})",) if out is not None and Path(out).resolve() != run_dir.resolve() else ()
    check_resume(saved, names or {}, options or {}, train_values, run_dir, extra)
    updates = {k: v for k, v in train_values.items() if k in RESUMABLE}
    train_cfg = validate_config(TrainConfig, {**saved["train"], **updates}, "train")
    return RunConfig(model=saved["model"], dataset=saved["dataset"], optimizer=saved["optimizer"],
                     regularizer=saved["regularizer"], pruner=saved["pruner"], options=saved["options"],
                     train=train_cfg, out=run_dir)


def _load_bundle(name: str, options: dict[str, Any] | None, seed: int) -> DataBundle:
    return registry.create("dataset", name, options).load(seed=seed)


def _outputs(bundle: DataBundle) -> int:
    return bundle.num_classes


def adapt(adapter_name: str, source: str, target: str, model: str, source_model: str, source_epochs: int, source_lr: float,
          mode: str, k: int, seed: int, device: str, options: dict[str, dict[str, Any]], out: Path | None,
          source_checkpoint: Path | None = None, query_budget: int | None = None, student_checkpoint: Path | None = None) -> dict[str, Any]:
    """Serve a source model from its own process (trained there, or loaded from ``source_checkpoint``); adapt a student through it.

    The student is a fresh ``model`` (options ``model.*``, shared with a source model trained here) or, with
    ``student_checkpoint``, the network of a checkpoint (``oral6 train``, or the distilled student of
    ``oral6 search --distil --out``) with its weights and its own options. This process never holds the
    source model, its weights or the source data: only the server's answers, its accuracy report and its query count.
    """
    if out is not None:
        check_writable(out)
    seed_everything(seed)
    adapter = registry.create("adapter", adapter_name, options.get("adapter"))
    tgt = _load_bundle(target, options.get("target"), seed)
    given, student_options = None, dict(options.get("model") or {})
    if student_checkpoint is not None:
        given, student_run = load_trained_model(student_checkpoint)
        check_shapes(given, tgt, f"The student in {student_checkpoint}")
        model, student_options = student_run["model"], dict((student_run.get("options") or {}).get("model") or {})
    if not isinstance(tgt.train, ArrayDataset):
        raise DataError(f"Target dataset {target!r} must be held in memory (an ArrayDataset) to hide its labels.")
    spec = SourceSpec(source, dict(options.get("source") or {}), source_model, dict(options.get("model") or {}), source_epochs,
                      source_lr, seed, device, None if source_checkpoint is None else str(source_checkpoint))
    dev = resolve_device(device)
    with Progress(f"adapt {adapter_name}", total=2) as progress, BlackBoxServer(spec, mode, k, query_budget, target_check(tgt)) as server:
        progress.stage("black box ready", 1, source_accuracy_on_target=server.report["source_accuracy_on_target"])
        seed_everything(seed)
        student = (given if given is not None else
                   build_model(RunConfig(model=model, dataset=target, options={"model": student_options}), tgt)).to(dev)
        started = time.perf_counter()
        student = adapter.adapt(server.client, tgt.train.without_labels(), student)
        seconds = time.perf_counter() - started
        adapted = evaluate(student, tgt.test, tgt.task, dev)["accuracy"]  # type: ignore[arg-type]
        queries = server.queries
        progress.stage("student adapted", 2, black_box_queries=queries, adapted_accuracy_on_target=adapted)
    report = {
        "adapter": adapter_name, "source": server.report["source"], "target": target,
        "source_accuracy_on_source": server.report["source_accuracy_on_source"],
        "source_accuracy_on_target": server.report["source_accuracy_on_target"],
        "adapted_accuracy_on_target": adapted,
        "black_box_queries": queries, "black_box_mode": mode, "adapt_seconds": seconds,
    }
    if out is not None:
        save_torch({"model": student.state_dict(), "adapter": adapter_name,
                    "run": {"model": model, "dataset": target, "options": {"model": student_options}}}, out / "student.pt")
        used = {"adapter": resolved(adapter), "model": model, "student_checkpoint": None if student_checkpoint is None else str(student_checkpoint),
                "source_model": source_model, "source_epochs": source_epochs,
                "source_lr": source_lr, "source_checkpoint": None if source_checkpoint is None else str(source_checkpoint),
                "blackbox_mode": mode, "k": k, "query_budget": query_budget, "device": device, "set": options}
        record(out / "adapt.json", "adapt", report, used, seed, {"student": "student.pt"})
    return report


def search(predictor_name: str, dataset: str, teacher_ckpt: Path, budget: int | None, predictor_ckpt: Path | None,
           top_k: int, distil: bool, seed: int, device: str, options: dict[str, dict[str, Any]], out: Path | None = None) -> dict[str, Any]:
    """Rank a predictor's candidates for a teacher and dataset under a parameter budget.

    With ``out``, ``search.json`` records the options, every candidate ranked, and the metrics; with
    ``distil``, ``checkpoint.pt`` holds the distilled student as an ordinary checkpoint (weights, and the
    model builder, options and dataset that rebuild it, from the candidate's ``model_spec``).
    """
    if out is not None:
        check_writable(out)
    seed_everything(seed)
    predictor = registry.create("predictor", predictor_name, options.get("predictor"))
    source = registry.create("dataset", dataset, options.get("dataset"))
    dev = resolve_device(device)
    teacher, _ = load_trained_model(teacher_ckpt)
    teacher.to(dev)
    bundle = source.load(seed=seed)
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
    ranked = [{"candidate": candidates[i].describe(), "parameters": candidates[i].num_params, "score": float(scores[i])} for i in order]
    report: dict[str, Any] = {"teacher_accuracy": teacher_acc, "candidates": len(candidates), "seconds": seconds, "top": ranked[:top_k]}
    outputs = {}
    if distil:
        best = candidates[order[0]]
        spec = best.model_spec()
        if out is not None and spec is None:
            raise ConfigError(f"Predictor {predictor_name!r} does not say which model builder makes its candidates "
                              f"(Candidate.model_spec), so the distilled student cannot be saved as a checkpoint: search without "
                              f"--distil, or give the predictor's candidates a model_spec().")
        student, report["distilled_accuracy"] = predictor.distil(best, task)
        if out is not None:
            run = {"model": spec[0], "dataset": dataset, "options": {"model": spec[1], "dataset": resolved(source)}}  # type: ignore[index]
            _check_rebuilds(student, run, bundle, predictor_name)
            save_torch({"model": student.state_dict(), "candidate": ranked[0]["candidate"], "parameters": ranked[0]["parameters"],
                        "distilled_accuracy": report["distilled_accuracy"], "run": run}, out / CHECKPOINT)
            outputs["student"] = CHECKPOINT
    if out is not None:
        used = {"predictor": resolved(predictor), "dataset": dataset, "dataset_options": resolved(source), "teacher": str(teacher_ckpt),
                "budget_params": budget, "predictor_checkpoint": None if predictor_ckpt is None else str(predictor_ckpt),
                "top_k": top_k, "distil": distil, "device": device}
        record(out / "search.json", "search", {**report, "ranked": ranked}, used, seed, outputs)
    return report


def _check_rebuilds(student: Any, run: dict[str, Any], bundle: DataBundle, predictor_name: str) -> None:
    """The model builder named in ``run`` must rebuild ``student`` exactly (the same parameter names and shapes)."""
    rebuilt = build_model(RunConfig(model=run["model"], dataset=run["dataset"], options={"model": run["options"]["model"]}), bundle)
    try:
        rebuilt.load_state_dict(student.state_dict())
    except RuntimeError as exc:
        raise CheckpointError(f"Predictor {predictor_name!r} names model {run['model']!r} with options {run['options']['model']} "
                              f"for its student, but that model does not take the student's weights: {str(exc).splitlines()[0]}") from None


def _training_time(train_seconds: float, steps: int | None) -> dict[str, Any]:
    """Training seconds and, where the model counts its steps, seconds per step."""
    return {"train_seconds": train_seconds, **({"steps": steps, "seconds_per_step": train_seconds / steps} if steps else {})}


def fit_generative(model_name: str, dataset: str, out: Path | None, seed: int, options: dict[str, dict[str, Any]],
                   on_row: Callable[[dict[str, Any]], None] | None = None, device: str | None = None,
                   on_summary: Callable[[dict[str, Any]], None] | None = None) -> tuple[list[dict[str, Any]], Path]:
    """Fit a generative model on a dataset's stream; disentanglement of every seen environment after each one.

    Environments are scored on their held-out data where the stream has it (``Environment.held_out``),
    else on their training data (the summary's ``scored_on`` says which). ``metrics.json`` also holds a
    summary (``oral6_core.metrics.stream``): final scores (mean over environments after the last one),
    forgetting, debiased leakage, the active code dims of each environment after it (std > 0.1 × the
    largest) and the training time per step (evaluation and pictures excluded; steps from the model's
    ``global_step`` where it has one).
    """
    if out is not None:
        check_writable(out)
    from .metrics.stream import StreamScores

    seed_everything(seed)
    if device is not None:
        if "device" not in registry.get("generative-model", model_name).Config.model_fields:
            raise ConfigError(f"Generative model {model_name!r} has no device option; it decides where it runs itself.")
        options = {**options, "model": {**options.get("model", {}), "device": device}}
    if "seed" in registry.get("generative-model", model_name).Config.model_fields and "seed" not in options.get("model", {}):
        options = {**options, "model": {**options.get("model", {}), "seed": seed}}  # --seed seeds the model too
    model = registry.create("generative-model", model_name, options.get("model"))
    source = registry.create("dataset", dataset, options.get("dataset"))
    bundle = source.load(seed=seed)
    if not bundle.stream:
        raise DataError(f"Dataset {dataset!r} has no stream of environments; pick a stream dataset (see list-plugins), "
                        f"or a folder or arrays dataset whose dataset.toml declares factor columns.")
    out_dir = out or Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{model_name}-{dataset}"
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = StreamScores(model.encode, bundle.stream, seed=seed)
    rows = scores.rows
    progress = Progress(f"fit-generative {model_name}", total=len(bundle.stream))
    clock = {"train": 0.0, "since": time.perf_counter()}

    def after_environment(index: int, _env: Any) -> None:
        clock["train"] += time.perf_counter() - clock["since"]
        for row in scores.after_environment(index):
            if on_row is not None:
                on_row(row)
        progress.update(index + 1, description=f"fit-generative environment {index + 1}/{len(bundle.stream)}",
                        **{k: v for k, v in rows[-1].items() if isinstance(v, float)})
        if hasattr(model, "save_visuals"):
            model.save_visuals(out_dir, index)
        clock["since"] = time.perf_counter()

    with progress:
        model.fit(bundle.stream, after_environment)
    summary = {**scores.summary(), **_training_time(clock["train"], getattr(model, "global_step", None))}
    if hasattr(model, "active_dims"):  # the model's own count per environment (CUDOS: spike above its threshold)
        summary["model_active_dims"] = [int(model.active_dims(k).sum()) for k in range(len(bundle.stream))]
    if on_summary is not None:
        on_summary(summary)
    outputs = {}
    if hasattr(model, "save"):
        model.save(out_dir / "model.pt")
        outputs["model"] = "model.pt"
    outputs.update({p.name: p.name for p in sorted(out_dir.glob("*.png"))})
    used = {"model": model_name, "dataset": dataset, "model_options": resolved(model), "dataset_options": resolved(source)}
    record(out_dir / "metrics.json", "fit-generative", {"model": model_name, "dataset": dataset, "rows": rows, "summary": summary},
           used, seed, outputs)
    return rows, out_dir


def represent(method: str, checkpoint: Path, model_name: str | None, use_data: bool, out: Path | None, seed: int,
              device: str, options: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Fit a weight representation of a trained network and compare the rebuilt network with it."""
    if out is not None:
        check_writable(out)
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
    with Progress(f"represent {method}", total=1) as progress:
        progress.stage("fitting", 0, original_accuracy=original)
        rep.fit(net, bundle if use_data else None)
        progress.stage("fitted", 1, seconds=time.perf_counter() - started)
    rebuilt = rep.reconstruct().to(dev)
    out_dir = out or checkpoint.parent
    path = out_dir / f"{method}-representation.pt"
    rep.save(path)
    size, represented = rep.num_parameters(), rep.represented_parameters()
    report = {
        "method": method, "original_accuracy": original,
        "reconstructed_accuracy": evaluate(rebuilt, test, bundle.task, dev)["accuracy"],  # type: ignore[arg-type]
        "representation_parameters": size, "represented_parameters": represented,
        "compression_ratio": size / max(represented, 1), "bytes_on_disk": path.stat().st_size,
        "fit_seconds": time.perf_counter() - started, "saved_to": str(path), "used_data": use_data,
    }
    used = {"representation": resolved(rep), "checkpoint": str(checkpoint), "model": model_name or run["model"], "device": device}
    record(out_dir / f"{method}-represent.json", "represent", report, used, seed, {"representation": path.name})
    return report
