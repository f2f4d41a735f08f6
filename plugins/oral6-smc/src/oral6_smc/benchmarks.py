"""Benchmarks: the SMC harness on the easy and hard tasks, sparse-export latency, and global-mask speed."""

from __future__ import annotations

import math
import statistics
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import torch
from pydantic import Field, field_validator
from torch import nn

from oral6_core.bench import markdown_table, new_figure, save_figure
from oral6_core.components import Benchmark, BenchResult
from oral6_core.config import ComponentConfig
from oral6_core.errors import ConfigError
from oral6_core.models.nets import resnet20

from .base import CITATION
from .export import export_sparse, linear_maps, semi_structured_supported, two_four_mask, weight_sparsity
from .harness import DEFAULT_METHODS, GridSettings, held_sparsity, method_by_label, run_grid, write_outputs
from .masking import topk_masks
from .memory import PeakMemory
from .scores import magnitude_scores
from .tasks import SmcTask, easy_task, hard_task

README = Path(__file__).parents[2] / "README.md"
BEFORE = ("omp-before", "random-before", "snip", "omp+rigl")
AFTER = ("lth", "gmp", "omp-after")
QUICK_METHODS = ("lth", "omp-after", "snip")


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def shrink_task(task: SmcTask, limit: int | None) -> SmcTask:
    """Keep only the first ``limit`` examples of every split (quick runs)."""
    if limit is not None:
        bundle = task.bundle
        for split in ("train", "val", "test"):
            data = getattr(bundle, split)
            setattr(bundle, split, data.subset(torch.arange(min(limit, len(data)))))
    return task


# --------------------------------------------------------------------------- the harness benchmarks


class HarnessBenchConfig(ComponentConfig):
    seeds: list[int] = Field([0, 1], min_length=1, description="Seeds (pre-training, initialisation and data order).")
    k: list[int] = Field(list(range(1, 11)), min_length=1, description="Grid exponents: sparsity 1 − 0.8^k.")
    epochs: int = Field(10, ge=1, description="Epochs of (fine-)tuning for the dense model, the before/during methods and each IMP round.")
    retrain_epochs: int = Field(5, ge=1, description="Epochs of fine-tuning after an after-training prune.")
    methods: list[str] = Field([m.label for m in DEFAULT_METHODS], min_length=1, description="Method labels to run.")
    threads: int = Field(1, ge=1, description="torch intra-op threads during the benchmark.")
    device: str = Field("cpu", description="Where to train: cpu, cuda or auto.")

    @field_validator("k")
    @classmethod
    def _k_in_range(cls, value: list[int]) -> list[int]:
        if any(not 1 <= k <= 30 for k in value):
            raise ValueError("every k must lie in 1..30")
        return sorted(set(value))

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, value: list[str]) -> list[str]:
        for label in value:
            method_by_label(label)
        return value


class HarnessBenchmark(Benchmark):
    """Base of smc-easy / smc-hard: run the grid and write JSON, a table and the figure."""

    readme: ClassVar[Path | None] = README
    citation = CITATION
    quick_limit: ClassVar[int] = 128

    def make_task(self, quick: bool) -> SmcTask:
        """The task this benchmark prunes on (smaller when ``quick``)."""
        raise NotImplementedError

    def claims(self, results: dict[str, Any], held: dict[str, float]) -> dict[str, bool]:
        """The paper's claims for this task and whether they held."""
        raise NotImplementedError

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        c = self.config
        methods = [method_by_label(label) for label in c.methods if not quick or label in QUICK_METHODS]
        ks = [2] if quick else c.k
        settings = GridSettings(1 if quick else c.epochs, 1 if quick else c.retrain_epochs,
                                tuple(c.seeds[:1] if quick else c.seeds), c.device)
        with torch_threads(c.threads):
            task = shrink_task(self.make_task(quick), self.quick_limit if quick else None)
            results = run_grid(task, methods, [1 - 0.8**k for k in ks], settings)
        summary, markdown, files = write_outputs(results, methods, out_dir)
        dense = statistics.mean(results["dense"])
        held = {m.label: held_sparsity(results["rows"], m.label, dense, results["chance"]) for m in methods}
        return BenchResult(summary, markdown, files, self.claims(results, held))


