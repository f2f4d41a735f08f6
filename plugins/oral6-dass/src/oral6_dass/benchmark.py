"""Benchmark ``dass-unseen``: rank correlation on held-out tasks, the chosen student, and the search cost."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from oral6_core import registry
from oral6_core.bench import markdown_table, new_figure, save_figure
from oral6_core.components import Benchmark, BenchResult, SearchTask
from oral6_core.config import ComponentConfig

from .candidates import task_candidates
from .distill import DistilSettings
from .meta import rank_correlations
from .metadata import MetaDatasetSettings, TaskRecord, build_meta_dataset, load_meta_dataset
from .tasks import load_task

BASELINES = ("params", "flops", "synflow", "snip", "grad-norm", "naswot")
META_PREDICTORS = ("dass", "dass-no-func")


class DaSSUnseenConfig(ComponentConfig):
    students_per_task: int = Field(20, ge=4, description="Distilled students per task in the meta-dataset.")
    teacher_epochs: int = Field(8, ge=1, description="Teacher training epochs per task.")
    distil_epochs: int = Field(3, ge=1, description="Distillation epochs per student.")
    episodes: int = Field(300, ge=1, description="Meta-training episodes of dass and dass-no-func.")
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="Meta-training seeds of the meta-learned predictors.")
    timing_candidates: int = Field(1000, ge=1, description="Candidates scored in the timing comparison.")
    meta_dir: str | None = Field(None, description="Meta-dataset folder (default: OUT/meta); reused and resumed when present.")
    threads: int = Field(1, ge=1, description="torch CPU threads.")


class DaSSUnseen(Benchmark):
    """DaSS vs params/FLOPs/zero-cost proxies/no-functional ablation: Spearman of distilled accuracy on unseen tasks."""

    name = "dass-unseen"
    Config = DaSSUnseenConfig
    readme = Path(__file__).parents[2] / "README.md"

    def settings(self, quick: bool) -> MetaDatasetSettings:
        """The meta-dataset this run uses (a three-task toy in quick mode)."""
        c = self.config
        if quick:
            return MetaDatasetSettings(train_tasks=["digits-0to4"], val_tasks=["shapes-4"], test_tasks=["textures-4"],
                                       students_per_task=4, teacher_widths=[8, 8], teacher_depths=[2, 1], teacher_epochs=1,
                                       distil=DistilSettings(epochs=1))
        return MetaDatasetSettings(students_per_task=c.students_per_task, teacher_epochs=c.teacher_epochs,
                                   distil=DistilSettings(epochs=c.distil_epochs))

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        threads = torch.get_num_threads()
        torch.set_num_threads(self.config.threads)
        try:
            return self._run(out_dir, quick)
        finally:
            torch.set_num_threads(threads)

    def _run(self, out_dir: Path, quick: bool) -> BenchResult:
        c = self.config
        settings = self.settings(quick)
        meta_dir = Path(c.meta_dir) if c.meta_dir else out_dir / ("meta-quick" if quick else "meta")
        started = time.perf_counter()
        build_meta_dataset(meta_dir, settings, device="cpu", progress=not quick)
        build_seconds = time.perf_counter() - started
        _, records = load_meta_dataset(meta_dir)
        episodes, seeds = (5, c.seeds[:1]) if quick else (c.episodes, c.seeds)
        trained = {name: [self._meta_train(name, (settings, records), episodes, s) for s in seeds] for name in META_PREDICTORS}
        unseen = [r for r in records if r.split == "test"]
        tasks = {r.name: SearchTask(load_task(r.name), r.teacher, r.teacher_accuracy) for r in unseen}

        scores: dict[str, dict[str, list[torch.Tensor]]] = {}
        for r in unseen:
            cands = task_candidates(tasks[r.name], [s.arch for s in r.students])
            for name in META_PREDICTORS:
                scores.setdefault(name, {})[r.name] = [p.predict(cands, tasks[r.name]).cpu() for p in trained[name]]
            for name in BASELINES:
                scores.setdefault(name, {})[r.name] = [registry.create("predictor", name).predict(cands, tasks[r.name]).cpu()]

        corr_rows = self._correlations(scores, unseen)
        pick_rows = self._picks(scores["dass"], unseen)
        timing = self._timing(trained["dass"][0], tasks[unseen[0].name], 20 if quick else c.timing_candidates, settings)
        files = [self._plot_bars(corr_rows, out_dir), self._plot_scatter(scores["dass"], unseen, out_dir)]

        best_other = max(r["mean spearman"] for r in corr_rows if r["predictor"] != "dass")
        dass_row = next(r for r in corr_rows if r["predictor"] == "dass")
        mean_pick = {k: statistics.mean(r[k] for r in pick_rows) for k in ("dass pick", "random pick", "largest")}
        claims = {
            "DaSS ranks students on unseen tasks better (mean Spearman) than every baseline": dass_row["mean spearman"] > best_other,
            "DaSS's pick distils to a higher test accuracy than a random pick under the budget": mean_pick["dass pick"] > mean_pick["random pick"],
            "DaSS's pick distils to a higher test accuracy than the largest student under the budget": mean_pick["dass pick"] > mean_pick["largest"],
        }
        size = (f"Meta-dataset: {len(records)} tasks ({len(settings.train_tasks)} train, {len(settings.val_tasks)} validation, "
                f"{len(unseen)} unseen: {', '.join(tasks)}), {settings.students_per_task} distilled students each "
                f"({len(records) * settings.students_per_task} students); {build_seconds:.0f}s spent building it in this run "
                f"(a finished meta-dataset is reused).")
        timing_line = (f"Search cost: scoring {timing['candidates']} candidates with DaSS took {timing['score_seconds']:.2f}s; "
                       f"distilling one student took {timing['distil_seconds']:.2f}s "
                       f"(scoring {timing['candidates']} = {timing['ratio']:.2f}× one distillation).")
        columns = ["predictor", *tasks, "mean spearman", "mean pearson"]
        markdown = (f"Spearman (ρ) of predicted vs distilled accuracy on unseen tasks; meta-learned predictors averaged over "
                    f"seeds {seeds}.\n\n" + markdown_table(corr_rows, columns)
                    + "\nTest accuracy of the distilled student chosen under a budget of the median student size "
                    "(random: expectation over the students under the budget).\n\n" + markdown_table(pick_rows)
                    + f"\n{timing_line}\n\n{size}\n")
        rows: list[dict[str, Any]] = ([{"table": "correlation", **r} for r in corr_rows] + [{"table": "pick", **r} for r in pick_rows]
                                      + [{"table": "timing", **timing}])
        return BenchResult(rows, markdown, files, claims)

    def _meta_train(self, name: str, meta: Any, episodes: int, seed: int) -> Any:
        predictor = registry.create("predictor", name, {"episodes": episodes, "seed": seed})
        predictor.fit(meta)
        return predictor

    def _correlations(self, scores: dict[str, dict[str, list[torch.Tensor]]], unseen: list[TaskRecord]) -> list[dict[str, Any]]:
        rows = []
        for name, per_task in scores.items():
            row: dict[str, Any] = {"predictor": name}
            rhos, rs = [], []
            for r in unseen:
                actual = torch.tensor([s.val_accuracy for s in r.students])
                pairs = [rank_correlations(s, actual) for s in per_task[r.name]]
                rho, pr = statistics.mean(p[0] for p in pairs), statistics.mean(p[1] for p in pairs)
                row[r.name] = rho
                rhos.append(rho)
                rs.append(pr)
            row["mean spearman"], row["mean pearson"] = statistics.mean(rhos), statistics.mean(rs)
            rows.append(row)
        return rows

    def _picks(self, dass_scores: dict[str, list[torch.Tensor]], unseen: list[TaskRecord]) -> list[dict[str, Any]]:
        rows = []
        for r in unseen:
            budget = statistics.median(s.num_params for s in r.students)
            allowed = [i for i, s in enumerate(r.students) if s.num_params <= budget]
            picks = [max(allowed, key=lambda i: float(sc[i])) for sc in dass_scores[r.name]]
            largest = max(allowed, key=lambda i: r.students[i].num_params)
            rows.append({"task": r.name, "budget params": int(budget), "teacher": r.teacher_accuracy,
                         "dass pick": statistics.mean(r.students[i].test_accuracy for i in picks),
                         "random pick": statistics.mean(r.students[i].test_accuracy for i in allowed),
                         "largest": r.students[largest].test_accuracy,
                         "best possible": max(r.students[i].test_accuracy for i in allowed)})
        return rows

    def _timing(self, predictor: Any, task: SearchTask, n: int, settings: MetaDatasetSettings) -> dict[str, Any]:
        predictor.config = predictor.config.model_copy(update={"num_candidates": n, "distil_epochs": settings.distil.epochs})
        started = time.perf_counter()
        candidates = predictor.candidates(task)
        predictor.predict(candidates, task)
        score_seconds = time.perf_counter() - started
        middle = sorted(candidates, key=lambda cand: cand.num_params)[len(candidates) // 2]
        started = time.perf_counter()
        predictor.distil(middle, task)
        distil_seconds = time.perf_counter() - started
        return {"candidates": len(candidates), "score_seconds": score_seconds, "distil_seconds": distil_seconds,
                "ratio": score_seconds / distil_seconds}

    def _plot_bars(self, rows: list[dict[str, Any]], out_dir: Path) -> Path:
        fig, ax = new_figure(figsize=(6, 3.2))
        ax.bar([r["predictor"] for r in rows], [r["mean spearman"] for r in rows], color=["C3" if r["predictor"] == "dass" else "C0" for r in rows])
        ax.set_ylabel("mean Spearman on unseen tasks")
        ax.axhline(0, color="k", lw=0.5)
        ax.tick_params(axis="x", rotation=45)
        return save_figure(fig, out_dir / "spearman.png")

    def _plot_scatter(self, scores: dict[str, list[torch.Tensor]], unseen: list[TaskRecord], out_dir: Path) -> Path:
        fig, axes = new_figure(1, len(unseen), figsize=(3.2 * len(unseen), 3), squeeze=False)
        for ax, r in zip(axes[0], unseen):
            ax.scatter(scores[r.name][0].numpy(), [s.val_accuracy for s in r.students], s=12)
            ax.set_title(r.name)
            ax.set_xlabel("DaSS prediction")
            ax.set_ylabel("distilled accuracy")
        return save_figure(fig, out_dir / "dass-predicted-vs-actual.png")
