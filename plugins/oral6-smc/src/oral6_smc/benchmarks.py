"""Benchmarks of the SMC harness on the easy and hard tasks (the speed benchmarks are in ``speed``)."""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Iterator

import torch
from pydantic import Field, field_validator

from oral6_core.bench import markdown_table, new_figure, save_figure
from oral6_core.components import Benchmark, BenchResult
from oral6_core.config import ComponentConfig

from .base import CITATION
from .harness import DEFAULT_METHODS, GridSettings, MethodSpec, mean_std, held_sparsity, method_by_label, run_grid, write_outputs
from .tasks import ChainSettings, Pretraining, SmcTask, easy_task, make_task, pretrained_transformer

README = Path(__file__).parents[2] / "README.md"
BEFORE = ("omp-before", "snip", "omp+rigl", "set")
AFTER = ("lth", "lrr", "gmp", "omp-after")
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
            results = run_grid(task, methods, [1 - 0.8**k for k in ks], settings, log=progress, cache=out_dir / "cache")
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


# One method per family first (after, during, before, dynamic, LRR), then the others: an interrupted run keeps whole methods.
HARD_METHODS = ["lth", "gmp", "omp-after", "snip", "omp+rigl", "lrr", "set", "omp-before", "obert-after", "random-after",
                "random-before"]


class HardConfig(HarnessBenchConfig):
    epochs: int = Field(12, ge=1, description="Epochs of fine-tuning for the dense model, the before/during methods and each IMP round "
                                               "(the dense curves are flat from about epoch 12).")
    retrain_epochs: int = Field(6, ge=1, description="Epochs of fine-tuning after an after-training prune.")
    lr: float = Field(3e-3, gt=0, description="AdamW learning rate of fine-tuning.")
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="Fine-tuning seeds (data order, random masks); pre-training runs once.")
    k: list[int] = Field([1, 2, 4, 6, 8, 10, 13], min_length=1, description="Grid exponents: sparsity 1 − 0.8^k "
                                                                                "(LTH/LRR run every round up to the largest).")
    low: list[float] = Field([0.05], description="Extra sparsities below the grid (IMP reaches only 1 − 0.8^k).")
    methods: list[str] = Field(HARD_METHODS, description="Method labels to run ([] runs the dense stage only: "
                                                      "pre-training, dense fine-tuning, curves and ‖ΔW‖).")
    steps: int = Field(2, ge=1, le=3, description="Operations per arithmetic chain (the hard task asks for the last result).")
    dim: int = Field(32, ge=8, description="Transformer width.")
    depth: int = Field(3, ge=1, description="Transformer blocks (one per step of the chain, plus one).")
    pretrain_steps: int = Field(6000, ge=1, description="Masked-LM pre-training steps (batch 128), run once and cached in the output folder (3000 stop on a plateau).")
    workers: int = Field(2, ge=1, le=2, description="Processes: 2 runs the hard and the one-step task side by side.")

    @field_validator("low")
    @classmethod
    def _low_in_range(cls, value: list[float]) -> list[float]:
        if any(not 0 < s < 0.2 for s in value):
            raise ValueError("every low sparsity must lie in (0, 0.2)")
        return value


