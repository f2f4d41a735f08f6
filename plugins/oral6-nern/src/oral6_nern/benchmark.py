"""Benchmark ``nern-resnet20``: NeRN on a converged CIFAR-style ResNet-20, sizes, ablations, speed and permutations."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from torch.nn import functional as F

from oral6_core import registry
from oral6_core.bench import markdown_table, mean_std, new_figure, save_figure
from oral6_core.components import Benchmark, BenchResult, Task
from oral6_core.config import ComponentConfig, TrainConfig
from oral6_core.data import ArrayDataset, DataBundle
from oral6_core.errors import ConfigError
from oral6_core.metrics import evaluate
from oral6_core.training import fit, seed_everything

from .feedback import late_improvement
from .fitting import relative_rmse
from .importance import CRITERIA, importance_study
from .permutation_study import crossfilter_study
from .representation import NeRN
from .speed import step_speed


class NeRNBenchConfig(ComponentConfig):
    seed: int = Field(0, description="Seed of the data and the original network.")
    seeds: list[int] = Field([0, 1], description="Predictor seeds (initialisation and sampling) of every fit.")
    width: int = Field(4, ge=1, description="ResNet-20 width (stages w, 2w, 4w; the paper's is 16).")
    image_size: int = Field(16, ge=4, le=32, description="Side of the Shapes32 images after average pooling (32: as rendered).")
    num_samples: int = Field(3000, ge=100, description="Shapes32 images in all splits.")
    train_epochs: int = Field(40, ge=1, description="Epochs to train the original network (Adam, cosine, to convergence).")
    ratios: list[float] = Field([0.3, 0.44, 0.6], description="Target predictor / represented parameters of the main table.")
    ablation_ratio: float = Field(0.44, description="Ratio of the ablations (one of ratios).")
    steps: int = Field(4000, ge=2, description="Predictor steps per fit (warm-up included).")
    warmup_steps: int = Field(3600, ge=0, description="Reconstruction-only steps before distillation starts.")
    batch_size: int = Field(32, ge=1, description="Images per distillation batch.")
    kernel_batch: int = Field(4096, ge=1, description="Kernels per reconstruction batch.")
    log_every: int = Field(200, ge=1, description="Steps between logged points of the curves.")
    sparsities: list[float] = Field([0.1, 0.3, 0.5], description="Sparsities of the weight-importance study.")
    speed_widths: list[int] = Field([8, 32], description="ResNet-20 widths of the step-speed comparison.")
    speed_hidden: int = Field(160, ge=1, description="Predictor width of the step-speed comparison (the former default).")
    speed_steps: int = Field(3, ge=1, description="Timed steps per round of the speed comparison.")
    speed_rounds: int = Field(2, ge=1, description="Alternating rounds of the speed comparison (best counts).")
    permutation_shape: list[int] = Field([512, 512], description="Filters × channels of the timed crossfilter layers (a ResNet-18 layer4 conv).")
    smoothness_shape: list[int] = Field([256, 128], description="Filters × channels of the layer whose clustered chain is compared with the exact one.")
    threads: int = Field(1, ge=1, description="torch CPU threads.")


QUICK = {"seeds": [0, 1], "width": 2, "image_size": 8, "num_samples": 200, "train_epochs": 1, "ratios": [0.5, 1.0],
         "ablation_ratio": 0.5, "steps": 6, "warmup_steps": 3, "batch_size": 8, "kernel_batch": 256, "log_every": 1,
         "sparsities": [0.3], "speed_widths": [2], "speed_hidden": 8, "speed_steps": 1, "speed_rounds": 1,
         "permutation_shape": [16, 16], "smoothness_shape": [8, 16]}


def shrink_images(bundle: DataBundle, size: int) -> DataBundle:
    """The bundle with its images average-pooled to ``size`` × ``size``."""
    factor = bundle.input_shape[-1] // size

    def pooled(split: Any) -> ArrayDataset | None:
        return None if split is None else ArrayDataset(F.avg_pool2d(split.x, factor), split.y)

    shape = (bundle.input_shape[0], size, size)
    return DataBundle(bundle.name, pooled(bundle.train), pooled(bundle.val), pooled(bundle.test),  # type: ignore[arg-type]
                      Task(bundle.task.likelihood, bundle.task.num_classes, shape))


def _train_original(c: NeRNBenchConfig, bundle: DataBundle) -> tuple[torch.nn.Module, list[dict[str, Any]]]:
    seed_everything(c.seed)
    net = registry.create("model", "resnet20", {"width": c.width}).build(bundle.input_shape, bundle.num_classes)
    train = TrainConfig(epochs=c.train_epochs, batch_size=64, seed=c.seed, device="cpu", lr_schedule="cosine",
                        progress=False, checkpoint=False)
    result = fit(net, bundle, registry.create("optimizer", "adam", {"lr": 5e-3, "weight_decay": 5e-4}), train)
    return result.model.eval(), result.history


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
        speed = [r for w in c.speed_widths for r in step_speed(w, c.speed_hidden, c.speed_steps, c.speed_rounds, 64)]
        permutations = crossfilter_study(tuple(c.permutation_shape), tuple(c.smoothness_shape), c.seed)  # type: ignore[arg-type]
        bundle = registry.create("dataset", "shapes32", {"num_samples": c.num_samples, "data_seed": c.seed}).load()
        bundle = shrink_images(bundle, c.image_size)
        t0 = time.perf_counter()
        net, training = _train_original(c, bundle)
        train_seconds = time.perf_counter() - t0
        original = evaluate(net, bundle.test, bundle.task)["accuracy"]  # type: ignore[arg-type]
        params = {k: p.detach() for k, p in net.named_parameters()}
        base = {"steps": c.steps, "warmup_steps": c.warmup_steps, "batch_size": c.batch_size, "kernel_batch": c.kernel_batch,
                "log_every": c.log_every, "noise_size": c.image_size, "progress": False}
        a = c.ablation_ratio
        runs: list[tuple[str, dict[str, Any]]] = [(f"ratio {r:g}", {"ratio": r}) for r in c.ratios]
        runs += [("no permutation", {"ratio": a, "permutation": "none"}), ("infilter", {"ratio": a, "permutation": "infilter"}),
                 ("reconstruction only", {"ratio": a, "distill_weight": 0.0, "attention_weight": 0.0}),
                 ("half the steps", {"ratio": a, "steps": c.steps // 2, "warmup_steps": c.warmup_steps // 2})]
        fits, curves, kept = [], [], None
        for label, options in runs:
            for seed in c.seeds:
                options = {**base, **options, "seed": seed}
                rep: NeRN = registry.create("representation", "nern", options)  # type: ignore[assignment]
                t0 = time.perf_counter()
                rep.fit(net, bundle)
                seconds = time.perf_counter() - t0
                kept = rep if (label == f"ratio {a:g}" and seed == c.seeds[0]) else kept
                drop = late_improvement(rep.history)
                fits.append({
                    "run": label, "seed": seed, "hidden": rep.config.hidden, "permutation": rep.config.permutation,
                    "distillation": rep.config.distill_weight > 0, "steps": rep.config.steps, "original_acc": original,
                    "reconstructed_acc": evaluate(rep.reconstruct(), bundle.test, bundle.task)["accuracy"],  # type: ignore[arg-type]
                    "rmse_vs_weight_rms": relative_rmse(params, rep.predicted_weights()),
                    "last_tenth_error_drop": float("nan") if drop is None else drop, "converged": rep.converged,
                    "ratio": rep.num_parameters() / rep.represented_parameters(), "fit_s": seconds,
                })
                curves += [{"run": label, "seed": seed, **row} for row in rep.history]
        importance = importance_study(net, kept, bundle.test, bundle.task, list(c.sparsities), c.seeds[0])  # type: ignore[arg-type]
        summary = self._summary(fits, runs)
        claims = self._claims(summary, importance, speed, permutations, original, a)
        unevaluated = _accuracy_claims_untestable(summary, original, 1 / bundle.num_classes)
        claims = {k: v for k, v in claims.items() if k not in unevaluated}
        files = [self._plot(training, curves, summary, original, c, out_dir / "nern_resnet20.png", (6, 2) if quick else (18, 4))]
        markdown = self._markdown(c, summary, training, importance, speed, permutations, claims, original, train_seconds,
                                  time.perf_counter() - started, unevaluated)
        tables = ([{"table": "fits", **r} for r in fits] + [{"table": "curves", **r} for r in curves]
                  + [{"table": "training", **r} for r in training] + [{"table": "importance", **r} for r in importance]
                  + [{"table": "speed", **r} for r in speed] + [{"table": "crossfilter", **r} for r in permutations])
        return BenchResult(tables, markdown, files, claims)

    @staticmethod
    def _summary(fits: list[dict[str, Any]], runs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """One row per run: means ± standard deviations over the seeds."""
        rows = []
        for label, _ in runs:
            mine = [f for f in fits if f["run"] == label]
            acc = [f["reconstructed_acc"] for f in mine]
            rows.append({
                "run": label, "hidden": mine[0]["hidden"], "permutation": mine[0]["permutation"],
                "distillation": mine[0]["distillation"], "steps": mine[0]["steps"], "ratio": mine[0]["ratio"],
                "seeds": len(mine), "acc_mean": statistics.mean(acc),
                "reconstructed_acc": mean_std(acc, 1, 100), "gap_points": mean_std([100 * (mine[0]["original_acc"] - x) for x in acc], 1),
                "rmse_vs_weight_rms": mean_std([f["rmse_vs_weight_rms"] for f in mine], 3),
                "error_mean": statistics.mean(f["rmse_vs_weight_rms"] for f in mine),
                "last_tenth_error_drop_%": mean_std([f["last_tenth_error_drop"] for f in mine if f["last_tenth_error_drop"] == f["last_tenth_error_drop"]], 2, 100),
                "converged": sum(f["converged"] for f in mine), "fit_s": statistics.mean(f["fit_s"] for f in mine),
            })
        return rows

    @staticmethod
    def _claims(summary: list[dict[str, Any]], importance: list[dict[str, Any]], speed: list[dict[str, Any]],
                permutations: list[dict[str, Any]], original: float, a: float) -> dict[str, bool]:
        acc = {r["run"]: r["acc_mean"] for r in summary}
        err = {r["run"]: r["error_mean"] for r in summary}
        main = f"ratio {a:g}"
        mean_acc = {k: statistics.mean(r["accuracy"] for r in importance if r["criterion"] == k) for k in CRITERIA}
        steps = {(r["width"], r["step"].split(" ")[0]): r for r in speed}
        widths = sorted({w for w, _ in steps})
        timed = [r for r in permutations if r["measure"] == "time"]
        smooth = [r for r in permutations if r["measure"] == "smoothness"]
        return {
            "within 1 point of the original with a predictor under 60% of the represented weights (mean over seeds)": any(
                r["ratio"] < 0.6 and r["acc_mean"] >= original - 0.01 for r in summary if r["run"].startswith("ratio")),
            "half the steps is within 1 point of the full run (more steps stop helping)": abs(acc["half the steps"] - acc[main]) <= 0.01,
            "crossfilter permutation beats no permutation": acc[main] > acc["no permutation"],
            "infilter permutation beats no permutation": acc["infilter"] > acc["no permutation"],
            "crossfilter permutation lowers the reconstruction error vs no permutation": err[main] < err["no permutation"],
            "infilter permutation lowers the reconstruction error vs no permutation": err["infilter"] < err["no permutation"],
            "distillation beats reconstruction only": acc[main] > acc["reconstruction only"],
            "pruning by reconstruction error keeps more accuracy than random pruning": mean_acc["reconstruction-error"] > mean_acc["random"],
            "the current step is faster than the literal one at every width": all(
                steps[(w, "current")]["steps_per_s"] > steps[(w, "baseline")]["steps_per_s"] for w in widths),
            "crossfilter on each timed layer takes under 60 s of CPU time": all(r["cpu_s"] < 60 for r in timed),
            "the clustered chain's smoothness is within 1% of the exact greedy chain's": all(r["relative"] >= 0.99 for r in smooth),
        }

    @staticmethod
    def _markdown(c: NeRNBenchConfig, summary: list[dict[str, Any]], training: list[dict[str, Any]], importance: list[dict[str, Any]],
                  speed: list[dict[str, Any]], permutations: list[dict[str, Any]], claims: dict[str, bool], original: float,
                  train_seconds: float, total_seconds: float, unevaluated: list[str]) -> str:
        last = training[-1]
        tail = [r["test_accuracy"] for r in training[-max(1, len(training) // 5):]]
        return (
            f"ResNet-20 (width {c.width}) on Shapes32 ({c.num_samples} images, pooled to {c.image_size}×{c.image_size}), trained "
            f"for {c.train_epochs} epochs ({train_seconds:.0f} s): test accuracy {100 * original:.1f}% (last fifth of the epochs: "
            f"{100 * min(tail):.1f}–{100 * max(tail):.1f}%, train loss {last['train_loss']:.3f}). Every fit: {c.steps} predictor "
            f"steps ({c.warmup_steps} reconstruction-only), seeds {c.seeds}; means ± standard deviations over the seeds. "
            f"`ratio` = predictor / represented parameters; `rmse_vs_weight_rms` = RMSE of all represented weights / their RMS; "
            f"`last_tenth_error_drop_%` = how much that error still fell over the last tenth of the steps; `converged` = "
            f"fits without the not-converged warning. Whole benchmark: {total_seconds / 60:.1f} min.\n\n"
            + markdown_table(summary, ["run", "hidden", "ratio", "permutation", "distillation", "steps", "reconstructed_acc",
                                       "gap_points", "rmse_vs_weight_rms", "last_tenth_error_drop_%", "converged", "fit_s"], digits=3)
            + f"\nWeight importance (ratio {c.ablation_ratio:g}, seed {c.seeds[0]}): test accuracy of the original network after "
            f"pruning the represented weights by each criterion.\n\n"
            + markdown_table(importance, ["sparsity", "criterion", "accuracy"])
            + f"\nDistillation-step speed on random-initialised ResNet-20s (h={c.speed_hidden}, 64 images of 32×32, one "
            f"thread, best of {c.speed_rounds} alternating rounds of {c.speed_steps} steps); `peak_extra_mib` = peak resident "
            f"memory above the level before the steps.\n\n"
            + markdown_table(speed, ["width", "kernels", "step", "steps_per_s", "peak_extra_mib"], digits=2)
            + "\nCrossfilter permutations: time of the clustered walk on full-size layers, and its chain smoothness (sum of "
            "neighbouring kernels' cosine similarities) against the exact greedy chain.\n\n"
            + markdown_table(permutations, ["layer", "kernels", "measure", "cpu_s", "wall_s", "smoothness", "exact_smoothness", "relative"], digits=3)
            + "\nClaims:\n\n" + "\n".join(f"- {k}: {'held' if v else 'did not hold'}" for k, v in claims.items()) + "\n"
            + "".join(f"- {k}: not evaluated ({UNTESTABLE})\n" for k in unevaluated)
        )

    @staticmethod
    def _plot(training: list[dict[str, Any]], curves: list[dict[str, Any]], summary: list[dict[str, Any]], original: float,
              c: NeRNBenchConfig, path: Path, size: tuple[float, float]) -> Path:
        fig, (train_ax, curve_ax, ratio_ax, ablation_ax) = new_figure(1, 4, figsize=size)
        train_ax.plot([r["epoch"] for r in training], [r["test_accuracy"] for r in training], "o-", ms=3)
        train_ax.set(xlabel="epoch", ylabel="test accuracy", title=f"original ResNet-20 w={c.width}")
        for label in [f"ratio {r:g}" for r in c.ratios] + ["reconstruction only", "no permutation"]:
            pts = [r for r in curves if r["run"] == label and r["seed"] == c.seeds[0] and "accuracy" in r]
            curve_ax.plot([r["step"] for r in pts], [r["accuracy"] for r in pts], label=label)
        curve_ax.axhline(original, color="k", ls="--", label="original")
        curve_ax.axvline(c.warmup_steps, color="grey", ls=":", label="distillation starts")
        curve_ax.set(xlabel="predictor step", ylabel="rebuilt accuracy (probe)", title=f"training curves, seed {c.seeds[0]}")
        curve_ax.legend(fontsize=7)
        main = [r for r in summary if r["run"].startswith("ratio")]
        ratio_ax.plot([r["ratio"] for r in main], [r["acc_mean"] for r in main], "o-", label="NeRN (crossfilter + distillation)")
        ratio_ax.axhline(original, color="k", ls="--", label="original")
        ratio_ax.axvline(0.6, color="grey", ls=":", label="60% of the weights")
        ratio_ax.set(xlabel="predictor / represented parameters", ylabel="test accuracy", title="accuracy vs size")
        ratio_ax.legend(fontsize=7)
        ablation = [r for r in summary if not r["run"].startswith("ratio") or r["run"] == f"ratio {c.ablation_ratio:g}"]
        ablation_ax.bar(range(len(ablation)), [r["acc_mean"] for r in ablation])
        ablation_ax.axhline(original, color="k", ls="--")
        ablation_ax.set_xticks(range(len(ablation)), [r["run"] for r in ablation], rotation=20, ha="right")
        ablation_ax.set(ylabel="test accuracy", title=f"ablations at ratio {c.ablation_ratio:g}")
        return save_figure(fig, path)


ACCURACY_CLAIMS = (
    "within 1 point of the original with a predictor under 60% of the represented weights (mean over seeds)",
    "half the steps is within 1 point of the full run (more steps stop helping)",
    "crossfilter permutation beats no permutation",
    "infilter permutation beats no permutation",
    "distillation beats reconstruction only",
)
UNTESTABLE = "no reconstructed network got halfway from chance to the original's accuracy, so accuracy comparisons test nothing"


def _accuracy_claims_untestable(summary: list[dict[str, Any]], original: float, chance: float) -> list[str]:
    """The accuracy-based claims when every fit rebuilt a network closer to chance than to the original, else none."""
    best = max(r["acc_mean"] for r in summary)
    return list(ACCURACY_CLAIMS) if best < (chance + original) / 2 else []
