"""End to end: build a tiny meta-dataset (resumable), meta-train, search under a budget, benchmark."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from typer.testing import CliRunner

from oral6_core.bench import run_benchmark
from oral6_core.config import RunConfig, TrainConfig
from oral6_core.errors import CheckpointError, ConfigError
from oral6_core.training import train
from oral6_core.workflows import search
from oral6_dass.benchmark import REFERENCE
from oral6_dass.meta import rank_correlations
from oral6_dass.metadata import EXPORT_NAME, MetaDatasetSettings, build_meta_dataset, load_meta_dataset

ANSI = re.compile(r"\x1b\[[0-9;]*m")


TINY = {"train_tasks": ["digits-0to4"], "val_tasks": ["digits-5to9"], "test_tasks": ["digits-even"], "students_per_task": 4,
        "teacher_widths": [8, 8], "teacher_depths": [2, 1], "teacher_epochs": 1, "distil": {"epochs": 1}}


def _cli(*args: str):
    from oral6_core.cli import app

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(ANSI.sub("", result.output).split())


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    run = RunConfig(model="dass-resnet", dataset="digits", optimizer="adam", options={"model": {"widths": [8, 8], "depths": [2, 1]}},
                    train=TrainConfig(epochs=1, progress=False), out=out)
    train(run)
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def meta_dir(tmp_path_factory):
    """A tiny meta-dataset built through `oral6 dass build-meta`."""
    out = tmp_path_factory.mktemp("meta") / "meta"
    sets = [a for k, v in TINY.items() for a in ("--set", f"meta.{k}={json.dumps(v)}")]
    code, text = _cli("dass", "build-meta", "--out", str(out), "--no-progress", "--device", "cpu", *sets)
    assert code == 0, text
    assert "3 tasks × 4 students × 2 distillations" in text and "ceiling" in text
    return out


def test_build_is_resumable_extensible_and_reports_ceilings(tmp_path, meta_dir):
    root = tmp_path / "copy"
    shutil.copytree(meta_dir, root)
    settings = MetaDatasetSettings(**TINY)
    kept = root / "digits-0to4" / "students" / "0000-0.json"
    lost = root / "digits-5to9" / "students" / "0002-1.json"
    stamp, row = kept.stat().st_mtime_ns, json.loads(kept.read_text())
    lost.unlink()
    (root / EXPORT_NAME).unlink()
    with pytest.raises(CheckpointError, match="unfinished"):
        load_meta_dataset(root)
    build_meta_dataset(root, settings, progress=False)
    assert kept.stat().st_mtime_ns == stamp and lost.is_file()
    _, records = load_meta_dataset(root / EXPORT_NAME)
    assert [r.name for r in records] == ["digits-0to4", "digits-5to9", "digits-even"] and all(len(r.students) == 4 for r in records)
    first = records[0].students[0]
    assert first.val_accuracies[0] == row["val_accuracy"] and len(first.val_accuracies) == 2
    assert first.features.shape == records[0].teacher_features.shape
    report = json.loads((root / EXPORT_NAME).read_text())["report"]
    for line, record in zip(report["tasks"], records):
        a, b = (torch.tensor([s.val_accuracies[i] for s in record.students]) for i in (0, 1))
        assert line["noise ceiling"] == pytest.approx(rank_correlations(a, b)[0])
    build_meta_dataset(root, MetaDatasetSettings(**{**TINY, "students_per_task": 5}), progress=False)  # extends
    assert kept.stat().st_mtime_ns == stamp and (root / "digits-even" / "students" / "0004-1.json").is_file()
    _, more = load_meta_dataset(root)
    assert [s.arch for s in more[0].students[:4]] == [s.arch for s in records[0].students]
    with pytest.raises(ConfigError, match="teacher_epochs differ"):
        build_meta_dataset(root, MetaDatasetSettings(**{**TINY, "teacher_epochs": 2}), progress=False)


def test_shipped_meta_dataset_has_reliable_labels_on_held_out_tasks():
    settings, records = load_meta_dataset()
    assert settings.repeats >= 2 and len(records) == len(settings.splits())
    held_out = [r for r in records if r.split != "train"]
    assert held_out and all(r.ceiling >= 0.8 for r in held_out)
    agreement = [rank_correlations(a.labels, b.labels)[0] for a in records for b in records if a is not b]
    assert min(agreement) < 0.8  # the tasks do not all rank the students the same way


def test_search_honours_the_budget(teacher_ckpt):
    budget = 6000
    report = search("params", "digits", teacher_ckpt, budget, None, 5, False, 0, "cpu", {"predictor": {"num_candidates": 40}})
    assert report["top"] and all(row["parameters"] <= budget for row in report["top"])
    scores = [row["score"] for row in report["top"]]
    assert scores == sorted(scores, reverse=True) and scores[0] <= budget
    with pytest.raises(ConfigError, match="No candidate fits"):
        search("params", "digits", teacher_ckpt, 10, None, 5, False, 0, "cpu", {"predictor": {"num_candidates": 5}})


def test_cli_meta_train_then_search_and_distil(tmp_path, meta_dir, teacher_ckpt):
    code, out = _cli("dass", "meta-train", "--meta", str(meta_dir), "--out", str(tmp_path / "dass.pt"),
                     "--device", "cpu", "--set", "predictor.episodes=3", "--set", "predictor.min_val_ceiling=-1")
    assert code == 0, out
    assert ("Best selection Spearman" in out or "no meta-training checkpoint beat the untrained" in out) and (tmp_path / "dass.pt").is_file()
    assert "unseen task digits-even: Spearman" in out and "noise ceiling" in out
    code, out = _cli("search", "--predictor", "dass", "--dataset", "digits", "--teacher", str(teacher_ckpt), "--budget-params", "5000",
                     "--predictor-checkpoint", str(tmp_path / "dass.pt"), "--top-k", "2", "--device", "cpu", "--distil",
                     "--out", str(tmp_path / "search"), "--set", "predictor.num_candidates=50", "--set", "predictor.distil_epochs=1")
    assert code == 0, out
    assert "Top 2 of" in out and "d=" in out and "distilled d=" in out
    assert (tmp_path / "search" / "checkpoint.pt").is_file() and (tmp_path / "search" / "search.json").is_file()
    sizes = [int(n.replace(",", "")) for n in re.findall(r"│\s+([\d,]+)\s+│\s+-?[\d.]+\s+│", out)]
    assert sizes and all(s <= 5000 for s in sizes)


def test_cli_meta_predictor_without_checkpoint_says_how_to_make_one(teacher_ckpt):
    code, out = _cli("search", "--predictor", "dass", "--dataset", "digits", "--teacher", str(teacher_ckpt), "--device", "cpu")
    assert code == 2
    assert "oral6 dass meta-train" in out


def test_benchmark_quick(tmp_path, meta_dir):
    result = run_benchmark("dass-unseen", tmp_path, quick=True, options={"meta": str(meta_dir / EXPORT_NAME)})
    assert all(f.is_file() for f in result.files)
    names = {r["predictor"] for r in result.rows if r["table"] == "correlation"}
    assert names == {"noise ceiling", REFERENCE, "dass", "dass-no-func", "params", "flops", "synflow", "snip", "grad-norm", "naswot"}
    assert any(r["table"] == "pick" for r in result.rows) and any(r["table"] == "timing" for r in result.rows)
    fit = {r["predictor"]: r for r in result.rows if r["table"] == "fit"}
    assert set(fit) == {"dass", "dass-no-func"} and all(-1 <= r["training tasks"] <= 1 for r in fit.values())
    assert fit["dass"]["unseen tasks"] == next(r["mean spearman"] for r in result.rows if r.get("predictor") == "dass")
    assert len(result.claims) == 5 and "digits-even" in result.markdown and "noise ceiling" in result.markdown
