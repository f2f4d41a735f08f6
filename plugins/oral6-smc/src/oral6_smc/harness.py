"""The SMC-Bench harness: any pruner × a task × the sparsity grid 1 − 0.8^k, with results, table and figure."""

from __future__ import annotations

import copy
import hashlib
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from torch import nn

from oral6_core import registry
from oral6_core.bench import markdown_table, new_figure, save_figure
from oral6_core.config import TrainConfig
from oral6_core.errors import ConfigError
from oral6_core.io import load_torch, save_torch, write_json
from oral6_core.training import fit, seed_everything

from .tasks import SmcTask

Start = Literal["pretrained", "dense"]
Family = Literal["after", "during", "before"]


@dataclass(frozen=True)
class MethodSpec:
    """One line of the figure: a registered pruner, its options, and which weights it prunes.

    ``start="dense"`` prunes the dense fine-tuned model and fine-tunes again (after training);
    ``start="pretrained"`` prunes the pre-trained (or freshly initialised) weights before/while fine-tuning.
    """

    label: str
    pruner: str
    start: Start
    family: Family
    options: dict[str, Any] = field(default_factory=dict)


DEFAULT_METHODS: tuple[MethodSpec, ...] = (
    MethodSpec("lth", "imp", "pretrained", "after", {"rewind": "init"}),
    MethodSpec("lrr", "imp", "pretrained", "after", {"rewind": "lrr"}),
    MethodSpec("gmp", "gmp", "pretrained", "during"),
    MethodSpec("omp-after", "omp", "dense", "after"),
    MethodSpec("obert-after", "obert", "dense", "after"),
    MethodSpec("random-after", "random", "dense", "after"),
    MethodSpec("omp-before", "omp", "pretrained", "before"),
    MethodSpec("random-before", "random", "pretrained", "before"),
    MethodSpec("snip", "snip", "pretrained", "before"),
    MethodSpec("omp+rigl", "rigl", "pretrained", "before", {"init": "magnitude"}),
    MethodSpec("set", "set", "pretrained", "before"),
)


def method_by_label(label: str, methods: Sequence[MethodSpec] = DEFAULT_METHODS) -> MethodSpec:
    """The default method called ``label``, or a clear error listing them."""
    for spec in methods:
        if spec.label == label:
            return spec
    raise ConfigError(f"Unknown SMC method {label!r}; the methods are: {', '.join(m.label for m in methods)}.")


@dataclass
class GridSettings:
    """How long each run trains and how often schedules update."""

    epochs: int = 4
    retrain_epochs: int = 2
    seeds: tuple[int, ...] = (0,)
    device: str = "cpu"


def _train_config(epochs: int, seed: int, task: SmcTask, device: str) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=task.batch_size, seed=seed, device=device, progress=False, checkpoint=False)


