"""Benchmark ``nern-resnet20``: NeRN on a converged CIFAR-style ResNet-20, sizes, ablations, speed and permutations."""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

import torch
from pydantic import Field
from torch.nn import functional as F

from oral6_core import registry
from oral6_core.bench import markdown_table, mean_std, new_figure, save_figure
from oral6_core.components import Benchmark, BenchResult, Pruner, Task
from oral6_core.config import ComponentConfig, TrainConfig
from oral6_core.data import ArrayDataset, DataBundle
from oral6_core.errors import ConfigError
from oral6_core.metrics import evaluate
from oral6_core.training import fit, seed_everything

from .feedback import late_accuracy_gain, late_improvement
from .fitting import relative_rmse
from .importance import CRITERIA, importance_study
from .permutation_study import crossfilter_study
from .representation import DEFAULT_STEPS, NeRN, NeRNConfig
from .speed import STEPS, step_speed


T = TypeVar("T")


class NeRNBenchConfig(ComponentConfig):
    seed: int = Field(0, description="Seed of the data and the original network.")
    seeds: list[int] = Field([0, 1], description="Predictor seeds (initialisation and sampling) of every fit.")
    width: int = Field(8, ge=1, description="ResNet-20 width (stages w, 2w, 4w; the paper's is 16).")
    image_size: int = Field(16, ge=4, le=32, description="Side of the Shapes32 images after average pooling (32: as rendered).")
    num_samples: int = Field(3000, ge=100, description="Shapes32 images in all splits.")
    train_epochs: int = Field(30, ge=1, description="Epochs to train the original network (Adam, cosine, to convergence).")
    ratios: list[float] = Field([0.3, 0.44, 0.6], description="Target predictor / represented parameters of the main table.")
    ablation_ratio: float = Field(0.44, description="Ratio of the ablations and of the pruned-network fit (one of ratios).")
    steps: int = Field(DEFAULT_STEPS, ge=2, description="Predictor steps per fit (warm-up included; `represent`'s default), where doubling the distillation phase gained about a point at ratio 0.6.")
    warmup_steps: int = Field(500, ge=0, description="Reconstruction-only steps before distillation starts.")
    batch_size: int = Field(16, ge=1, description="Images per distillation batch.")
    kernel_batch: int = Field(1024, ge=1, description="Kernels per reconstruction batch (≈ 14% of the kernels, the paper's share).")
    log_every: int = Field(500, ge=1, description="Steps between logged points of the curves.")
    pruned_sparsity: float = Field(0.5, ge=0, lt=1, description="Sparsity of the GMP-pruned original over the represented layers (0: no pruned fit).")
    sparsities: list[float] = Field([0.1, 0.3, 0.5], description="Sparsities of the weight-importance study.")
    speed_widths: list[int] = Field([8, 32], description="ResNet-20 widths of the step-speed comparison.")
    speed_hidden: int = Field(160, ge=1, description="Predictor width of the step-speed comparison (the paper's h).")
    speed_steps: int = Field(2, ge=1, description="Timed steps per round of the speed comparison.")
    speed_rounds: int = Field(2, ge=1, description="Alternating rounds of the speed comparison (best counts).")
    permutation_shape: list[int] = Field([512, 512], description="Filters × channels of the timed crossfilter layers (a ResNet-18 layer4 conv).")
    smoothness_shape: list[int] = Field([256, 128], description="Filters × channels of the layer whose clustered chain is compared with the exact one.")
    permutation_kinds: list[Literal["random", "trained-like"]] = Field(["trained-like"], description="Synthetic layers of the crossfilter study.")
    threads: int = Field(1, ge=1, description="torch CPU threads (of each fitting process).")
    ablations: list[Literal["none", "infilter", "reconstruction-only", "half-distillation"]] = Field(
        ["none", "infilter", "reconstruction-only", "half-distillation"],
        description="Ablations at ablation_ratio: no permutation, infilter, reconstruction only, half the distillation steps.")
    workers: int = Field(2, ge=1, description="Fits run in this many processes at once (1: in this process).")