class EasyConfig(HarnessBenchConfig):
    epochs: int = Field(6, ge=1, description="Epochs of training for the dense model, the before/during methods and each IMP round.")
    retrain_epochs: int = Field(3, ge=1, description="Epochs of training after an after-training prune.")


class SmcEasyBenchmark(HarnessBenchmark):
    """SMC harness on the easy task: a small CNN trained on bundled 8×8 digits, pruned over 1 − 0.8^k."""

    name = "smc-easy"
    Config = EasyConfig

    def make_task(self, quick: bool) -> SmcTask:
        return easy_task()

    def claims(self, results: dict[str, Any], held: dict[str, float]) -> dict[str, bool]:
        return {"pruners hold ≥ 90% of the dense gain to ≥ 67% sparsity on the easy task (median over methods)":
                statistics.median(held.values()) >= 0.67}


class HardConfig(HarnessBenchConfig):
    epochs: int = Field(4, ge=1, description="Epochs of fine-tuning for the dense model, the before/during methods and each IMP round.")
    retrain_epochs: int = Field(2, ge=1, description="Epochs of fine-tuning after an after-training prune.")
    seeds: list[int] = Field([0, 1], min_length=1, description="Seeds (pre-training, initialisation and data order).")
    k: list[int] = Field([1, 3, 5, 8], min_length=1, description="Grid exponents: sparsity 1 − 0.8^k.")
    pretrain_steps: int = Field(1000, ge=1, description="Masked-LM pre-training steps on single-step equations.")
    steps: int = Field(2, ge=1, le=3, description="Operations per arithmetic chain.")


class SmcHardBenchmark(HarnessBenchmark):
    """SMC harness on the hard task: a pre-trained transformer fine-tuned on multi-step arithmetic, pruned over 1 − 0.8^k."""

    name = "smc-hard"
    Config = HardConfig

    def make_task(self, quick: bool) -> SmcTask:
        return hard_task(steps=self.config.steps, pretrain_steps=20 if quick else self.config.pretrain_steps)

    def claims(self, results: dict[str, Any], held: dict[str, float]) -> dict[str, bool]:
        rows = results["rows"]

        def family_mean(labels: tuple[str, ...]) -> float | None:
            values = [r["accuracy"] for r in rows if r["method"] in labels]
            return statistics.mean(values) if values else None

        after, before = family_mean(AFTER), family_mean(BEFORE)
        claims = {"pruners break early on the hard task: median held sparsity ≤ 48.8%": statistics.median(held.values()) <= 0.488}
        if after is not None and before is not None:
            claims["after-training/iterative methods (LTH, GMP, OMP-after) beat before-training ones (SNIP, random, OMP-before, OMP+RigL) on mean accuracy over the grid"] = after > before
        return claims


# --------------------------------------------------------------------------- speed benchmarks


