"""Benchmark beta-digits: source-only vs distill vs DINE vs BETA on two offline domain pairs.

For each pair and seed a ``BlackBoxServer`` trains a source CNN on the source domain in its own
process and answers top-1 queries; every adapter adapts a fresh student (same initialisation) on
the unlabelled target training split through it, and accuracy is measured on the labelled target
test split. BETA's divisions are scored against the true target labels afterwards: the precision
of the black-box labels inside the easy subdomain versus over the whole target set. On the first
pair the adapters run once more through an in-process box holding the same source model, to
time the server against it.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from oral6_core import registry
from oral6_core.bench import markdown_table, mean_std, new_figure, save_figure
from oral6_core.blackbox import BlackBoxServer, InProcessBlackBox, SourceSpec, TargetCheck
from oral6_core.blackbox_server import build_source
from oral6_core.components import Adapter, Benchmark, BenchResult, BlackBox
from oral6_core.config import ComponentConfig
from oral6_core.data import DataBundle
from oral6_core.metrics import evaluate
from oral6_core.training import seed_everything

from .augment import Views
from .beta import BETAAdapter

ADAPTERS = ("source-only", "distill", "dine", "beta")
PAIRS = {"printed-digits → digits": ("printed-digits", "digits"), "shapes-a → shapes-b": ("shapes-a", "shapes-b")}


class BetaDigitsConfig(ComponentConfig):
    seeds: list[int] = Field([0, 1, 2], description="Seeds (source model, student initialisation, adaptation).")
    quick_seeds: list[int] = Field([0], description="Seeds in quick mode.")
    cost_seeds: int = Field(3, ge=0, description="Seeds of the first pair that also adapt through an in-process box, to time the server against it.")
    source_epochs: int = Field(30, ge=1, description="Epochs of source training (Adam, lr 2e-3).")
    epochs: int = Field(20, ge=1, description="Adaptation epochs of distill, DINE and BETA.")
    finetune_epochs: int = Field(10, ge=0, description="Information-maximisation fine-tuning epochs of DINE and BETA.")
    channels: list[int] = Field([16, 32], description="Channels of the cnn used as source model and student.")
    backbone_lr_scale: float = Field(1.0, gt=0, description="Backbone lr multiple (1: the students start from random weights, not ImageNet).")
    per_class: int = Field(200, ge=5, description="Rendered source images per class (printed digits, shapes).")
    beta_options: dict[str, Any] = Field(default_factory=dict, description="Extra options for the beta adapter.")


class BetaDigitsBenchmark(Benchmark):
    """BETA vs DINE vs distillation vs source-only on printed→handwritten digits and shapes a→b (top-1 black box)."""

    name = "beta-digits"
    Config = BetaDigitsConfig
    readme = Path(__file__).parents[2] / "README.md"

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        c: BetaDigitsConfig = self.config  # type: ignore[assignment]
        torch.set_num_threads(1)
        _warm_up()
        seeds = c.quick_seeds if quick else c.seeds
        results: list[dict[str, Any]] = []
        divisions: list[dict[str, Any]] = []
        costs: list[dict[str, Any]] = []
        for p, (pair, (source, target)) in enumerate(PAIRS.items()):
            for s, seed in enumerate(seeds):
                runs, division, cost = self._run_pair(pair, source, target, seed, quick, compare=p == 0 and s < c.cost_seeds)
                results += runs
                divisions.append(division)
                costs += cost
        rows = _accuracy_rows(results) + _division_rows(divisions) + _cost_rows(costs)
        markdown = (markdown_table([r for r in rows if r["table"] == "accuracy"], ["pair", "method", "target accuracy %", "queries", "time × distill"])
                    + "\n" + markdown_table([r for r in rows if r["table"] == "division"],
                                            ["pair", "easy share % (first)", "easy precision % (first)", "easy precision % (last)", "whole precision %"])
                    + "\n" + COST_CAPTION + markdown_table([r for r in rows if r["table"] == "cost"],
                                                           ["pair", "method", "in-process s", "server s", "server ÷ in-process", "same accuracy"]))
        claims = {**_claims(results, divisions), **_cost_claims(costs)}
        files = [_plot_accuracy(results, out_dir / "accuracy.png"), _plot_division(divisions, out_dir / "division.png")]
        mode = f"{len(seeds)} seed(s), mean ± std over seeds; quick mode" if quick else f"{len(seeds)} seeds, mean ± std"
        markdown = f"Target-domain accuracy ({mode}); black box = top-1 label + confidence.\n\n" + markdown
        return BenchResult(rows, markdown, files, claims)

    def _run_pair(self, pair: str, source: str, target: str, seed: int, quick: bool, compare: bool
                  ) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
        """Every adapter through one black-box server; with ``compare``, again through an in-process box (the cost baseline)."""
        c: BetaDigitsConfig = self.config  # type: ignore[assignment]
        per_class = 20 if quick else c.per_class
        tgt_options = {"per_class": per_class} if target != "digits" else None
        tgt = registry.create("dataset", target, tgt_options).load(seed)
        if quick:
            tgt.train = tgt.train.subset(torch.arange(min(len(tgt.train), 160)))  # type: ignore[union-attr, arg-type]
        spec = SourceSpec(source, {"per_class": per_class}, "cnn", {"channels": c.channels}, 1 if quick else c.source_epochs, 2e-3, seed)
        epochs = 1 if quick else c.epochs
        common = {"epochs": epochs, "backbone_lr_scale": c.backbone_lr_scale, "seed": seed}
        options: dict[str, dict[str, Any]] = {
            "source-only": {}, "distill": common, "dine": {**common, "finetune_epochs": 1 if quick else c.finetune_epochs},
            "beta": {**common, "finetune_epochs": 1 if quick else c.finetune_epochs, **c.beta_options},
        }
        runs, division, costs = [], {}, []
        with BlackBoxServer(spec, "topk", 1, target=TargetCheck(tgt.name, tgt.input_shape, tgt.num_classes)) as server:
            for name in ADAPTERS:
                before = server.queries
                adapter, accuracy, seconds = _adapt(name, options[name], server.client, tgt, seed, c.channels)
                runs.append({"pair": pair, "method": name, "seed": seed, "accuracy": accuracy,
                             "queries": server.queries - before, "seconds": seconds})
                if isinstance(adapter, BETAAdapter):
                    division = _division_precision(adapter, tgt, pair, seed)
        if compare:
            model, src, _ = build_source(spec)
            for run in runs:
                box = InProcessBlackBox(model, src.num_classes, src.input_shape)
                _, accuracy, seconds = _adapt(run["method"], options[run["method"]], box, tgt, seed, c.channels)
                costs.append({"pair": pair, "method": run["method"], "seed": seed, "server_seconds": run["seconds"],
                              "in_process_seconds": seconds, "same_accuracy": accuracy == run["accuracy"]})
        return runs, division, costs


def _warm_up() -> None:
    """Import what the adapters import lazily, so that no timed run pays for it."""
    from sklearn.mixture import GaussianMixture  # noqa: F401

    Views(True).strong(torch.zeros(8, 1, 8, 8))


def _adapt(name: str, options: dict[str, Any], box: BlackBox, tgt: DataBundle, seed: int, channels: list[int]) -> tuple[Adapter, float, float]:
    """Adapt a fresh student (same initialisation for every adapter); its target accuracy and the seconds to adapt and predict."""
    adapter = registry.create("adapter", name, options)
    seed_everything(seed)
    student = registry.create("model", "cnn", {"channels": channels}).build(tgt.input_shape, tgt.num_classes)
    started = time.perf_counter()
    adapted = adapter.adapt(box, tgt.train.without_labels(), student)  # type: ignore[union-attr]
    accuracy = evaluate(adapted, tgt.test, tgt.task)["accuracy"]  # type: ignore[arg-type]
    return adapter, accuracy, time.perf_counter() - started


def _division_precision(adapter: BETAAdapter, tgt: DataBundle, pair: str, seed: int) -> dict[str, Any]:
    """Precision of the black-box labels in each epoch's easy subdomain (both networks pooled) and overall."""
    truth = tgt.train.y  # type: ignore[union-attr]
    curve = []
    for record in adapter.history:
        easy = torch.cat([d.easy for d in record.divisions]).cpu()
        labels = record.pseudo_labels.cpu().repeat(2)
        correct = labels == truth.repeat(2)
        curve.append({"epoch": record.epoch, "easy_share": float(easy.float().mean()),
                      "easy_precision": float(correct[easy].float().mean()) if bool(easy.any()) else float("nan")})
    whole = float((adapter.history[0].pseudo_labels.cpu() == truth).float().mean()) if adapter.history else float("nan")
    return {"pair": pair, "seed": seed, "whole_precision": whole, "curve": curve}