QUICK = {"seeds": [0, 1], "width": 2, "image_size": 8, "num_samples": 200, "train_epochs": 1, "ratios": [0.5, 1.0],
         "ablation_ratio": 0.5, "steps": 6, "warmup_steps": 3, "batch_size": 8, "kernel_batch": 256, "log_every": 1,
         "sparsities": [0.3], "speed_widths": [2], "speed_hidden": 8, "speed_steps": 1, "speed_rounds": 1,
         "permutation_shape": [16, 16], "smoothness_shape": [8, 16], "permutation_kinds": ["random", "trained-like"],
         "workers": 1}


def shrink_images(bundle: DataBundle, size: int) -> DataBundle:
    """The bundle with its images average-pooled to ``size`` × ``size``."""
    factor = bundle.input_shape[-1] // size

    def pooled(split: Any) -> ArrayDataset | None:
        return None if split is None else ArrayDataset(F.avg_pool2d(split.x, factor), split.y)

    shape = (bundle.input_shape[0], size, size)
    return DataBundle(bundle.name, pooled(bundle.train), pooled(bundle.val), pooled(bundle.test),  # type: ignore[arg-type]
                      Task(bundle.task.likelihood, bundle.task.num_classes, shape))


def _train_original(c: NeRNBenchConfig, bundle: DataBundle, pruner: Pruner | None = None) -> tuple[torch.nn.Module, list[dict[str, Any]]]:
    seed_everything(c.seed)
    net = registry.create("model", "resnet20", {"width": c.width}).build(bundle.input_shape, bundle.num_classes)
    train = TrainConfig(epochs=c.train_epochs, batch_size=64, seed=c.seed, device="cpu", lr_schedule="cosine",
                        progress=False, checkpoint=False)
    result = fit(net, bundle, registry.create("optimizer", "adam", {"lr": 5e-3, "weight_decay": 5e-4}), train, pruner=pruner)
    return result.model.eval(), result.history


def _gmp_pruner(sparsity: float) -> tuple[Pruner | None, str]:
    """GMP over the represented convs when a ``gmp`` pruner is installed; else None and the reason."""
    if sparsity == 0:
        return None, "bench.pruned_sparsity=0"
    if "gmp" not in registry.names("pruner"):
        return None, "no `gmp` pruner is installed (the oral6-smc plugin provides one)"
    return registry.create("pruner", "gmp", {"sparsity": sparsity, "include": ["layer*.*.conv*.weight"]}), ""


