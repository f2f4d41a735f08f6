"""Benchmark ``dass-unseen``: rank correlation on held-out tasks beside their noise ceilings, the pick
under a budget, encoder ablations, and the search cost.

Nothing is tuned on the unseen (test) tasks: the meta-learned predictors are meta-trained on the
training tasks and select their checkpoint on the validation tasks, and the "best proxy" whose
pick is compared is the proxy with the best mean Spearman on the training and validation tasks.
"""

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

from .candidates import StudentCandidate
from .meta import rank_correlations
from .metadata import TaskRecord, load_meta_dataset
from .network import DaSSResNet
from .predictor import DaSSPredictor
from .tasks import load_task, task_family

REFERENCE = "training-task mean (reference)"
BASELINES = ("params", "flops", "synflow", "snip", "grad-norm", "naswot")
META_PREDICTORS: dict[str, tuple[str, dict[str, Any]]] = {
    "dass": ("dass", {}),
    "dass-no-func": ("dass-no-func", {}),
}
ABLATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "dass w/o teacher enc": ("dass", {"encoders": ["student", "arch"]}),
    "dass w/o arch enc": ("dass", {"encoders": ["student", "teacher"]}),
    "dass w/o adaptation": ("dass", {"adapt": False}),
}


class DaSSUnseenConfig(ComponentConfig):
    meta: str | None = Field(None, description="Meta-dataset export or build folder (default: the one shipped with the plugin).")
    episodes: int | None = Field(None, ge=1, description="Meta-training episodes (default: the predictor's).")
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="Seeds of meta-training and of the proxies' initialisations.")
    ablations: bool = Field(True, description="Also meta-train DaSS without each encoder part and without adaptation.")
    timing_candidates: int = Field(1000, ge=1, description="Candidates scored in the timing comparison.")
    threads: int = Field(1, ge=1, description="torch CPU threads.")


def _space_task(record: TaskRecord, space: Any) -> SearchTask:
    """The task's data with an untrained teacher of the space: what the training-free proxies read (they ignore the teacher)."""
    bundle = load_task(record.name)
    return SearchTask(bundle, DaSSResNet(space, space.teacher, bundle.num_classes).eval(), record.teacher_accuracy)


