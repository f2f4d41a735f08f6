"""Speed benchmarks: sparse-export latency and global-mask speed against torch.nn.utils.prune, each in one process."""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from pydantic import Field, field_validator
from torch import nn

from oral6_core import registry
from oral6_core.bench import markdown_table, new_figure, save_figure
from oral6_core.components import Benchmark, BenchResult, TrainContext
from oral6_core.config import ComponentConfig
from oral6_core.errors import ConfigError
from oral6_core.models.nets import resnet20

from .benchmarks import README, torch_threads
from .export import export_sparse, linear_maps, semi_structured_supported, two_four_mask, weight_sparsity
from .masking import select_prunable, topk_masks
from .memory import PeakMemory
from .scores import magnitude_scores


def alternating_seconds(first: Callable[[], Any], second: Callable[[], Any], repeats: int,
                        device: torch.device) -> tuple[float, float, float]:
    """Median wall times of ``first`` and ``second`` timed in alternation (after one warm-up each, CUDA synchronised),
    and the median of the per-pair ratios first/second (robust to load that drifts during the measurement)."""

    def timed(fn: Callable[[], Any]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    first(), second()
    pairs = [(timed(first), timed(second)) for _ in range(repeats)]
    return (statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs),
            statistics.median(a / b for a, b in pairs))


class SparseExportConfig(ComponentConfig):
    width: int = Field(1024, ge=8, description="Model width d; the MLP is d → 4d → d.")
    tokens: int = Field(256, ge=1, description="Rows in the input batch.")
    sparsities: list[float] = Field([0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98], min_length=1,
                                    description="Per-layer magnitude sparsities: every exported layer is pruned to this.")
    repeats: int = Field(20, ge=1, description="Timed forward passes per measurement (median reported).")
    model: str = Field("convnext_nano", description="timm model timed end to end (its 1×1 convolutions exported as linear maps); '' skips it.")
    image_size: int = Field(160, ge=32, description="Input resolution of the end-to-end model.")
    model_repeats: int = Field(5, ge=1, description="Timed forward passes of the end-to-end model per measurement.")
    threads: int = Field(1, ge=1, description="torch intra-op threads.")

    @field_validator("sparsities")
    @classmethod
    def _in_unit_interval(cls, value: list[float]) -> list[float]:
        if any(not 0 < s < 1 for s in value):
            raise ValueError("every sparsity must lie in (0, 1)")
        return sorted(set(value))


class SparseExportBenchmark(Benchmark):
    """Dense vs exported (CSR on CPU, 2:4 on CUDA) inference latency, every exported layer at the row's sparsity, in one process."""

    name = "smc-sparse-export"
    Config = SparseExportConfig
    readme: ClassVar[Path | None] = README

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        c = self.config
        width, tokens, repeats = (64, 16, 3) if quick else (c.width, c.tokens, c.repeats)
        with torch_threads(c.threads), torch.no_grad():
            torch.manual_seed(0)
            x = torch.randn(tokens, width)
            mlp_rows = [self._row(f"MLP {width}→{4 * width}→{width}", mlp(width), x, sparsity, repeats) for sparsity in c.sparsities]
            model_rows = []
            if c.model and not quick:
                image = torch.randn(1, 3, c.image_size, c.image_size)
                model_rows = [self._row(c.model, timm_model(c.model), image, s, c.model_repeats) for s in c.sparsities if s >= 0.8]
            if torch.cuda.is_available() and semi_structured_supported(torch.device("cuda")):
                mlp_rows.append(self._two_four_row(width, tokens, repeats))
        cpu = [r for r in mlp_rows if r["kernel"] == "csr"]
        even = break_even(cpu)
        fig, ax = new_figure(figsize=(5, 3.5))
        for rows, label in ((cpu, mlp_rows[0]["model"]), (model_rows, f"{c.model} end to end")):
            if rows:
                ax.plot([r["sparsity"] for r in rows], [r["speedup"] for r in rows], marker="o", label=label)
        ax.axhline(1.0, color="grey", lw=1, label="break-even")
        ax.set_xlabel("sparsity of every exported layer")
        ax.set_ylabel("speed-up (dense time / exported time)")
        ax.set_title("CSR export on CPU")
        ax.legend(fontsize=8)
        figure = save_figure(fig, out_dir / "smc-sparse-export.png")
        rows = mlp_rows + model_rows
        note = (f"CSR break-even of the MLP block (log-linear interpolation between rows): "
                f"{'not reached' if even is None else f'{even:.1%} sparsity'}.\n\n")
        claims = {"every exported layer is at the row's sparsity and none is emptied":
                  all(r["min_layer_sparsity"] >= r["sparsity"] - 1e-3 and r["max_layer_sparsity"] < 1 for r in rows),
                  "CSR export is faster than dense at ≥ 90% sparsity on CPU (MLP block)":
                  all(r["speedup"] > 1 for r in cpu if r["sparsity"] >= 0.9),
                  "CSR export is slower than dense at 50% sparsity on CPU (MLP block)":
                  all(r["speedup"] < 1 for r in cpu if r["sparsity"] <= 0.5)}
        if model_rows:
            claims[f"{c.model} end to end is faster exported at ≥ 95% sparsity"] = all(r["speedup"] > 1 for r in model_rows if r["sparsity"] >= 0.95)
        return BenchResult(rows, note + markdown_table(rows, digits=3), [figure], claims)

    @staticmethod
    def _row(label: str, model: nn.Module, x: torch.Tensor, sparsity: float, repeats: int) -> dict[str, Any]:
        """Prune every exportable layer of ``model`` to ``sparsity`` (per layer), export, and time both in this process."""
        model = model.eval()
        prune_per_layer(model, sparsity)
        exported, report = export_sparse(model, min_sparsity=sparsity - 1e-3, mode="csr")
        reached = layer_sparsities(model, [n for n, kernel in report.items() if kernel == "csr"])
        dense_s, sparse_s, speedup = alternating_seconds(lambda: model(x), lambda: exported(x), repeats, x.device)
        return {"model": label, "kernel": "csr", "sparsity": sparsity, "exported_layers": f"{len(reached)}/{len(report)}",
                "min_layer_sparsity": min(reached.values()), "max_layer_sparsity": max(reached.values()),
                "dense_ms": 1e3 * dense_s, "exported_ms": 1e3 * sparse_s, "speedup": speedup,
                "max_abs_error": (model(x) - exported(x)).abs().max().item()}

    @staticmethod
    def _two_four_row(width: int, tokens: int, repeats: int) -> dict[str, Any]:
        device = torch.device("cuda")
        model = mlp(width).half().to(device).eval()
        for layer in (model[0], model[2]):
            layer.weight.mul_(two_four_mask(layer.weight))
        x = torch.randn(tokens, width, device=device, dtype=torch.half)
        exported, report = export_sparse(model, mode="semi-structured")
        dense_s, sparse_s, speedup = alternating_seconds(lambda: model(x), lambda: exported(x), repeats, device)
        return {"model": f"MLP {width}→{4 * width}→{width} (fp16)", "kernel": "2:4", "sparsity": 0.5,
                "exported_layers": f"{sum(k == '2:4' for k in report.values())}/{len(report)}",
                "min_layer_sparsity": 0.5, "max_layer_sparsity": 0.5, "dense_ms": 1e3 * dense_s,
                "exported_ms": 1e3 * sparse_s, "speedup": speedup,
                "max_abs_error": (model(x) - exported(x)).abs().max().item()}


