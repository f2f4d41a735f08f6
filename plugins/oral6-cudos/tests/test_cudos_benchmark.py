"""The cudos-stream benchmark runs end to end in quick mode and reports its files, rows and claims."""

from __future__ import annotations

from oral6_core.bench import run_benchmark


def test_cudos_stream_benchmark_quick(tmp_path):
    result = run_benchmark("cudos-stream", tmp_path, quick=True)
    assert all(path.is_file() for path in result.files)
    assert (tmp_path / "cudos-stream.png").is_file() and (tmp_path / "results.json").is_file()
    assert (tmp_path / "cudos" / "env2-som.png") in result.files and (tmp_path / "beta-vae" / "env2-traversals.png") in result.files
    assert [row["model"] for row in result.rows] == ["cudos", "beta-vae", "beta-vae-replay"]
    assert all(not key.startswith("_") for row in result.rows for key in row)
    assert len(result.claims) == 5 and "final MIG" in result.markdown
    assert result.rows[0]["active dims per env"].count("/") == 1  # quick mode: the first two environments
