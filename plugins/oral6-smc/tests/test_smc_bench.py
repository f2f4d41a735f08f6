"""Every SMC benchmark runs in quick mode and reports files and rows that exist."""

from __future__ import annotations

import json

import pytest

from oral6_core.bench import run_benchmark


@pytest.mark.parametrize("name", ["smc-easy", "smc-hard", "smc-sparse-export", "smc-mask-speed"])
def test_quick_benchmark_writes_its_files_and_rows(name, tmp_path):
    result = run_benchmark(name, tmp_path, quick=True)
    assert result.rows and result.claims
    assert all(path.is_file() and path.stat().st_size > 0 for path in result.files)
    assert any(path.suffix == ".png" for path in result.files)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["rows"]) == len(result.rows)
    assert result.markdown.count("|") > 4
    if name in ("smc-easy", "smc-hard"):
        runs = json.loads((tmp_path / f"{name}-runs.json").read_text())
        assert {r["method"] for r in runs["rows"]} == {r["method"] for r in result.rows}
        for row in runs["rows"]:
            assert row["measured_sparsity"] >= row["sparsity"] - 1e-3
            assert 0 <= row["accuracy"] <= 1