def _steps(task: SmcTask, epochs: int) -> int:
    return -(-len(task.bundle.train) // task.batch_size) * epochs  # type: ignore[arg-type]


def _scheduled_options(spec: MethodSpec, total_steps: int) -> dict[str, Any]:
    """ΔT scaled to the run: GMP prunes ~40 times over its window, RigL/SET update ~16 times."""
    if spec.pruner == "gmp":
        return {"update_every": max(1, total_steps // 40)}
    if spec.pruner in ("rigl", "set"):
        return {"update_every": max(1, total_steps // 16)}
    return {}


def _test_accuracy(model: nn.Module, task: SmcTask, device: str) -> float:
    from oral6_core.metrics import evaluate

    return evaluate(model, task.bundle.test, task.bundle.task, device)["accuracy"]  # type: ignore[arg-type]


def run_grid(task: SmcTask, methods: Sequence[MethodSpec], sparsities: Sequence[float], settings: GridSettings,
             log: Callable[[str], None] = lambda _: None, cache: Path | None = None) -> dict[str, Any]:
    """Train the dense model of every seed, then every method at every sparsity for every seed; returns raw rows.

    Methods run one after another (all seeds of one before the next), so an interrupted run has whole
    methods. With ``cache`` (a folder), each seed's dense model and each (method, seed)'s rows are kept
    on disk under a key of their settings and reused by a later run with the same settings.
    """
    if not sparsities or any(not 0 < s < 1 for s in sparsities):
        raise ConfigError(f"Sparsities must lie in (0, 1); got {list(sparsities)}.")
    for spec in methods:
        registry.get("pruner", spec.pruner)
    store = _Cache(cache)
    dense_runs = {seed: _dense_run(task, seed, settings, store, log) for seed in settings.seeds}
    rows: list[dict[str, Any]] = []
    for spec in methods:
        for seed, (start_model, dense, dense_key, _) in dense_runs.items():
            key = {"dense": dense_key, "method": asdict(spec), "sparsities": [round(s, 6) for s in sparsities],
                   "retrain_epochs": settings.retrain_epochs}
            clock = time.perf_counter()
            found = store.get(f"{task.name}-{spec.label}-seed{seed}.json", key)
            rows += found if found is not None else store.put(
                f"{task.name}-{spec.label}-seed{seed}.json", key, _run_method(task, spec, start_model, dense, sparsities, settings, seed))
            log(f"{task.name} seed {seed}: {spec.label} done ({'cached' if found is not None else f'{time.perf_counter() - clock:.0f} s'})")
    runs = [dense_runs[seed][3] for seed in settings.seeds]
    change: dict[str, list[float]] = {}
    for run in runs:
        for name, value in run["change"].items():
            change.setdefault(name, []).append(value)
    return {"task": task.name, "chance": task.chance, "dense": [r["dense"] for r in runs], "start": [r["start"] for r in runs],
            "dense_val_curves": [r["curve"] for r in runs], "weight_change": change, "rows": rows}


class _Cache:
    """JSON / torch files in a folder, each holding the key it was computed under (a different key is a miss)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def get(self, name: str, key: dict[str, Any]) -> Any:
        path = None if self.folder is None else self.folder / name
        if path is None or not path.is_file():
            return None
        saved = json.loads(path.read_text()) if path.suffix == ".json" else load_torch(path)
        return saved["value"] if saved.get("key") == json.loads(json.dumps(key)) else None

    def put(self, name: str, key: dict[str, Any], value: Any) -> Any:
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            (write_json if name.endswith(".json") else save_torch)({"key": key, "value": value}, self.folder / name)
        return value


def _fingerprint(model: nn.Module) -> str:
    """A hash of a model's weights (the cache key of everything trained from it)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _dense_run(task: SmcTask, seed: int, settings: GridSettings, store: _Cache,
               log: Callable[[str], None]) -> tuple[nn.Module, nn.Module, dict[str, Any], dict[str, Any]]:
    """The starting model of ``seed``, its dense (fine-)tuned model, their cache key and facts (cached by ``store``)."""
    start_model = task.build(seed)
    key = {"task": task.name, "seed": seed, "epochs": settings.epochs, "device": settings.device, "start": _fingerprint(start_model),
           "train": len(task.bundle.train), "batch_size": task.batch_size,  # type: ignore[arg-type]
           "optimizer": [type(task.optimizer).__name__, task.optimizer.config.model_dump(mode="json")]}
    name = f"{task.name}-dense-seed{seed}.pt"
    saved = store.get(name, key)
    dense = copy.deepcopy(start_model)
    if saved is None:
        seed_everything(seed)
        run = fit(dense, task.bundle, task.optimizer, _train_config(settings.epochs, seed, task, settings.device))
        dense = run.model
        facts = {"start": _test_accuracy(start_model, task, settings.device), "dense": _test_accuracy(dense, task, settings.device),
                 "curve": [row["val_accuracy"] for row in run.history], "change": relative_change(start_model, dense)}
        saved = store.put(name, key, {"weights": {k: v.cpu() for k, v in dense.state_dict().items()}, "facts": facts})
    else:
        dense.load_state_dict(saved["weights"])
    log(f"{task.name} seed {seed}: dense accuracy {saved['facts']['dense']:.3f}")
    return start_model, dense, key, saved["facts"]


@torch.no_grad()
def relative_change(start: nn.Module, trained: nn.Module) -> dict[str, float]:
    """‖W_trained − W_start‖ / ‖W_start‖ for every weight with ≥ 2 dims (how far training moved each layer)."""
    before = dict(start.named_parameters())
    return {name: float((p.cpu() - before[name]).norm() / before[name].norm().clamp_min(1e-12))
            for name, p in trained.named_parameters() if p.dim() >= 2 and name in before}


def _run_method(task: SmcTask, spec: MethodSpec, start_model: nn.Module, dense: nn.Module,
                sparsities: Sequence[float], settings: GridSettings, seed: int) -> list[dict[str, Any]]:
    base = dense if spec.start == "dense" else start_model
    epochs = settings.retrain_epochs if spec.start == "dense" else settings.epochs
    probe = registry.create("pruner", spec.pruner, {**spec.options, "sparsity": max(sparsities)})
    if hasattr(probe, "round_end_callbacks"):
        return _run_iterative(task, spec, base, epochs, sparsities, settings, seed)
    rows = []
    for sparsity in sparsities:
        total = _steps(task, epochs)
        pruner = registry.create("pruner", spec.pruner, {**_scheduled_options(spec, total), **spec.options, "sparsity": sparsity})
        seed_everything(seed)
        result = fit(copy.deepcopy(base), task.bundle, task.optimizer, _train_config(epochs, seed, task, settings.device),
                     pruner=pruner)
        rows.append(_row(task, spec, seed, sparsity, _test_accuracy(result.model, task, settings.device), pruner.sparsity()["overall"]))
    return rows


def _run_iterative(task: SmcTask, spec: MethodSpec, base: nn.Module, epochs: int, sparsities: Sequence[float],
                   settings: GridSettings, seed: int) -> list[dict[str, Any]]:
    """One IMP run to the highest sparsity (``epochs`` per round); each round's retrained network is scored at its sparsity."""
    pruner = registry.create("pruner", spec.pruner, {**spec.options, "sparsity": max(sparsities)})
    model = copy.deepcopy(base)
    rounds = pruner.rounds()  # type: ignore[attr-defined]
    reached: dict[float, tuple[float, float]] = {}

    def score(round_index: int, measured: float) -> None:
        if round_index > 0:
            reached[measured] = (_test_accuracy(model, task, settings.device), measured)

    pruner.round_end_callbacks.append(score)  # type: ignore[attr-defined]
    seed_everything(seed)
    fit(model, task.bundle, task.optimizer, _train_config(epochs * (rounds + 1), seed, task, settings.device), pruner=pruner)
    rows = []
    for sparsity in sparsities:
        nearest = min(reached, key=lambda s: abs(s - sparsity))
        if abs(nearest - sparsity) < 1e-3:
            rows.append(_row(task, spec, seed, sparsity, *reached[nearest]))
    if not rows:
        raise ConfigError(
            f"The rounds of {spec.label!r} reached sparsities {sorted(round(s, 4) for s in reached)}, none of them on the "
            f"grid {[round(s, 4) for s in sparsities]}; use rate 0.2 so that round k reaches 1 − 0.8^k."
        )
    return rows


def _row(task: SmcTask, spec: MethodSpec, seed: int, sparsity: float, accuracy: float, measured: float) -> dict[str, Any]:
    return {"task": task.name, "method": spec.label, "pruner": spec.pruner, "family": spec.family, "seed": seed,
            "sparsity": round(sparsity, 4), "measured_sparsity": round(measured, 4), "accuracy": accuracy}


# --------------------------------------------------------------------------- summaries


def mean_accuracy(rows: Sequence[dict[str, Any]], method: str, sparsity: float) -> float | None:
    """Mean test accuracy of ``method`` at ``sparsity`` over seeds (None when not run)."""
    values = [r["accuracy"] for r in rows if r["method"] == method and abs(r["sparsity"] - sparsity) < 1e-6]
    return statistics.mean(values) if values else None


def held_sparsity(rows: Sequence[dict[str, Any]], method: str, dense: float, chance: float, keep: float = 0.9) -> float:
    """Highest sparsity up to which ``method`` keeps ≥ ``keep`` of the dense gain over chance at every grid point."""
    held = 0.0
    for sparsity in sorted({r["sparsity"] for r in rows if r["method"] == method}):
        acc = mean_accuracy(rows, method, sparsity)
        if acc is None or (acc - chance) < keep * (dense - chance):
            break
        held = sparsity
    return held


def summarise(results: dict[str, Any], methods: Sequence[MethodSpec]) -> tuple[list[dict[str, Any]], str]:
    """Rows ``method × sparsity`` (mean ± std accuracy in %) and the markdown table of them."""
    rows, chance = results["rows"], results["chance"]
    dense = statistics.mean(results["dense"])
    sparsities = sorted({r["sparsity"] for r in rows})
    table, summary = [], []
    for spec in methods:
        line: dict[str, Any] = {"method": spec.label, "family": spec.family}
        for s in sparsities:
            values = [r["accuracy"] for r in rows if r["method"] == spec.label and abs(r["sparsity"] - s) < 1e-6]
            line[f"{s:.3f}"] = mean_std(values)
            if values:
                summary.append({"task": results["task"], "method": spec.label, "family": spec.family, "sparsity": s,
                                "accuracy_mean": statistics.mean(values),
                                "accuracy_std": statistics.stdev(values) if len(values) > 1 else 0.0, "seeds": len(values)})
        line["held"] = f"{held_sparsity(rows, spec.label, dense, chance):.3f}"
        table.append(line)
    note = (f"Test accuracy (%) on the {results['task']} task, mean ± std over {len(results['dense'])} seed(s); "
            f"dense {mean_std(results['dense'])}, chance {100 * chance:.1f}. `held`: highest sparsity up to which "
            f"the method keeps ≥ 90% of the dense model's gain over chance.\n\n")
    return summary, note + markdown_table(table)


def mean_std(values: Sequence[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def plot(results: dict[str, Any], methods: Sequence[MethodSpec], path: Path) -> Path:
    """Accuracy vs sparsity, one line per method, with the dense and chance levels (the paper's figure)."""
    fig, ax = new_figure(figsize=(7, 4.5))
    rows = results["rows"]
    styles = {"after": "-", "during": "--", "before": ":"}
    for spec in methods:
        points = sorted({r["sparsity"] for r in rows if r["method"] == spec.label})
        means = [100 * mean_accuracy(rows, spec.label, s) for s in points]  # type: ignore[operator]
        ax.plot(points, means, styles[spec.family], marker="o", ms=3, label=f"{spec.label} ({spec.family})")
    ax.axhline(100 * statistics.mean(results["dense"]), color="black", lw=1, label="dense")
    ax.axhline(100 * results["chance"], color="grey", lw=1, ls="-.", label="chance")
    ax.set_xlabel("sparsity (1 − 0.8^k)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"SMC harness: {results['task']} task")
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def write_outputs(results: dict[str, Any], methods: Sequence[MethodSpec], out_dir: Path) -> tuple[list[dict[str, Any]], str, list[Path]]:
    """Write ``<task>-runs.json`` and ``<task>.png``; return the summary rows, markdown and files."""
    summary, markdown = summarise(results, methods)
    runs = out_dir / f"smc-{results['task']}-runs.json"
    write_json(results, runs)
    figure = plot(results, methods, out_dir / f"smc-{results['task']}.png")
    return summary, markdown, [runs, figure]