def mlp(width: int) -> nn.Sequential:
    """The transformer MLP block d → 4d → d."""
    return nn.Sequential(nn.Linear(width, 4 * width), nn.ReLU(), nn.Linear(4 * width, width))


@torch.no_grad()
def prune_per_layer(model: nn.Module, sparsity: float) -> None:
    """Zero the smallest-|w| share ``sparsity`` of every exportable layer (``nn.Linear``, 1×1 conv) separately."""
    params = {name: m.weight for name, m in linear_maps(model).items()}
    masks = topk_masks(magnitude_scores(params), 1 - sparsity, "uniform")
    for name, weight in params.items():
        weight.mul_(masks[name])


def layer_sparsities(model: nn.Module, names: list[str]) -> dict[str, float]:
    """Measured share of zeros in the weight of each named module."""
    return {name: weight_sparsity(model.get_submodule(name).weight) for name in names}


def break_even(rows: list[dict[str, Any]]) -> float | None:
    """The sparsity where the speed-up crosses 1, interpolated linearly in log(speed-up) between rows (None if it does not)."""
    ordered = sorted(rows, key=lambda r: r["sparsity"])
    for low, high in zip(ordered, ordered[1:]):
        if low["speedup"] < 1 <= high["speedup"]:
            a, b = math.log(low["speedup"]), math.log(high["speedup"])
            return low["sparsity"] + (high["sparsity"] - low["sparsity"]) * (-a) / (b - a)
    return None


def timm_model(name: str) -> nn.Module:
    """A randomly initialised timm model, with a clear error for an unknown name."""
    import timm

    if name not in timm.list_models():
        raise ConfigError(f"timm has no model {name!r}; pick one from timm.list_models(), e.g. resnet50.")
    return timm.create_model(name, pretrained=False)


class MaskSpeedConfig(ComponentConfig):
    models: list[str] = Field(["resnet50", "convnext_nano"], min_length=1, description="timm models (random init) whose prunable weights are masked.")
    sparsity: float = Field(0.8, gt=0, lt=1, description="Global sparsity.")
    repeats: int = Field(5, ge=1, description="Alternating timed repetitions of each method (medians reported).")
    threads: int = Field(1, ge=1, description="torch intra-op threads (1: a shared machine oversubscribed by more threads times badly).")