def _mean(values: list[float]) -> float:
    return statistics.mean(values) if values else float("nan")


def _accuracy_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for pair in PAIRS:
        distill_time = _mean([r["seconds"] for r in results if r["pair"] == pair and r["method"] == "distill"])
        for name in ADAPTERS:
            runs = [r for r in results if r["pair"] == pair and r["method"] == name]
            rows.append({"table": "accuracy", "pair": pair, "method": name,
                         "target accuracy %": mean_std([r["accuracy"] for r in runs], 1, 100.0),
                         "accuracy_mean": _mean([r["accuracy"] for r in runs]),
                         "queries": int(_mean([r["queries"] for r in runs])),  # source-only queries at test time
                         "time × distill": f"{_mean([r['seconds'] for r in runs]) / distill_time:.2f}"})
    return rows


def _division_rows(divisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for pair in PAIRS:
        found = [d for d in divisions if d["pair"] == pair and d["curve"]]
        rows.append({"table": "division", "pair": pair,
                     "easy share % (first)": mean_std([d["curve"][0]["easy_share"] for d in found], 1, 100.0),
                     "easy precision % (first)": mean_std([d["curve"][0]["easy_precision"] for d in found], 1, 100.0),
                     "easy precision % (last)": mean_std([d["curve"][-1]["easy_precision"] for d in found], 1, 100.0),
                     "whole precision %": mean_std([d["whole_precision"] for d in found], 1, 100.0),
                     "easy_first_mean": _mean([d["curve"][0]["easy_precision"] for d in found]),
                     "whole_mean": _mean([d["whole_precision"] for d in found])})
    return rows


COST_CAPTION = ("Cost of the server: every adapter again on the first pair through an in-process box holding the same "
                "source model (seconds to adapt and predict on the target test split, same process, back to back).\n\n")
MAX_SERVER_COST = 1.5


def _cost_rows(costs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name in ADAPTERS:
        runs = [r for r in costs if r["method"] == name]
        if runs:
            local, served = _mean([r["in_process_seconds"] for r in runs]), _mean([r["server_seconds"] for r in runs])
            rows.append({"table": "cost", "pair": runs[0]["pair"], "method": name, "in-process s": f"{local:.2f}",
                         "server s": f"{served:.2f}", "server ÷ in-process": f"{served / local:.2f}",
                         "same accuracy": "yes" if all(r["same_accuracy"] for r in runs) else "no"})
    if costs:
        local, served = sum(r["in_process_seconds"] for r in costs), sum(r["server_seconds"] for r in costs)
        rows.append({"table": "cost", "pair": costs[0]["pair"], "method": "all four, seeds summed", "in-process s": f"{local:.2f}",
                     "server s": f"{served:.2f}", "server ÷ in-process": f"{served / local:.2f}",
                     "same accuracy": "yes" if all(r["same_accuracy"] for r in costs) else "no"})
    return rows


def _cost_claims(costs: list[dict[str, Any]]) -> dict[str, bool]:
    if not costs:
        return {}
    ratio = sum(r["server_seconds"] for r in costs) / sum(r["in_process_seconds"] for r in costs)
    return {f"adapting through the server costs at most {MAX_SERVER_COST}× the in-process box (all four adapters)": ratio <= MAX_SERVER_COST,
            "the server and the in-process box give the same adapted accuracy": all(r["same_accuracy"] for r in costs)}


def _claims(results: list[dict[str, Any]], divisions: list[dict[str, Any]]) -> dict[str, bool]:
    claims = {}
    for pair in PAIRS:
        acc = {name: _mean([r["accuracy"] for r in results if r["pair"] == pair and r["method"] == name]) for name in ADAPTERS}
        claims[f"{pair}: BETA > DINE"] = acc["beta"] > acc["dine"]
        claims[f"{pair}: DINE > distill"] = acc["dine"] > acc["distill"]
        claims[f"{pair}: distill > source-only"] = acc["distill"] > acc["source-only"]
        found = [d for d in divisions if d["pair"] == pair and d["curve"]]
        easy = _mean([d["curve"][0]["easy_precision"] for d in found])
        whole = _mean([d["whole_precision"] for d in found])
        claims[f"{pair}: easy subdomain much cleaner than the whole (≥ 10 points at the first division)"] = easy >= whole + 0.10
    return claims


def _plot_accuracy(results: list[dict[str, Any]], path: Path) -> Path:
    fig, axes = new_figure(1, len(PAIRS), figsize=(5 * len(PAIRS), 3.5))
    for ax, pair in zip(axes, PAIRS):
        values = [[100 * r["accuracy"] for r in results if r["pair"] == pair and r["method"] == m] for m in ADAPTERS]
        means = [statistics.mean(v) for v in values]
        errors = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
        ax.bar(range(len(ADAPTERS)), means, yerr=errors, color=["#999999", "#6baed6", "#3182bd", "#e6550d"], capsize=4)
        ax.set_xticks(range(len(ADAPTERS)), ADAPTERS)
        ax.set_title(pair)
        ax.set_ylabel("target accuracy %")
    return save_figure(fig, path)


def _plot_division(divisions: list[dict[str, Any]], path: Path) -> Path:
    fig, axes = new_figure(1, len(PAIRS), figsize=(5 * len(PAIRS), 3.5))
    for ax, pair in zip(axes, PAIRS):
        for d in [d for d in divisions if d["pair"] == pair and d["curve"]]:
            epochs = [p["epoch"] for p in d["curve"]]
            line = ax.plot(epochs, [100 * p["easy_precision"] for p in d["curve"]], marker="o", label=f"easy, seed {d['seed']}")
            ax.axhline(100 * d["whole_precision"], color=line[0].get_color(), linestyle="--", label=f"whole, seed {d['seed']}")
        ax.set_title(pair)
        ax.set_xlabel("epoch")
        ax.set_ylabel("black-box label precision %")
        ax.legend(fontsize=7)
    return save_figure(fig, path)