def median_seconds(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls (after one warm-up), synchronising CUDA."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
        dense_s = median_seconds(lambda: model(x), repeats, x.device)
        sparse_s = median_seconds(lambda: exported(x), repeats, x.device)
        return {"model": label, "kernel": "csr", "sparsity": sparsity, "exported_layers": f"{len(reached)}/{len(report)}",
                "min_layer_sparsity": min(reached.values()), "max_layer_sparsity": max(reached.values()),
                "dense_ms": 1e3 * dense_s, "exported_ms": 1e3 * sparse_s, "speedup": dense_s / sparse_s,
                "max_abs_error": (model(x) - exported(x)).abs().max().item()}

    @staticmethod
    def _two_four_row(width: int, tokens: int, repeats: int) -> dict[str, Any]:
        device = torch.device("cuda")
        model = mlp(width).half().to(device).eval()
        for layer in (model[0], model[2]):
            layer.weight.mul_(two_four_mask(layer.weight))
        x = torch.randn(tokens, width, device=device, dtype=torch.half)
        exported, report = export_sparse(model, mode="semi-structured")
        dense_s = median_seconds(lambda: model(x), repeats, device)
        sparse_s = median_seconds(lambda: exported(x), repeats, device)
        return {"model": f"MLP {width}→{4 * width}→{width} (fp16)", "kernel": "2:4", "sparsity": 0.5,
                "exported_layers": f"{sum(k == '2:4' for k in report.values())}/{len(report)}",
                "min_layer_sparsity": 0.5, "max_layer_sparsity": 0.5, "dense_ms": 1e3 * dense_s,
                "exported_ms": 1e3 * sparse_s, "speedup": dense_s / sparse_s,
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
    model: str = Field("resnet50", description="timm model whose conv/linear weights are pruned.")
    sparsity: float = Field(0.8, gt=0, lt=1, description="Global sparsity.")
    repeats: int = Field(2, ge=1, description="Timed repetitions of each method (median reported).")
    threads: int = Field(2, ge=1, description="torch intra-op threads.")


class MaskSpeedBenchmark(Benchmark):
    """Global magnitude mask of a timm model: this plugin's engine vs torch.nn.utils.prune.global_unstructured."""

    name = "smc-mask-speed"
    Config = MaskSpeedConfig
    readme: ClassVar[Path | None] = README

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        from torch.nn.utils import prune

        c = self.config
        name = "resnet20 (oral6 core)" if quick else c.model
        repeats = 1 if quick else c.repeats
        with torch_threads(c.threads):
            model = resnet20(3, 10) if quick else timm_model(c.model)
            modules = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
            params = {f"{i}": m.weight for i, m in enumerate(modules)}
            total = sum(p.numel() for p in params.values())

            def ours() -> int:
                masks = topk_masks(magnitude_scores(params), 1 - c.sparsity, "global")
                return sum(int(m.sum()) for m in masks.values())

            def reference() -> int:
                copies = [nn.Conv2d(1, 1, 1) if isinstance(m, nn.Conv2d) else nn.Linear(1, 1) for m in modules]
                for copy_, module in zip(copies, modules):
                    copy_.weight = nn.Parameter(module.weight.detach())
                prune.global_unstructured([(m, "weight") for m in copies], pruning_method=prune.L1Unstructured, amount=c.sparsity)
                return sum(int(m.weight_mask.sum()) for m in copies)

            rows = []
            for label, fn in (("torch.nn.utils.prune.global_unstructured", reference), ("oral6-smc topk_masks", ours)):
                times, peaks, kept = [], [], 0
                for _ in range(repeats):
                    with PeakMemory() as peak:
                        start = time.perf_counter()
                        kept = fn()
                        times.append(time.perf_counter() - start)
                    peaks.append(peak.peak_bytes)
                rows.append({"method": label, "model": name, "weights": total, "seconds": statistics.median(times),
                             "peak_extra_mb": max(peaks) / 2**20, "kept": kept, "exact_kept": round((1 - c.sparsity) * total)})
        baseline = rows[0]["seconds"]
        for row in rows:
            row["speedup_vs_torch"] = baseline / row["seconds"]
        fig, ax = new_figure(figsize=(5, 3))
        ax.barh([r["method"] for r in rows], [r["seconds"] for r in rows])
        ax.set_xlabel(f"seconds for a {c.sparsity:.0%} global magnitude mask of {name}")
        figure = save_figure(fig, out_dir / "smc-mask-speed.png")
        claims = {"global magnitude mask at least as fast as torch.nn.utils.prune.global_unstructured": rows[1]["seconds"] <= rows[0]["seconds"],
                  "mask keeps exactly round((1 − s)·N) weights": rows[1]["kept"] == rows[1]["exact_kept"]}
        return BenchResult(rows, markdown_table(rows, digits=3), [figure], claims)
