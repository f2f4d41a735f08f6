"""Every workflow command runs on a user's folder: train (with CACM), cacm plan, adapt, search, fit-generative."""

import json
import shutil


def test_train_with_cacm_and_plan_on_a_folder(cli, shift_folder, tmp_path):
    code, out = cli("train", "--dataset", f"folder:{shift_folder}", "--model", "cnn", "--regularizer", "cacm", "--epochs", "1",
                    "--no-progress", "--out", tmp_path / "run")
    assert code == 0, out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "selected_by_test_val" in summary and summary["dataset"] == f"folder:{shift_folder}"
    code, out = cli("cacm", "plan", "--dataset", f"folder:{shift_folder}")
    assert code == 0, out
    assert "g(x) ⊥ colour | Y, E" in out and "g(x) ⊥ size | E" in out and "graph" in out


def test_cacm_plan_says_when_the_declared_graph_allows_no_constraint(cli, shift_folder, tmp_path):
    root = tmp_path / "confounded"
    shutil.copytree(shift_folder, root)
    spec = root / "dataset.toml"
    spec.write_text(spec.read_text().replace('"Y->colour"', '"Xc->colour"'))  # colour caused by the object itself
    code, out = cli("cacm", "plan", "--dataset", f"folder:{root}")
    assert code == 2 and "Traceback" not in out
    assert "No set of observed variables among ['Y', 'size'] d-separates Xc from attribute 'colour'" in out
    assert f"declared by dataset 'folder:{root}'" in out


def test_adapt_between_two_folders(cli, image_folder, tmp_path):
    source = image_folder(tmp_path / "red-small", per_class=16, colour=0, large=0)
    target = image_folder(tmp_path / "green-large", per_class=16, colour=1, large=1, seed=1, splits=("train", "test"))
    code, out = cli("adapt", "--adapter", "distill", "--source", f"folder:{source}", "--target", f"folder:{target}",
                    "--source-epochs", "1", "--set", "adapter.epochs=1", "--set", "source.val_fraction=0", "--device", "cpu",
                    "--out", tmp_path / "adapt")
    assert code == 0, out
    report = json.loads((tmp_path / "adapt" / "adapt.json").read_text())
    assert report["black_box_queries"] == 32 and 0 <= report["adapted_accuracy_on_target"] <= 1


def test_search_on_a_folder(cli, shift_folder, tmp_path):
    code, out = cli("train", "--dataset", f"folder:{shift_folder}", "--model", "dass-resnet", "--set", "model.widths=[8,8]",
                    "--set", "model.depths=[2,1]", "--epochs", "1", "--no-progress", "--out", tmp_path / "teacher")
    assert code == 0, out
    code, out = cli("search", "--predictor", "params", "--dataset", f"folder:{shift_folder}", "--teacher",
                    tmp_path / "teacher" / "checkpoint.pt", "--budget-params", "5000", "--top-k", "2", "--distil",
                    "--device", "cpu", "--set", "predictor.num_candidates=20", "--set", "predictor.distil_epochs=1")
    assert code == 0, out
    assert "Top 2 of" in out and "distilled d=" in out


def test_fit_generative_scores_the_folders_factors(cli, shift_folder, tmp_path):
    code, out = cli("fit-generative", "--model", "cudos", "--dataset", f"folder:{shift_folder}", "--out", tmp_path / "gen",
                    "--device", "cpu", "--set", "model.epochs_first=1", "--set", "model.epochs_next=1",
                    "--set", "model.channels=[8,8]", "--set", "model.hidden=16", "--set", "model.batch_size=32")
    assert code == 0, out
    rows = json.loads((tmp_path / "gen" / "metrics.json").read_text())["rows"]
    assert [(r["after"], r["environment"]) for r in rows] == [(1, "e90"), (2, "e90"), (2, "e80"), (3, "e90"), (3, "e80"), (3, "test")]
    assert all(0 <= r["mig"] <= 1 and 0 <= r["dci_informativeness"] <= 1 for r in rows)
