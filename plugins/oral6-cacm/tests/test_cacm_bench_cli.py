"""Quick benchmark runs and the command line: training through the core loop and `oral6 cacm plan`."""

import json
import re

import pytest
from typer.testing import CliRunner

from oral6_core.bench import run_benchmark

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.filterwarnings("ignore:.*constant inside each training environment")
@pytest.mark.parametrize("name", ["cacm-multiattr", "cacm-synthetic"])
def test_benchmark_quick_run_writes_its_files(name, tmp_path):
    result = run_benchmark(name, tmp_path, quick=True)
    assert all(p.is_file() for p in result.files)
    assert any(p.suffix == ".png" for p in result.files)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] and len(saved["rows"]) == len(result.rows)
    assert all(0 <= v <= 1 for row in result.rows for k, vals in row.items() if k.startswith("_") for v in vals)
    assert "|" in (tmp_path / "results.md").read_text()


@pytest.mark.filterwarnings("ignore:.*constant inside each training environment")
def test_cli_trains_cacm_on_multiattr_digits_and_plans(tmp_path):
    from oral6_core.cli import app

    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--regularizer", "cacm", "--dataset", "multiattr-digits", "--optimizer", "adam",
                                 "--epochs", "1", "--set", "train.progress=false", "--set", "dataset.variant=colour",
                                 "--out", str(out)])
    assert result.exit_code == 0, ANSI.sub("", result.output)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["regularizer"] == "cacm" and 0 <= summary["final"]["test_accuracy"] <= 1
    plan = runner.invoke(app, ["cacm", "plan", "--dataset", "multiattr-digits"])
    text = ANSI.sub("", plan.output)
    assert plan.exit_code == 0 and "colour | Y, E" in text and "g(x) ⊥ rotation" in text
    bad = runner.invoke(app, ["cacm", "plan", "--set", "regularizer.attribute_types={\"texture\": \"causal\"}"])
    assert bad.exit_code == 2 and "no attribute 'texture'" in ANSI.sub("", bad.output)