class NeRNResNet20(Benchmark):
    """NeRN on a converged ResNet-20: accuracy vs predictor size, ablations, step speed, crossfilter at scale."""

    name = "nern-resnet20"
    Config = NeRNBenchConfig
    readme = Path(__file__).parents[2] / "README.md"

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        c = self.config.model_copy(update=QUICK) if quick else self.config
        if c.ablation_ratio not in c.ratios:
            raise ConfigError(f"bench.ablation_ratio={c.ablation_ratio} must be one of bench.ratios={c.ratios}: the "
                              f"ablations are compared with the full method at that size.")
        torch.set_num_threads(c.threads)
        started = time.perf_counter()
        bundle = registry.create("dataset", "shapes32", {"num_samples": c.num_samples, "data_seed": c.seed}).load()
        bundle = shrink_images(bundle, c.image_size)
        t0 = time.perf_counter()
        net, training = _train_original(c, bundle)
        train_seconds = time.perf_counter() - t0
        original = evaluate(net, bundle.test, bundle.task)["accuracy"]  # type: ignore[arg-type]
        a = c.ablation_ratio
        runs: list[tuple[str, dict[str, Any], torch.nn.Module]] = [(f"ratio {r:g}", {"ratio": r}, net) for r in c.ratios]
        ablations = {"none": ("no permutation", {"permutation": "none"}), "infilter": ("infilter", {"permutation": "infilter"}),
                     "reconstruction-only": ("reconstruction only", {"distill_weight": 0.0, "attention_weight": 0.0}),
                     "half-distillation": (HALF, {"steps": c.warmup_steps + (c.steps - c.warmup_steps) // 2})}
        runs += [(ablations[k][0], {"ratio": a, **ablations[k][1]}, net) for k in ablations if k in c.ablations]
        pruner, no_pruned = _gmp_pruner(c.pruned_sparsity)
        if pruner is not None:
            pruned, _ = _train_original(c, bundle, pruner)
            dense_hidden = registry.create("representation", "nern", {"ratio": a})
            dense_hidden.prepare(net)
            runs.append((f"GMP-pruned {c.pruned_sparsity:g}", {"hidden": dense_hidden.config.hidden}, pruned))

        def studies() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            speed = [r for w in c.speed_widths for r in step_speed(w, c.speed_hidden, c.speed_steps, c.speed_rounds, 64)]
            return speed, crossfilter_study(tuple(c.permutation_shape), tuple(c.smoothness_shape), c.seed, tuple(c.permutation_kinds))  # type: ignore[arg-type]

        fits, curves, (speed, permutations) = self._fits(c, bundle, runs, studies)
        kept = next(rep for rep, f in zip(fits["reps"], fits["rows"]) if f["run"] == f"ratio {a:g}")
        fits = fits["rows"]
        importance = importance_study(net, kept, bundle.test, bundle.task, list(c.sparsities), c.seeds[0])  # type: ignore[arg-type]
        summary = self._summary(fits, [label for label, _, _ in runs])
        claims = self._claims(summary, importance, speed, permutations, a, c.pruned_sparsity if pruner else None)
        unevaluated = _untestable(summary, 1 / bundle.num_classes, f"ratio {a:g}")
        unevaluated.update({k: f"its runs were not made: bench.ablations={c.ablations}" for k in claims if claims[k] is None})
        claims = {k: v for k, v in claims.items() if k not in unevaluated}
        files = [self._plot(training, curves, summary, original, c, out_dir / "nern_resnet20.png", (6, 2) if quick else (18, 4))]
        markdown = self._markdown(c, summary, training, importance, speed, permutations, claims, original, train_seconds,
                                  time.perf_counter() - started, unevaluated, no_pruned)
        tables = ([{"table": "fits", **r} for r in fits] + [{"table": "curves", **r} for r in curves]
                  + [{"table": "training", **r} for r in training] + [{"table": "importance", **r} for r in importance]
                  + [{"table": "speed", **r} for r in speed] + [{"table": "crossfilter", **r} for r in permutations])
        return BenchResult(tables, markdown, files, claims)

    @staticmethod
    def _fits(c: NeRNBenchConfig, bundle: DataBundle, runs: list[tuple[str, dict[str, Any], torch.nn.Module]],
              meanwhile: Callable[[], T]) -> tuple[dict[str, list[Any]], list[dict[str, Any]], T]:
        """Every run × seed (in ``c.workers`` processes): the fitted representations, one row per fit, the logged curves,
        and the result of ``meanwhile`` (run in this process while the workers fit, else before the fits)."""
        base = {"steps": c.steps, "warmup_steps": c.warmup_steps, "batch_size": c.batch_size, "kernel_batch": c.kernel_batch,
                "log_every": c.log_every, "noise_size": c.image_size, "progress": False}
        jobs = [(label, {**base, **options, "seed": seed}, network) for label, options, network in runs for seed in c.seeds]
        # the longest fits first, so that the processes finish together
        by_cost = sorted(range(len(jobs)), key=lambda i: -_fit_cost(NeRNConfig(**jobs[i][1])))
        done: dict[int, tuple[NeRN, dict[str, Any]]] = {}
        if c.workers == 1:
            extra = meanwhile()
            for i in by_cost:
                done[i] = _report(jobs[i][0], _fit_one(jobs[i][1], jobs[i][2], bundle))
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(c.workers, mp_context=context, initializer=torch.set_num_threads, initargs=(c.threads,)) as pool:
                futures = {pool.submit(_fit_one, jobs[i][1], jobs[i][2], bundle): i for i in by_cost}
                extra = meanwhile()
                for future in as_completed(futures):
                    done[futures[future]] = _report(jobs[futures[future]][0], future.result())
        reps, rows, curves = [], [], []
        for i, (label, options, _) in enumerate(jobs):
            rep, row = done[i]
            reps.append(rep)
            rows.append({"run": label, **row})
            curves += [{"run": label, "seed": options["seed"], **r} for r in rep.history]
        return {"reps": reps, "rows": rows}, curves, extra

    @staticmethod
    def _summary(fits: list[dict[str, Any]], labels: list[str]) -> list[dict[str, Any]]:
        """One row per run: means ± standard deviations over the seeds."""
        rows = []
        for label in labels:
            mine = [f for f in fits if f["run"] == label]
            acc = [f["reconstructed_acc"] for f in mine]
            drops = [f["last_tenth_error_drop"] for f in mine if f["last_tenth_error_drop"] == f["last_tenth_error_drop"]]
            gains = [f["last_tenth_accuracy_gain"] for f in mine if f["last_tenth_accuracy_gain"] == f["last_tenth_accuracy_gain"]]
            rows.append({
                "run": label, "hidden": mine[0]["hidden"], "permutation": mine[0]["permutation"],
                "distillation": mine[0]["distillation"], "steps": mine[0]["steps"], "ratio": mine[0]["ratio"],
                "represented": mine[0]["represented"], "storage_kib": mine[0]["storage_kib"],
                "seeds": len(mine), "acc_mean": statistics.mean(acc), "original": mine[0]["original_acc"],
                "original_acc": 100 * mine[0]["original_acc"], "reconstructed_acc": mean_std(acc, 1, 100),
                "gap_points": mean_std([100 * (mine[0]["original_acc"] - x) for x in acc], 1),
                "gap_mean": statistics.mean(100 * (mine[0]["original_acc"] - x) for x in acc),
                "rmse_vs_weight_rms": mean_std([f["rmse_vs_weight_rms"] for f in mine], 3),
                "error_mean": statistics.mean(f["rmse_vs_weight_rms"] for f in mine),
                "last_tenth_error_drop_%": mean_std(drops, 2, 100) if drops else "",
                "last_tenth_acc_gain_points": mean_std(gains, 1, 100) if gains else "",
                "converged": sum(f["converged"] for f in mine), "fit_s": statistics.mean(f["fit_s"] for f in mine),
                "masked_exactly": all(f["zero_where_original_zero"] for f in mine),
            })
        return rows

    @staticmethod
    def _claims(summary: list[dict[str, Any]], importance: list[dict[str, Any]], speed: list[dict[str, Any]],
                permutations: list[dict[str, Any]], a: float, pruned_sparsity: float | None) -> dict[str, bool | None]:
        """Every claim: held (True), did not hold (False), or None when the runs it compares were not made."""
        by_run = {r["run"]: r for r in summary}
        acc = {k: r["acc_mean"] for k, r in by_run.items()}
        err = {k: r["error_mean"] for k, r in by_run.items()}
        main = f"ratio {a:g}"
        mean_acc = {k: statistics.mean(r["accuracy"] for r in importance if r["criterion"] == k) for k in CRITERIA}
        steps = {(r["width"], r["step"]): r for r in speed}
        widths = sorted({w for w, _ in steps})
        before, exact, sampled = (name for name, _, _ in STEPS)
        timed = [r for r in permutations if r["measure"] == "time"]
        smooth = [r for r in permutations if r["measure"] == "smoothness"]
        def compare(runs: tuple[str, ...], holds: Callable[[], bool]) -> bool | None:
            return holds() if all(run in by_run for run in runs) else None

        none, infilter = ("no permutation",), ("infilter", "no permutation")

        claims = {
            HEADLINE: _headline_holds(summary),
            "crossfilter permutation beats no permutation": compare(none, lambda: acc[main] > acc["no permutation"]),
            "infilter permutation beats no permutation": compare(infilter, lambda: acc["infilter"] > acc["no permutation"]),
            "crossfilter permutation lowers the reconstruction error vs no permutation": compare(
                none, lambda: err[main] < err["no permutation"]),
            "infilter permutation lowers the reconstruction error vs no permutation": compare(
                infilter, lambda: err["infilter"] < err["no permutation"]),
            "distillation beats reconstruction only": compare(("reconstruction only",), lambda: acc[main] > acc["reconstruction only"]),
            CONVERGED: compare((HALF,), lambda: abs(acc[main] - acc[HALF]) <= 0.01),
            "pruning by reconstruction error keeps more accuracy than random pruning": mean_acc["reconstruction-error"] > mean_acc["random"],
            "the exact two-pass step needs less peak memory than the one-pass step at every width": all(
                steps[(w, exact)]["peak_extra_mib"] < steps[(w, before)]["peak_extra_mib"] for w in widths),
            "the exact two-pass step is at least as fast as the one-pass step at every width": all(
                steps[(w, exact)]["steps_per_s"] >= steps[(w, before)]["steps_per_s"] for w in widths),
            "the sampled two-pass step is faster than the one-pass step at every width": all(
                steps[(w, sampled)]["steps_per_s"] > steps[(w, before)]["steps_per_s"] for w in widths),
            "crossfilter on each timed layer takes under 60 s of CPU time": all(r["cpu_s"] < 60 for r in timed),
            "the clustered chain's smoothness is within 1% of the exact greedy chain's": all(r["relative"] >= 0.99 for r in smooth),
        }
        if pruned_sparsity is not None:
            label = f"GMP-pruned {pruned_sparsity:g}"
            claims[PRUNED_EXACT] = by_run[label]["masked_exactly"]
            claims[PRUNED_GAP] = by_run[label]["gap_mean"] <= by_run[main]["gap_mean"]
        return claims

    @staticmethod
    def _markdown(c: NeRNBenchConfig, summary: list[dict[str, Any]], training: list[dict[str, Any]], importance: list[dict[str, Any]],
                  speed: list[dict[str, Any]], permutations: list[dict[str, Any]], claims: dict[str, bool], original: float,
                  train_seconds: float, total_seconds: float, unevaluated: dict[str, str], no_pruned: str) -> str:
        last = training[-1]
        tail = [r["test_accuracy"] for r in training[-max(1, len(training) // 5):]]
        pruned = (f" The GMP-pruned row is a second original trained the same way with GMP to {c.pruned_sparsity:.0%} sparsity over "
                  f"the represented convs, fitted with the same predictor width as `ratio {c.ablation_ratio:g}` (equal predictor "
                  f"size); its `represented` counts only the kept weights, and `storage_kib` is what the representation must store "
                  f"of those layers (float32 predictor, one mask bit per weight, int32 permutations).") if not no_pruned else (
                  f" No pruned-network fit: {no_pruned}.")
        return (
            f"ResNet-20 (width {c.width}) on Shapes32 ({c.num_samples} images, pooled to {c.image_size}×{c.image_size}), trained "
            f"for {c.train_epochs} epochs ({train_seconds:.0f} s): test accuracy {100 * original:.1f}% (last fifth of the epochs: "
            f"{100 * min(tail):.1f}–{100 * max(tail):.1f}%, train loss {last['train_loss']:.3f}). Every fit: {c.steps} predictor "
            f"steps ({c.warmup_steps} reconstruction-only, then distillation on {c.batch_size} images a step), {c.kernel_batch} "
            f"kernels a reconstruction batch, seeds {c.seeds}; means ± standard deviations over the seeds. `ratio` = predictor / "
            f"represented parameters; `rmse_vs_weight_rms` = RMSE of all represented weights / their RMS; "
            f"`last_tenth_error_drop_%` = how much that error still fell over the last tenth of the steps and "
            f"`last_tenth_acc_gain_points` how much the probe accuracy (500 validation images) still rose; `converged` = "
            f"fits without the not-converged warning; `half the distillation steps` = the ratio-{c.ablation_ratio:g} fit with "
            f"{c.warmup_steps + (c.steps - c.warmup_steps) // 2} steps, whose distillation phase is half as long.{pruned} Whole benchmark: {total_seconds / 60:.1f} min.\n\n"
            + markdown_table(summary, ["run", "hidden", "ratio", "represented", "storage_kib", "permutation", "distillation",
                                       "original_acc", "reconstructed_acc", "gap_points", "rmse_vs_weight_rms",
                                       "last_tenth_error_drop_%", "last_tenth_acc_gain_points", "converged", "fit_s"], digits=3)
            + f"\nWeight importance (ratio {c.ablation_ratio:g}, seed {c.seeds[0]}): test accuracy of the original network after "
            f"pruning the represented weights by each criterion.\n\n"
            + markdown_table(importance, ["sparsity", "criterion", "accuracy"])
            + f"\nDistillation-step speed on random-initialised ResNet-20s (h={c.speed_hidden}, 64 images of 32×32, one "
            f"thread, the three steps alternating in one process, best of {c.speed_rounds} rounds of {c.speed_steps} steps); "
            f"`peak_extra_mib` = peak resident memory above the level before the steps; `speedup` and `memory_ratio` are "
            f"against the one-pass step (the step before this version).\n\n"
            + markdown_table(speed, ["width", "kernels", "step", "steps_per_s", "peak_extra_mib", "speedup", "memory_ratio"], digits=2)
            + "\nCrossfilter permutations: time of the clustered walk on full-size layers, and its chain smoothness (sum of "
            "neighbouring kernels' cosine similarities) against the exact greedy chain.\n\n"
            + markdown_table(permutations, ["layer", "kernels", "measure", "cpu_s", "wall_s", "smoothness", "exact_smoothness", "relative"], digits=3)
            + "\nClaims:\n\n" + "\n".join(f"- {k}: {'held' if v else 'did not hold'}" for k, v in claims.items()) + "\n"
            + "".join(f"- {k}: not evaluated ({why})\n" for k, why in unevaluated.items())
        )

    @staticmethod
    def _plot(training: list[dict[str, Any]], curves: list[dict[str, Any]], summary: list[dict[str, Any]], original: float,
              c: NeRNBenchConfig, path: Path, size: tuple[float, float]) -> Path:
        fig, (train_ax, error_ax, curve_ax, ratio_ax, ablation_ax) = new_figure(1, 5, figsize=size)
        train_ax.plot([r["epoch"] for r in training], [r["test_accuracy"] for r in training], "o-", ms=3)
        train_ax.set(xlabel="epoch", ylabel="test accuracy", title=f"original ResNet-20 w={c.width}")
        for label in dict.fromkeys(r["run"] for r in curves):
            pts = [r for r in curves if r["run"] == label and r["seed"] == c.seeds[0]]
            error_ax.plot([r["step"] for r in pts], [r["rel_error"] for r in pts], label=label)
            pts = [r for r in pts if "accuracy" in r]
            curve_ax.plot([r["step"] for r in pts], [r["accuracy"] for r in pts], label=label)
        error_ax.axvline(c.warmup_steps, color="grey", ls=":")
        error_ax.set(xlabel="predictor step", ylabel="weight RMSE / RMS", title=f"weight error, seed {c.seeds[0]}")
        curve_ax.axhline(original, color="k", ls="--", label="original")
        curve_ax.axvline(c.warmup_steps, color="grey", ls=":", label="distillation starts")
        curve_ax.set(xlabel="predictor step", ylabel="rebuilt accuracy (probe)", title=f"rebuilt accuracy, seed {c.seeds[0]}")
        curve_ax.legend(fontsize=7)
        main = [r for r in summary if r["run"].startswith("ratio")]
        ratio_ax.plot([r["ratio"] for r in main], [r["acc_mean"] for r in main], "o-", label="NeRN (crossfilter + distillation)")
        ratio_ax.axhline(original, color="k", ls="--", label="original")
        ratio_ax.axvline(0.6, color="grey", ls=":", label="60% of the weights")
        ratio_ax.set(xlabel="predictor / represented parameters", ylabel="test accuracy", title="accuracy vs size")
        ratio_ax.legend(fontsize=7)
        ablation = [r for r in summary if not r["run"].startswith("ratio") or r["run"] == f"ratio {c.ablation_ratio:g}"]
        ablation_ax.bar(range(len(ablation)), [r["acc_mean"] for r in ablation])
        ablation_ax.scatter(range(len(ablation)), [r["original"] for r in ablation], color="k", marker="_", s=200, label="its original")
        ablation_ax.legend(fontsize=7)
        ablation_ax.set_xticks(range(len(ablation)), [r["run"] for r in ablation], rotation=20, ha="right")
        ablation_ax.set(ylabel="test accuracy", title=f"ablations at ratio {c.ablation_ratio:g}")
        return save_figure(fig, path)


def _report(label: str, fitted: tuple[NeRN, dict[str, Any]]) -> tuple[NeRN, dict[str, Any]]:
    """Print one line per finished fit (a long benchmark's progress), and pass the fit on."""
    row = fitted[1]
    print(f"nern-resnet20: {label}, seed {row['seed']}: rebuilt {100 * row['reconstructed_acc']:.1f}% (original "
          f"{100 * row['original_acc']:.1f}%), weight error {row['rmse_vs_weight_rms']:.3f}, last tenth: error "
          f"{-100 * row['last_tenth_error_drop']:+.2f}%, accuracy {100 * row['last_tenth_accuracy_gain']:+.1f} points, "
          f"{row['fit_s']:.0f} s", file=sys.stderr, flush=True)
    return fitted


def _fit_cost(config: NeRNConfig) -> float:
    """Rough relative cost of a fit: a distillation step costs about ten reconstruction-only steps."""
    distills = config.distill_weight > 0 or config.attention_weight > 0
    warmup = config.warmup_steps if config.warmup_steps is not None else 0
    return config.steps + (9 * (config.steps - warmup) if distills else 0)


def _fit_one(options: dict[str, Any], network: torch.nn.Module, bundle: DataBundle) -> tuple[NeRN, dict[str, Any]]:
    """Fit one NeRN to ``network`` and measure it (a module-level function, so that worker processes can run it)."""
    rep = NeRN(NeRNConfig(**options))
    params = {k: p.detach() for k, p in network.named_parameters()}
    t0 = time.perf_counter()
    rep.fit(network, bundle)
    seconds = time.perf_counter() - t0
    predicted = rep.predicted_weights()
    drop = late_improvement(rep.history)
    return rep, {
        "seed": rep.config.seed, "hidden": rep.config.hidden, "permutation": rep.config.permutation,
        "distillation": rep.config.distill_weight > 0, "steps": rep.config.steps,
        "original_acc": evaluate(network, bundle.test, bundle.task)["accuracy"],  # type: ignore[arg-type]
        "reconstructed_acc": evaluate(rep.reconstruct(), bundle.test, bundle.task)["accuracy"],  # type: ignore[arg-type]
        "rmse_vs_weight_rms": relative_rmse(params, predicted),
        "last_tenth_error_drop": float("nan") if drop is None else drop,
        "last_tenth_accuracy_gain": float("nan") if (gain := late_accuracy_gain(rep.history)) is None else gain,
        "converged": rep.converged, "ratio": rep.num_parameters() / rep.represented_parameters(),
        "represented": rep.represented_parameters(), "storage_kib": rep.storage_bytes() / 1024, "fit_s": seconds,
        "zero_where_original_zero": all(bool((predicted[k][params[k] == 0] == 0).all()) for k in predicted),
    }


HALF = "half the distillation steps"
CONVERGED = "more distillation steps no longer help: twice the distillation phase changes the rebuilt accuracy by at most 1 point"
HEADLINE = "within 1 point of the original with a predictor under 60% of the represented weights (mean over seeds)"
PRUNED_EXACT = "the pruned network's representation is exactly zero wherever the pruned weights are"
PRUNED_GAP = "at equal predictor size the pruned network is rebuilt no worse (accuracy gap to its original) than the dense one"
ACCURACY_CLAIMS = (
    "crossfilter permutation beats no permutation",
    "infilter permutation beats no permutation",
    "distillation beats reconstruction only",
    CONVERGED,
    PRUNED_GAP,
)
CHANCE = "no reconstructed network got halfway from chance to the original's accuracy, so accuracy comparisons test nothing"
NOT_CONVERGED = "some fits at a ratio below 0.6 had not converged (not-converged warning)"


def _headline_holds(summary: list[dict[str, Any]]) -> bool:
    """Some fit of the main table under 60% of the represented weights is within 1 point of its original (seed mean)."""
    return any(r["ratio"] < 0.6 and r["gap_mean"] <= 1 for r in summary if r["run"].startswith("ratio"))


def _untestable(summary: list[dict[str, Any]], chance: float, main: str) -> dict[str, str]:
    """Claims that the run cannot test, with the reason: the headline on unconverged fits (a not-converged warning,
    or a failed headline where twice the distillation steps still gained more than a point); accuracy comparisons
    when every fit rebuilt a network closer to chance than to its original."""
    out: dict[str, str] = {}
    acc = {r["run"]: r["acc_mean"] for r in summary}
    if any(r["converged"] < r["seeds"] for r in summary if r["run"].startswith("ratio") and r["ratio"] < 0.6):
        out[HEADLINE] = NOT_CONVERGED
    elif not _headline_holds(summary) and HALF in acc and acc[main] - acc[HALF] > 0.01:
        out[HEADLINE] = (f"twice the distillation steps still raised the rebuilt accuracy at {main} by "
                         f"{100 * (acc[main] - acc[HALF]):.1f} points, so more steps may still help")
    if all(r["acc_mean"] < (chance + r["original"]) / 2 for r in summary):
        out.update({k: CHANCE for k in ACCURACY_CLAIMS})
    return out