class MaskSpeedBenchmark(Benchmark):
    """Global magnitude mask of a timm model through the `omp` pruner vs torch.nn.utils.prune.global_unstructured."""

    name = "smc-mask-speed"
    Config = MaskSpeedConfig
    readme: ClassVar[Path | None] = README

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        c = self.config
        rows: list[dict[str, Any]] = []
        with torch_threads(c.threads):
            for name in ["resnet20 (oral6 core)"] if quick else c.models:
                model = resnet20(3, 10) if quick else timm_model(name)
                rows += mask_speed_rows(name, model, c.sparsity, 1 if quick else c.repeats)
        fig, ax = new_figure(figsize=(6, 3.2))
        ax.barh([f"{r['model']}: {r['method']}" for r in rows], [r["seconds"] for r in rows])
        ax.set_xlabel(f"seconds for a {c.sparsity:.0%} global magnitude mask")
        ax.invert_yaxis()
        figure = save_figure(fig, out_dir / "smc-mask-speed.png")
        pruner_rows = [r for r in rows if r["method"] == PRUNER_LABEL]
        claims = {"the omp pruner (create + on_train_start) is ≥ 6× faster than torch.nn.utils.prune.global_unstructured (median of per-pair ratios)":
                  all(r["speedup_vs_torch"] >= 6 for r in pruner_rows),
                  "with ≤ half of torch's peak extra memory": all(r["memory_vs_torch"] <= 0.5 for r in pruner_rows),
                  "the pruner keeps exactly round((1 − s)·N) weights, torch's masks up to ties at the threshold":
                  all(r["differs_from_torch_only_at_ties"] and r["kept"] == r["exact_kept"] for r in pruner_rows)}
        return BenchResult(rows, markdown_table(rows, digits=3), [figure], claims)


TORCH_LABEL = "torch.nn.utils.prune.global_unstructured"
PRUNER_LABEL = "oral6 omp pruner (create + on_train_start)"
KERNEL_LABEL = "oral6 topk_masks (mask kernel only)"


def mask_speed_rows(name: str, model: nn.Module, sparsity: float, repeats: int) -> list[dict[str, Any]]:
    """Time and peak extra memory of three ways to mask ``model``'s prunable weights, alternating, weights restored between."""
    from torch.nn.utils import prune

    params = select_prunable(model)
    modules = [model.get_submodule(n.rpartition(".")[0]) for n in params]
    original = [p.detach().clone() for p in params.values()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    context = TrainContext(model, optimizer, [], None, torch.device("cpu"), 1, lambda m, b: torch.zeros(()))  # type: ignore[arg-type]
    results: dict[str, Any] = {}

    def with_torch() -> list[torch.Tensor]:
        prune.global_unstructured([(m, "weight") for m in modules], pruning_method=prune.L1Unstructured, amount=sparsity)
        return [m.weight_mask.bool() for m in modules]

    def with_pruner() -> list[torch.Tensor]:
        pruner = registry.create("pruner", "omp", {"sparsity": sparsity, "allocation": "global"})
        pruner.on_train_start(context)
        results["pruner"] = pruner
        return list(pruner.masks().values())

    def with_kernel() -> list[torch.Tensor]:
        return list(topk_masks(magnitude_scores(params), 1 - sparsity, "global").values())

    def restore() -> None:
        for module in modules:
            if prune.is_pruned(module):
                prune.remove(module, "weight")
        with torch.no_grad():
            for p, value in zip(params.values(), original):
                p.copy_(value)
        results.pop("pruner", None)

    methods = {TORCH_LABEL: with_torch, PRUNER_LABEL: with_pruner, KERNEL_LABEL: with_kernel}
    times: dict[str, list[float]] = {label: [] for label in methods}
    peaks: dict[str, list[int]] = {label: [] for label in methods}
    masks: dict[str, list[torch.Tensor]] = {}
    for _ in range(repeats):
        for label, fn in methods.items():
            restore()
            with PeakMemory() as peak:
                start = time.perf_counter()
                masks[label] = fn()
                times[label].append(time.perf_counter() - start)
            peaks[label].append(peak.peak_bytes)
    restore()
    total = sum(p.numel() for p in params.values())
    rows = []
    for label in methods:
        ratios = [a / b for a, b in zip(times[TORCH_LABEL], times[label])]
        rows.append({"model": name, "method": label, "weights": total, "seconds": statistics.median(times[label]),
                     "speedup_vs_torch": statistics.median(ratios),
                     "peak_extra_mb": statistics.median(peaks[label]) / 2**20,
                     "memory_vs_torch": statistics.median(peaks[label]) / statistics.median(peaks[TORCH_LABEL]),
                     "kept": sum(int(m.sum()) for m in masks[label]), "exact_kept": round((1 - sparsity) * total),
                     "differs_from_torch_only_at_ties": differs_only_at_ties(list(params.values()), masks[label], masks[TORCH_LABEL])})
    return rows


def differs_only_at_ties(weights: list[torch.Tensor], ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> bool:
    """True when two masks of the same size disagree only on weights of one magnitude (ties at the threshold)."""
    values = torch.cat([w.detach().abs()[a != b] for w, a, b in zip(weights, ours, theirs)])
    return values.numel() == 0 or bool((values == values[0]).all())