class DaSSUnseen(Benchmark):
    """DaSS vs params/FLOPs/zero-cost proxies/no-functional ablation: Spearman of distilled accuracy on unseen tasks."""

    name = "dass-unseen"
    Config = DaSSUnseenConfig
    readme = Path(__file__).parents[2] / "README.md"

    def run(self, out_dir: Path, quick: bool = False) -> BenchResult:
        threads = torch.get_num_threads()
        torch.set_num_threads(self.config.threads)
        try:
            return self._run(out_dir, quick)
        finally:
            torch.set_num_threads(threads)

    def _run(self, out_dir: Path, quick: bool) -> BenchResult:
        c = self.config
        settings, records = load_meta_dataset(Path(c.meta) if c.meta else None)
        space = settings.space()
        if quick:  # seconds: few episodes, one seed, a few students per task
            records = [TaskRecord(r.name, r.split, r.num_classes, r.teacher_accuracy, r.teacher_features, r.students[:8]) for r in records]
        seeds = c.seeds[:1] if quick else c.seeds
        episodes = 5 if quick else c.episodes
        variants = {**META_PREDICTORS, **(ABLATIONS if c.ablations and not quick else {})}
        started = time.perf_counter()
        trained = {name: [self._meta_train(base, opts, (settings, records), episodes, s) for s in seeds]
                   for name, (base, opts) in variants.items()}
        meta_seconds = (time.perf_counter() - started) / max(1, len(seeds) * len(variants))
        unseen = [r for r in records if r.split == "test"]
        seen = [r for r in records if r.split != "test"]

        scores: dict[str, dict[str, list[torch.Tensor]]] = {name: {} for name in [*variants, *BASELINES]}
        for r in unseen:
            for name, models in trained.items():
                encoded = models[0].encode(r, space)
                scores[name][r.name] = [m.learner.adapted_predict(encoded) for m in models]
        proxy_seen: dict[str, list[float]] = {name: [] for name in BASELINES}
        for r in [*unseen, *([] if quick else seen)]:
            task = _space_task(r, space)
            cands = [StudentCandidate(space, s.arch, r.num_classes, tuple(task.bundle.input_shape[1:3])) for s in r.students]
            for name in BASELINES:
                used = seeds if r.split == "test" else seeds[:1]  # seen tasks only choose the best proxy
                runs = [registry.create("predictor", name, {"seed": s}).predict(cands, task).cpu() for s in used]
                if r.split == "test":
                    scores[name][r.name] = runs
                else:
                    proxy_seen[name].append(statistics.mean(rank_correlations(x, r.labels)[0] for x in runs))

        corr_rows = self._correlations(scores, unseen, [r for r in records if r.split == "train"])
        best_proxy = max(BASELINES, key=lambda n: statistics.mean(proxy_seen[n]) if proxy_seen[n] else 0.0)
        pick_rows = self._picks(scores, unseen, best_proxy)
        timing = self._timing(trained["dass"][0], unseen[0], space, 20 if quick else c.timing_candidates)
        files = [self._plot_bars(corr_rows, unseen, out_dir), self._plot_scatter(scores["dass"], unseen, out_dir)]

        by_name = {r["predictor"]: r for r in corr_rows}
        fit_rows = self._fit_vs_transfer(trained, seen, space, by_name)
        proxies_best = max(by_name[n]["mean spearman"] for n in BASELINES)
        mean_pick = {k: statistics.mean(r[k] for r in pick_rows) for k in ("dass pick", "random pick", "largest", "best-proxy pick")}
        improved = {name: sum(m.history.improved for m in models) for name, models in trained.items()}
        claims = {
            "DaSS ranks students on unseen tasks better (mean Spearman) than every size proxy and zero-cost proxy":
                by_name["dass"]["mean spearman"] > proxies_best,
            "DaSS ranks students on unseen tasks better than its ablation without functional encodings (dass-no-func)":
                by_name["dass"]["mean spearman"] > by_name["dass-no-func"]["mean spearman"],
            "DaSS's pick distils to a higher test accuracy than a random pick under the budget": mean_pick["dass pick"] > mean_pick["random pick"],
            "DaSS's pick distils to a higher test accuracy than the largest student under the budget": mean_pick["dass pick"] > mean_pick["largest"],
            "DaSS's pick distils to a higher test accuracy than the best proxy's pick": mean_pick["dass pick"] > mean_pick["best-proxy pick"],
        }
        ceilings = ", ".join(f"{r.name} {r.ceiling:.2f}" for r in unseen if r.ceiling is not None)
        seen_families = {task_family(r.name) for r in seen}
        related = [r.name for r in unseen if task_family(r.name) in seen_families]
        families = (f"unseen tasks with a relative (same family) among the training or validation tasks: {', '.join(related)}" if related
                    else "no unseen task has a relative (same family) among the training or validation tasks")
        size = (f"Meta-dataset: {len(records)} tasks ({len(settings.train_tasks)} train, {len(settings.val_tasks)} validation, "
                f"{len(unseen)} unseen: {', '.join(r.name for r in unseen)}; {families}), {len(records[0].students)} students each, "
                f"distilled {settings.repeats}× ({settings.distil.epochs} epochs, {settings.distil.schedule} learning rate); labels are the "
                f"mean of the repeats; noise ceiling (Spearman between two distillations): {ceilings or 'n/a'}.")
        meta_line = (f"Meta-training: {episodes or 'default'} episodes, {meta_seconds:.1f}s per run; runs whose kept checkpoint beat the "
                     f"untrained network on the validation tasks: " + ", ".join(f"{n} {k}/{len(seeds)}" for n, k in improved.items()) + ".")
        timing_line = (f"Search cost: scoring {timing['candidates']} candidates with DaSS took {timing['score_seconds']:.2f}s; "
                       f"distilling one student took {timing['distil_seconds']:.2f}s "
                       f"(scoring {timing['candidates']} = {timing['ratio']:.2f}× one distillation).")
        columns = ["predictor", *[r.name for r in unseen], "mean spearman", "sd over seeds", "mean pearson"]
        markdown = (f"Spearman (ρ) between each predictor's scores and the distilled accuracies of the unseen tasks' students, mean over "
                    f"seeds {seeds} (meta-training "
                    f"seeds; initialisation seeds of the zero-cost proxies); the first row is the noise ceiling; the second "
                    f"is not a predictor but a reference: the Spearman of each unseen task's labels with the same students' mean "
                    f"accuracy over the training tasks (how far one task-independent ranking of these students goes).\n\n"
                    + markdown_table(corr_rows, columns)
                    + "\nFit against transfer: mean Spearman of each meta-trained predictor on the tasks it was trained on, on the "
                    "validation task that selected its checkpoint, and on the unseen tasks (mean over the same seeds).\n\n"
                    + markdown_table(fit_rows)
                    + f"\nTest accuracy (mean of the repeats) of the student each method picks under a budget of the median student "
                    f"size; random is the expectation over the students under the budget; the best proxy ({best_proxy}) is the one "
                    f"with the best mean Spearman on the training and validation tasks.\n\n" + markdown_table(pick_rows)
                    + f"\n{meta_line}\n\n{timing_line}\n\n{size}\n")
        rows: list[dict[str, Any]] = ([{"table": "correlation", **r} for r in corr_rows] + [{"table": "fit", **r} for r in fit_rows]
                                      + [{"table": "pick", **r} for r in pick_rows]
                                      + [{"table": "timing", **timing}])
        return BenchResult(rows, markdown, files, claims)

    def _meta_train(self, base: str, options: dict[str, Any], meta: Any, episodes: int | None, seed: int) -> DaSSPredictor:
        predictor = registry.create("predictor", base, {**options, "seed": seed, **({"episodes": episodes} if episodes else {})})
        assert isinstance(predictor, DaSSPredictor)
        predictor.fit(meta)
        return predictor

    def _correlations(self, scores: dict[str, dict[str, list[torch.Tensor]]], unseen: list[TaskRecord],
                      train: list[TaskRecord]) -> list[dict[str, Any]]:
        """The noise ceiling, the reference ranking of the training tasks, then one row per predictor."""
        ceiling: dict[str, Any] = {"predictor": "noise ceiling"}
        for r in unseen:
            ceiling[r.name] = "-" if r.ceiling is None else r.ceiling
        known = [v for v in ceiling.values() if isinstance(v, float)]
        ceiling.update({"mean spearman": statistics.mean(known) if known else None, "sd over seeds": "-", "mean pearson": "-"})
        # The same students' mean accuracy over the training tasks: how far one task-independent ranking goes.
        train_mean = torch.stack([t.labels for t in train]).mean(0)
        reference: dict[str, Any] = {"predictor": REFERENCE, **{r.name: rank_correlations(train_mean, r.labels)[0] for r in unseen}}
        reference.update({"mean spearman": statistics.mean(reference[r.name] for r in unseen), "sd over seeds": "-",
                          "mean pearson": statistics.mean(rank_correlations(train_mean, r.labels)[1] for r in unseen)})
        rows = [ceiling, reference]
        for name, per_task in scores.items():
            row: dict[str, Any] = {"predictor": name}
            per_seed = [[rank_correlations(per_task[r.name][i], r.labels)[0] for r in unseen] for i in range(len(per_task[unseen[0].name]))]
            for j, r in enumerate(unseen):
                row[r.name] = statistics.mean(s[j] for s in per_seed)
            means = [statistics.mean(s) for s in per_seed]
            row["mean spearman"] = statistics.mean(means)
            row["sd over seeds"] = statistics.stdev(means) if len(means) > 1 else 0.0
            row["mean pearson"] = statistics.mean(rank_correlations(x, r.labels)[1] for r in unseen for x in per_task[r.name])
            rows.append(row)
        return rows

    def _fit_vs_transfer(self, trained: dict[str, list[DaSSPredictor]], seen: list[TaskRecord], space: Any,
                         by_name: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Each meta-trained predictor's mean Spearman on its training tasks, its validation tasks and the unseen tasks."""
        def mean_spearman(models: list[DaSSPredictor], split: str) -> float | str:
            tasks = [r for r in seen if r.split == split]
            if not tasks:
                return "-"
            return statistics.mean(rank_correlations(m.learner.adapted_predict(m.encode(r, space)), r.labels)[0]
                                   for m in models for r in tasks)

        return [{"predictor": name, "training tasks": mean_spearman(models, "train"), "validation tasks": mean_spearman(models, "val"),
                 "unseen tasks": by_name[name]["mean spearman"]} for name, models in trained.items()]

    def _picks(self, scores: dict[str, dict[str, list[torch.Tensor]]], unseen: list[TaskRecord], best_proxy: str) -> list[dict[str, Any]]:
        rows = []
        for r in unseen:
            budget = statistics.median(s.num_params for s in r.students)
            allowed = [i for i, s in enumerate(r.students) if s.num_params <= budget]

            def pick(name: str) -> float:
                return statistics.mean(r.students[max(allowed, key=lambda i: float(sc[i]))].test_accuracy for sc in scores[name][r.name])

            largest = max(allowed, key=lambda i: r.students[i].num_params)
            rows.append({"task": r.name, "budget params": int(budget), "dass pick": pick("dass"), "dass-no-func pick": pick("dass-no-func"),
                         "best-proxy pick": pick(best_proxy), "random pick": statistics.mean(r.students[i].test_accuracy for i in allowed),
                         "largest": r.students[largest].test_accuracy, "best possible": max(r.students[i].test_accuracy for i in allowed)})
        return rows

    def _timing(self, predictor: DaSSPredictor, record: TaskRecord, space: Any, n: int) -> dict[str, Any]:
        """Scoring ``n`` candidates (remapping and encoding included) vs distilling one, with a fresh teacher of the space."""
        task = _space_task(record, space)
        predictor.config = predictor.config.model_copy(update={"num_candidates": n})
        started = time.perf_counter()
        candidates = predictor.candidates(task)
        stats, predictor.teacher_stats = predictor.teacher_stats, None  # this teacher is untrained: no warnings
        predictor.predict(candidates, task)
        predictor.teacher_stats = stats
        score_seconds = time.perf_counter() - started
        middle = sorted(candidates, key=lambda cand: cand.num_params)[len(candidates) // 2]
        started = time.perf_counter()
        predictor.distil(middle, task)
        distil_seconds = time.perf_counter() - started
        return {"candidates": len(candidates), "score_seconds": score_seconds, "distil_seconds": distil_seconds,
                "ratio": score_seconds / distil_seconds}

    def _plot_bars(self, rows: list[dict[str, Any]], unseen: list[TaskRecord], out_dir: Path) -> Path:
        fig, ax = new_figure(figsize=(7, 3.4))
        shown = [r for r in rows if r["predictor"] not in ("noise ceiling", REFERENCE)]
        ax.bar([r["predictor"] for r in shown], [r["mean spearman"] for r in shown], yerr=[r["sd over seeds"] for r in shown],
               color=["C3" if r["predictor"].startswith("dass") else "C0" for r in shown])
        ceiling = rows[0]["mean spearman"]
        if ceiling is not None:
            ax.axhline(ceiling, color="k", ls="--", lw=1, label="noise ceiling")
        ax.axhline(rows[1]["mean spearman"], color="C2", ls=":", lw=1.5, label="training tasks' mean accuracy (same students)")
        ax.legend(fontsize=7)
        ax.set_ylabel("mean Spearman on unseen tasks")
        ax.axhline(0, color="k", lw=0.5)
        ax.tick_params(axis="x", rotation=60)
        return save_figure(fig, out_dir / "spearman.png")

    def _plot_scatter(self, scores: dict[str, list[torch.Tensor]], unseen: list[TaskRecord], out_dir: Path) -> Path:
        fig, axes = new_figure(1, len(unseen), figsize=(3.2 * len(unseen), 3), squeeze=False)
        for ax, r in zip(axes[0], unseen):
            ax.scatter(scores[r.name][0].numpy(), r.labels.numpy(), s=12)
            ax.set_title(r.name)
            ax.set_xlabel("DaSS score")
            ax.set_ylabel("distilled accuracy")
        return save_figure(fig, out_dir / "dass-score-vs-accuracy.png")
