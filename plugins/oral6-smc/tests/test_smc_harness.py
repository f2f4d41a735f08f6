"""The harness's on-disk cache: dense models and finished runs are reused only under the same settings."""

from __future__ import annotations

from oral6_smc import harness
from oral6_smc.benchmarks import shrink_task
from oral6_smc.harness import GridSettings, method_by_label, run_grid
from oral6_smc.tasks import easy_task


def test_cached_runs_are_reused_only_with_the_same_settings(tmp_path, monkeypatch):
    trainings = []
    real_fit = harness.fit
    monkeypatch.setattr(harness, "fit", lambda *a, **k: trainings.append(1) or real_fit(*a, **k))
    task = shrink_task(easy_task(), 64)
    methods = [method_by_label("omp-after")]

    def grid(epochs: int, retrain: int) -> tuple[dict, int]:
        trainings.clear()
        results = run_grid(task, methods, [0.5], GridSettings(epochs, retrain, (0,)), cache=tmp_path / "cache")
        return results, len(trainings)

    first, trained = grid(1, 1)
    assert trained == 2  # the dense model, then omp-after
    again, trained = grid(1, 1)
    assert trained == 0 and again["rows"] == first["rows"] and again["dense"] == first["dense"]
    assert grid(1, 2)[1] == 1  # other retraining: the dense model comes from the cache
    assert grid(2, 1)[1] == 2  # other dense training: both anew
