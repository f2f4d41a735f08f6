"""The benchmark in quick mode, and `oral6 adapt` end to end with the plugin's adapter and datasets."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from oral6_core.bench import run_benchmark

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def test_benchmark_quick_mode_writes_its_files_and_rows(tmp_path: Path) -> None:
    result = run_benchmark("beta-digits", tmp_path, quick=True)
    for path in result.files:
        assert path.is_file() and path.stat().st_size > 0
    assert {p.name for p in result.files} >= {"results.json", "results.md", "accuracy.png", "division.png"}
    methods = {(r["pair"], r["method"]) for r in result.rows if r["table"] == "accuracy"}
    assert len(methods) == 8
    assert len([r for r in result.rows if r["table"] == "division"]) == 2
    assert len([r for r in result.rows if r["table"] == "cost"]) == 5, "four adapters and their total, server vs in-process"
    assert "beta" in result.markdown and len(result.claims) == 10
    assert result.claims["the server and the in-process box give the same adapted accuracy"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["quick"] is True and len(saved["rows"]) == len(result.rows)


def test_cli_adapt_runs_beta_from_printed_to_handwritten_digits(tmp_path: Path) -> None:
    from oral6_core.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "adapt", "--adapter", "beta", "--source", "printed-digits", "--target", "digits", "--model", "mlp",
        "--source-epochs", "2", "--device", "cpu", "--set", "source.per_class=20", "--set", "adapter.epochs=1",
        "--set", "adapter.bottleneck_dim=16", "--set", "adapter.finetune_epochs=1", "--out", str(out),
    ])
    text = " ".join(ANSI.sub("", result.output).split())
    assert result.exit_code == 0, text
    report = json.loads((out / "adapt.json").read_text())
    assert report["adapter"] == "beta" and report["black_box_queries"] == 1168
    assert 0.0 <= report["adapted_accuracy_on_target"] <= 1.0
    assert "queries" in text.lower()


def test_cli_adapt_rejects_an_unknown_adapter_option() -> None:
    from oral6_core.cli import app

    result = CliRunner().invoke(app, ["adapt", "--adapter", "beta", "--source", "printed-digits", "--target", "digits",
                                      "--set", "adapter.tau=2"])
    text = " ".join(ANSI.sub("", result.output).split())
    assert result.exit_code == 2 and "adapter.tau" in text
