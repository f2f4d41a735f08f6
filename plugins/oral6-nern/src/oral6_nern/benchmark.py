"""Benchmark ``nern-resnet20``: NeRN on a CIFAR-style ResNet-20 trained on Shapes32, with ablations."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from oral6_core import registry
from oral6_core.bench import markdown_table, new_figure, save_figure
from oral6_core.components import Benchmark, BenchResult
from oral6_core.config import ComponentConfig, TrainConfig
from oral6_core.data import DataBundle
from oral6_core.errors import ConfigError
from oral6_core.metrics import evaluate
from oral6_core.training import fit, seed_everything

from .fitting import relative_rmse
from .importance import CRITERIA, importance_study
from .representation import NeRN


class NeRNBenchConfig(ComponentConfig):
    seed: int = Field(0, description="Seed of the data, the network and the predictors.")
    width: int = Field(8, ge=1, description="ResNet-20 width (stages w, 2w, 4w; the paper's is 16).")
    num_samples: int = Field(3000, ge=100, description="Shapes32 images in all splits.")
    train_epochs: int = Field(6, ge=1, description="Epochs to train the original network (Adam, cosine).")
    hidden: list[int] = Field([48, 64, 80], description="Predictor widths h of the main table.")
    ablation_hidden: int = Field(64, ge=1, description="Predictor width of the ablations.")
    warmup_steps: int = Field(1700, ge=0, description="Reconstruction-only steps before distillation starts.")
    steps: int = Field(2000, ge=1, description="Total predictor steps per fit (warm-up included).")
    batch_size: int = Field(32, ge=1, description="Images per distillation batch.")
    kernel_batch: int = Field(4096, ge=1, description="Kernels per reconstruction batch.")
    sparsities: list[float] = Field([0.1, 0.3, 0.5], description="Sparsities of the weight-importance study.")
    threads: int = Field(1, ge=1, description="torch CPU threads.")


QUICK = {"width": 2, "num_samples": 200, "train_epochs": 1, "hidden": [8, 12, 16], "ablation_hidden": 12,
         "warmup_steps": 3, "steps": 6, "batch_size": 8, "kernel_batch": 256, "sparsities": [0.3]}


def _train_original(c: NeRNBenchConfig, bundle: DataBundle) -> torch.nn.Module:
    seed_everything(c.seed)
    net = registry.create("model", "resnet20", {"width": c.width}).build(bundle.input_shape, bundle.num_classes)
    train = TrainConfig(epochs=c.train_epochs, batch_size=64, seed=c.seed, device="cpu", lr_schedule="cosine",
                        progress=False, checkpoint=False)
    return fit(net, bundle, registry.create("optimizer", "adam", {"lr": 5e-3}), train).model.eval()


class NeRNResNet20(Benchmark):
    """NeRN on ResNet-20: reconstructed accuracy vs predictor size; permutation and distillation ablations."""

    name = "nern-resnet20"
    Config = NeRNBenchConfig
    readme = Path(__file__).parents[2] / "README.md"

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        c = self.config.model_copy(update=QUICK) if quick else self.config
        if c.ablation_hidden not in c.hidden:
            raise ConfigError(f"bench.ablation_hidden={c.ablation_hidden} must be one of bench.hidden={c.hidden}: the "
                              f"ablations are compared with the full method at that width.")
        torch.set_num_threads(c.threads)
        bundle = registry.create("dataset", "shapes32", {"num_samples": c.num_samples, "data_seed": c.seed}).load()
        started = time.perf_counter()
        net = _train_original(c, bundle)
        train_seconds = time.perf_counter() - started
        original = evaluate(net, bundle.test, bundle.task)["accuracy"]  # type: ignore[arg-type]
        params = dict(net.named_parameters())
        base = {"steps": c.steps, "warmup_steps": c.warmup_steps, "batch_size": c.batch_size, "kernel_batch": c.kernel_batch,
                "seed": c.seed, "progress": False, "log_every": max(c.steps // 10, 1), "noise_size": bundle.input_shape[-1]}
        runs: list[tuple[str, dict[str, Any]]] = [(f"h={h}", {"hidden": h}) for h in c.hidden]
        h = c.ablation_hidden
        runs += [("ablation: no permutation", {"hidden": h, "permutation": "none"}),
                 ("ablation: infilter", {"hidden": h, "permutation": "infilter"}),
                 ("ablation: reconstruction only", {"hidden": h, "distill_weight": 0.0, "attention_weight": 0.0})]
        rows, fitted = [], {}
        for label, options in runs:
            options = {**base, **options}
            rep: NeRN = registry.create("representation", "nern", options)  # type: ignore[assignment]
            t0 = time.perf_counter()
            rep.fit(net, bundle)
            seconds = time.perf_counter() - t0
            fitted[label] = rep
            rows.append({
                "run": label, "hidden": options["hidden"], "permutation": options.get("permutation", "crossfilter"),
                "distillation": options.get("distill_weight", 1e-4) > 0, "original_acc": original,
                "reconstructed_acc": evaluate(rep.reconstruct(), bundle.test, bundle.task)["accuracy"],  # type: ignore[arg-type]
                "rmse_vs_weight_rms": relative_rmse(params, rep.predicted_weights()),
                "predictor_params": rep.num_parameters(),
                "represented_params": rep.represented_parameters(),
                "ratio": rep.num_parameters() / rep.represented_parameters(), "fit_time_vs_training": seconds / train_seconds,
            })
        largest = fitted[f"h={max(c.hidden)}"]
        importance = importance_study(net, largest, bundle.test, bundle.task, list(c.sparsities), c.seed)  # type: ignore[arg-type]
        for row in importance:
            row["hidden"] = max(c.hidden)
        claims = self._claims(rows, importance, original, h)
        files = [self._plot(rows, importance, original, c, out_dir / "nern_resnet20.png", (6, 2) if quick else (15, 4))]
        columns = ["run", "hidden", "permutation", "distillation", "original_acc", "reconstructed_acc", "rmse_vs_weight_rms",
                   "predictor_params", "represented_params", "ratio", "fit_time_vs_training"]
        markdown = (
            f"ResNet-20 (width {c.width}) on Shapes32 ({c.num_samples} images), {c.steps} predictor steps "
            f"({c.warmup_steps} reconstruction-only), seed {c.seed}. `ratio` = predictor / represented parameters; "
            f"`rmse_vs_weight_rms` = RMSE of all represented weights / their RMS (1 = no better than zeros); "
            f"`fit_time_vs_training` = NeRN fit time / original training time (same process).\n\n"
            + markdown_table(rows, columns)
            + f"\nWeight importance (h={max(c.hidden)}): test accuracy of the original network after pruning the "
            f"represented weights by each criterion.\n\n"
            + markdown_table(importance, ["sparsity", "criterion", "accuracy"])
            + "\nClaims:\n\n" + "\n".join(f"- {k}: {'held' if v else 'did not hold'}" for k, v in claims.items()) + "\n"
        )
        tables = [{"table": "main", **r} for r in rows] + [{"table": "importance", **r} for r in importance]
        return BenchResult(tables, markdown, files, claims)

    @staticmethod
    def _claims(rows: list[dict[str, Any]], importance: list[dict[str, Any]], original: float, h: int) -> dict[str, bool]:
        by_run = {r["run"]: r["reconstructed_acc"] for r in rows}
        rmse = {r["run"]: r["rmse_vs_weight_rms"] for r in rows}
        main = by_run[f"h={h}"]
        mean_acc = {k: sum(r["accuracy"] for r in importance if r["criterion"] == k) / max(1, sum(r["criterion"] == k for r in importance)) for k in CRITERIA}
        return {
            "within 1 point of the original with a predictor under 60% of the represented weights": any(
                r["ratio"] < 0.6 and r["reconstructed_acc"] >= original - 0.01 for r in rows),
            "crossfilter permutation beats no permutation": main > by_run["ablation: no permutation"],
            "infilter permutation beats no permutation": by_run["ablation: infilter"] > by_run["ablation: no permutation"],
            "crossfilter permutation lowers the reconstruction error vs no permutation": rmse[f"h={h}"] < rmse["ablation: no permutation"],
            "infilter permutation lowers the reconstruction error vs no permutation": rmse["ablation: infilter"] < rmse["ablation: no permutation"],
            "distillation beats reconstruction only": main > by_run["ablation: reconstruction only"],
            "pruning by reconstruction error keeps more accuracy than random pruning": mean_acc["reconstruction-error"] > mean_acc["random"],
        }

    @staticmethod
    def _plot(rows: list[dict[str, Any]], importance: list[dict[str, Any]], original: float, c: NeRNBenchConfig, path: Path,
              size: tuple[float, float]) -> Path:
        fig, (left, middle, right) = new_figure(1, 3, figsize=size)
        main = [r for r in rows if r["run"].startswith("h=")]
        left.plot([r["ratio"] for r in main], [r["reconstructed_acc"] for r in main], "o-", label="NeRN (crossfilter + distillation)")
        left.axhline(original, color="k", ls="--", label="original")
        left.axvline(0.6, color="grey", ls=":", label="60% of the weights")
        left.set(xlabel="predictor / represented parameters", ylabel="test accuracy", title=f"ResNet-20 w={c.width}")
        left.legend()
        h = c.ablation_hidden
        ablation = [r for r in rows if r["run"] == f"h={h}" or r["run"].startswith("ablation")]
        labels = ["crossfilter + distill" if r["run"] == f"h={h}" else r["run"].removeprefix("ablation: ") for r in ablation]
        middle.bar(range(len(ablation)), [r["reconstructed_acc"] for r in ablation])
        middle.axhline(original, color="k", ls="--")
        middle.set_xticks(range(len(ablation)), labels, rotation=20, ha="right")
        middle.set(ylabel="test accuracy", title=f"ablations at h={h}")
        for criterion in CRITERIA:
            pts = [r for r in importance if r["criterion"] == criterion]
            right.plot([r["sparsity"] for r in pts], [r["accuracy"] for r in pts], "o-", label=criterion)
        right.axhline(original, color="k", ls="--")
        right.set(xlabel="sparsity of the represented weights", ylabel="test accuracy", title="weight importance")
        right.legend()
        return save_figure(fig, path)
