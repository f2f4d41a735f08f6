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
from oral6_dass.metadata import MetaDatasetSettings, build_meta_dataset, load_meta_dataset

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
TINY = {"train_tasks": ["digits-0to4"], "val_tasks": ["shapes-4"], "test_tasks": [], "students_per_task": 3,
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
    assert "2 tasks × 3 students" in text
    return out


def test_build_is_resumable_and_keeps_finished_students(tmp_path, meta_dir):
    root = tmp_path / "copy"
    shutil.copytree(meta_dir, root)
    settings = MetaDatasetSettings(**TINY)
    kept = root / "digits-0to4" / "students" / "0000.json"
    lost = root / "shapes-4" / "students" / "0002.json"
    stamp, row = kept.stat().st_mtime_ns, json.loads(kept.read_text())
    lost.unlink()
    with pytest.raises(CheckpointError, match="unfinished"):
        load_meta_dataset(root)
    build_meta_dataset(root, settings, progress=False)
    assert kept.stat().st_mtime_ns == stamp and lost.is_file()
    _, records = load_meta_dataset(root)
    assert [r.name for r in records] == ["digits-0to4", "shapes-4"] and all(len(r.students) == 3 for r in records)
    assert records[0].students[0].num_params == row["num_params"]
    with pytest.raises(ConfigError, match="other settings"):
        build_meta_dataset(root, MetaDatasetSettings(**{**TINY, "students_per_task": 4}), progress=False)


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
                     "--device", "cpu", "--set", "predictor.episodes=3")
    assert code == 0, out
    assert "Best validation Spearman" in out and (tmp_path / "dass.pt").is_file()
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
    assert "oral6 dass build-meta" in out and "oral6 dass meta-train" in out


def test_benchmark_quick(tmp_path):
    result = run_benchmark("dass-unseen", tmp_path, quick=True)
    assert all(f.is_file() for f in result.files)
    names = {r["predictor"] for r in result.rows if r["table"] == "correlation"}
    assert names == {"dass", "dass-no-func", "params", "flops", "synflow", "snip", "grad-norm", "naswot"}
    assert any(r["table"] == "pick" for r in result.rows) and any(r["table"] == "timing" for r in result.rows)
    assert len(result.claims) == 3 and "textures-4" in result.markdown
