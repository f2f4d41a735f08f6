"""End to end through the command line: `oral6 train --pruner gmp` and `oral6 smc run`."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from oral6_core.cli import app

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result, ANSI.sub("", result.output)


def test_train_with_gmp_reaches_the_sparsity_and_resumes(tmp_path):
    args = ["train", "--model", "mlp", "--pruner", "gmp", "--set", "pruner.sparsity=0.8", "--set", "pruner.update_every=2",
            "--epochs", "2", "--out", str(tmp_path), "--device", "cpu"]
    result, text = run(*args)
    assert result.exit_code == 0, text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert abs(summary["sparsity"]["overall"] - 0.8) < 1e-3 and "body.1.weight" in summary["sparsity"]
    result, text = run(*[a if a != "2" else "3" for a in args[:-4]], "--device", "cpu", "--resume", str(tmp_path))
    assert result.exit_code == 0, text
    assert abs(json.loads((tmp_path / "summary.json").read_text())["sparsity"]["overall"] - 0.8) < 1e-3
    result, text = run("smc", "export", str(tmp_path / "checkpoint.pt"), "--out", str(tmp_path / "csr.pt"), "--min-sparsity", "0.5")
    assert result.exit_code == 0, text
    assert "body.1: csr" in text and "head: dense" in text and (tmp_path / "csr.pt").is_file()
    result, text = run("smc", "export", str(tmp_path / "checkpoint.pt"), "--out", str(tmp_path / "none.pt"), "--min-sparsity", "0.95")
    assert result.exit_code == 2 and "Nothing could be exported" in text and not (tmp_path / "none.pt").exists()


def test_bad_pruner_options_exit_with_a_clear_message():
    result, text = run("train", "--pruner", "gmp", "--set", "pruner.sparsity=1.5", "--epochs", "1")
    assert result.exit_code == 2 and "pruner.sparsity" in text
    result, text = run("train", "--pruner", "omp", "--set", "pruner.exclude=[\"nothing.*\"]", "--epochs", "1", "--device", "cpu")
    assert result.exit_code == 2 and "matches no parameter" in text


def test_smc_run_writes_table_figure_and_json(tmp_path):
    result, text = run("smc", "run", "--task", "easy", "--method", "omp-after", "--pruner", "random", "--k", "3",
                       "--epochs", "1", "--retrain-epochs", "1", "--out", str(tmp_path))
    assert result.exit_code == 0, text
    assert "omp-after" in text and "random" in text
    for name in ("smc-easy-runs.json", "smc-easy.png", "smc-easy.md"):
        assert (tmp_path / name).is_file()
    rows = json.loads((tmp_path / "smc-easy-runs.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"omp-after", "random"} and all(r["sparsity"] == 0.488 for r in rows)
    result, text = run("smc", "run", "--task", "medium")
    assert result.exit_code == 2 and "easy, hard" in text