class SmcHardBenchmark(Benchmark):
    """SMC harness on the hard task (last result of a 2-step chain) and the one-step task, same pre-trained transformer."""

    name = "smc-hard"
    Config = HardConfig
    readme: ClassVar[Path | None] = README
    citation = CITATION
    quick_limit: ClassVar[int] = 128

    def chain_settings(self, quick: bool) -> ChainSettings:
        c = self.config
        if quick:
            return ChainSettings(steps=c.steps, dim=16, depth=c.steps + 1, pretrain_steps=20)
        return ChainSettings(steps=c.steps, dim=c.dim, depth=c.depth, pretrain_steps=c.pretrain_steps, lr=c.lr)

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        c = self.config
        methods = [method_by_label(label) for label in c.methods if not quick or label in QUICK_METHODS]
        sparsities = [0.05] if quick else sorted({*c.low, *(1 - 0.8**k for k in c.k)})
        if quick:
            sparsities.append(1 - 0.8**2)
        grid = GridSettings(1 if quick else c.epochs, 1 if quick else c.retrain_epochs, tuple(c.seeds[:1] if quick else c.seeds), c.device)
        chain = self.chain_settings(quick)
        cache = out_dir / "pretrained.pt"
        with torch_threads(c.threads):
            pretraining = pretrained_transformer(chain, cache)
        jobs = [(name, chain, cache, [m.label for m in methods], sparsities, grid, c.threads, self.quick_limit if quick else None,
                 out_dir / "cache") for name in ("hard", "one-step")]
        if c.workers > 1 and not quick:
            with ProcessPoolExecutor(c.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                both = list(pool.map(grid_worker, *zip(*jobs)))
        else:
            both = [grid_worker(*job) for job in jobs]
        summary, tables, files = [], [], []
        for results in both:
            rows, markdown, written = write_outputs(results, methods, out_dir)
            summary += rows
            tables.append(markdown if methods else "")
            files += written if methods else written[:1]
        files.append(plot_curves(pretraining, both, out_dir / "smc-hard-curves.png"))
        markdown = "\n".join([describe_pretraining(pretraining), dense_table(both), weight_change_table(both), *tables])
        return BenchResult(summary or dense_rows(both), markdown, files, self.claims_for(both, methods))

    @staticmethod
    def claims_for(both: list[dict[str, Any]], methods: list[MethodSpec]) -> dict[str, bool]:
        hard, easy = both
        dense = {r["task"]: statistics.mean(r["dense"]) for r in both}
        held = {r["task"]: statistics.median([held_sparsity(r["rows"], m.label, dense[r["task"]], r["chance"]) for m in methods] or [0.0])
                for r in both}
        change = {r["task"]: statistics.mean(statistics.mean(v) for v in r["weight_change"].values()) for r in both}

        def family_mean(labels: tuple[str, ...]) -> float | None:
            values = [r["accuracy"] for r in hard["rows"] if r["method"] in labels]
            return statistics.mean(values) if values else None

        claims = {
            "the dense fine-tuned transformer reaches ≥ 80% test accuracy on the hard task": dense["hard"] >= 0.8,
            "the one-step task's dense accuracy is within 10 points of the hard task's": abs(dense["hard"] - dense["one-step"]) <= 0.1,
            "lazy regime: fine-tuning moves the weights by < 10% of their norm on the hard task (mean over layers)": change["hard"] < 0.1,
        }
        if not methods:
            return claims
        claims["pruners break earlier on the hard task than on the one-step task (median held sparsity)"] = held["hard"] < held["one-step"]
        after, before = family_mean(AFTER), family_mean(BEFORE)
        if after is not None and before is not None:
            claims["after-training/iterative methods (LTH, LRR, GMP, OMP-after) beat before-training and dynamic ones (SNIP, OMP-before, "
                   "OMP+RigL, SET) on the hard task's mean accuracy over the grid"] = after > before
        return claims


def grid_worker(name: str, chain: ChainSettings, cache: Path, labels: list[str], sparsities: list[float],
                grid: GridSettings, threads: int, limit: int | None, runs: Path) -> dict[str, Any]:
    """Run the grid on one transformer task (a process of its own; the pre-trained weights come from ``cache``,
    finished runs are kept in and reused from the folder ``runs``)."""
    with torch_threads(threads):
        task = shrink_task(make_task(name, cache, chain), limit)
        return run_grid(task, [method_by_label(label) for label in labels], sparsities, grid, log=progress, cache=runs)


def progress(message: str) -> None:
    """Progress of a long grid, timestamped on stderr."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def describe_pretraining(pretraining: Pretraining) -> str:
    """One paragraph: the pre-training budget and how flat its loss curve ended."""
    curve = pretraining.curve
    tail = [point["loss"] for point in curve[-max(1, len(curve) // 5):]]
    middle = [point["loss"] for point in curve[len(curve) * 3 // 5: len(curve) * 4 // 5]] or tail
    return (f"Pre-training: {pretraining.settings['pretrain_steps']} masked-LM steps (batch 128) in "
            f"{pretraining.seconds / 60:.1f} min; mean loss {curve[0]['loss']:.3f} over the first 2% of the steps, "
            f"{statistics.mean(middle):.3f} over 60–80%, {statistics.mean(tail):.3f} over the last 20%.\n")


def dense_rows(both: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task: test accuracy of the pre-trained start (LM-head readout) and of the dense fine-tuned model, in %."""
    return [{"task": r["task"], "pre-trained (no fine-tuning)": mean_std(r["start"]), "dense fine-tuned": mean_std(r["dense"]),
             "chance": f"{100 * r['chance']:.1f}"} for r in both]


def dense_table(both: list[dict[str, Any]]) -> str:
    """Markdown of ``dense_rows``."""
    return "Test accuracy (%, mean ± std over seeds):\n\n" + markdown_table(dense_rows(both))


def weight_change_table(both: list[dict[str, Any]]) -> str:
    """Relative ‖W_fine-tuned − W_pre-trained‖ / ‖W_pre-trained‖ per layer, mean ± std over seeds, for each task."""
    layers = list(both[0]["weight_change"])
    rows = [{"layer": layer, **{r["task"]: mean_std(r["weight_change"][layer]) for r in both}} for layer in layers]
    return ("How far dense fine-tuning moves each weight from its pre-trained value, ‖ΔW‖/‖W_pre‖ (%, mean ± std over "
            "seeds):\n\n" + markdown_table(rows))


def plot_curves(pretraining: Pretraining, both: list[dict[str, Any]], path: Path) -> Path:
    """Pre-training loss and the dense fine-tuning validation accuracy per epoch (every seed), side by side."""
    fig, (left, right) = new_figure(ncols=2, figsize=(9, 3.5))
    left.plot([p["step"] for p in pretraining.curve], [p["loss"] for p in pretraining.curve])
    left.set_xlabel("pre-training step")
    left.set_ylabel("masked-LM loss")
    left.set_title("pre-training")
    for results in both:
        for seed, curve in enumerate(results["dense_val_curves"]):
            right.plot(range(1, len(curve) + 1), [100 * v for v in curve], marker="o", ms=3,
                       label=results["task"] if seed == 0 else None, color="C0" if results["task"] == "hard" else "C1")
    right.set_xlabel("fine-tuning epoch")
    right.set_ylabel("validation accuracy (%)")
    right.set_title("dense fine-tuning (every seed)")
    right.legend()
    return save_figure(fig, path)
