"""Help that tells: the training loop's options, the choices of Literal options, 80-column tables, quick verdicts."""

import io
import json
import re
from typing import Literal, Optional

import pytest
from rich.console import Console

from oral6_core import cli as cli_module
from oral6_core.bench import QUICK_VERDICT, run_benchmark
from oral6_core.errors import ConfigError


def test_show_train_lists_the_loop_options_with_defaults_and_choices(cli):
    code, out = cli("show", "train")
    assert code == 0, out
    for text in ("lr_schedule", "'constant' | 'cosine'", "grad_clip", "float | None", "--set train.OPTION=VALUE"):
        assert text in out
    code, out = cli("show", "train", "--json")
    rows = {r["option"]: r for r in json.loads(out)["options"]}
    assert rows["device"]["choices"] == ["auto", "cpu", "cuda"] and rows["epochs"]["default"] == 10
    assert rows["lr_schedule"]["description"] == "Learning-rate schedule over all steps."
    code, out = cli("show", "optimizer")
    assert code == 2 and "Name the optimizer" in out


def test_train_help_lists_the_loop_options(cli):
    code, out = cli("train", "--help")
    assert code == 0
    assert "train.lr_schedule ('constant' | 'cosine', default 'constant'): Learning-rate schedule" in out
    assert "train.eval_batch_size (int, default 512)" in out


@pytest.mark.parametrize("annotation, text", [
    (Literal["a", "b"], "'a' | 'b'"), (Optional[Literal[1, 2]], "1 | 2 | None"), (list[int], "list[int]"), (float, "float"),
])
def test_type_names_show_every_choice(annotation, text):
    assert cli_module.type_name(annotation) == text


@pytest.fixture
def narrow(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(cli_module, "console", Console(file=buffer, width=80))
    return buffer


def test_tables_fit_80_columns_without_cutting_headers(cli, narrow, tmp_path):
    code, _ = cli("train", "--epochs", "1", "--no-progress", "--out", tmp_path / "run")
    assert code == 0
    cli_module.print_markdown("Intro *text*.\n\n| model | hand-written ms/step | logging+checkpoint ms/epoch | a_long_column_name | b | c |\n"
                              "|---|---|---|---|---|---|\n| mlp | 0.315 | 3.213 | 1 | 2 | 3 |\n\nAfter.")
    text = narrow.getvalue()
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "…" not in text and "test" in text and "accuracy" in text and "Intro" in text and "After." in text
    assert "logging+checkpo" in text and "0.315" in text


def test_quick_benchmarks_state_no_verdicts(cli, tmp_path):
    code, out = cli("bench", "run", "core-overhead", "--quick", "--out", tmp_path / "q")
    assert code == 0, out
    assert f"{QUICK_VERDICT}:" in out and "held" not in out
    assert "held" not in (tmp_path / "q" / "results.md").read_text()
    with pytest.raises(ConfigError, match="--update-readme needs a full run"):
        run_benchmark("core-overhead", tmp_path / "q2", quick=True, update_readme_file=True)
    assert not (tmp_path / "q2").exists()


def test_unevaluated_replaces_only_the_claims_verdicts():
    from oral6_core.bench import unevaluated

    text = "- A beats B: held\n- C beats D: did not hold\nthe threshold held steady\n"
    assert unevaluated(text, {"A beats B": True, "C beats D": False}) == (
        f"- A beats B: {QUICK_VERDICT}\n- C beats D: {QUICK_VERDICT}\nthe threshold held steady\n")
    assert re.search("held", unevaluated(text, {}))
