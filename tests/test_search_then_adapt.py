"""Search then adapt: the student DaSS's search distils is an ordinary checkpoint that `oral6 adapt --student` adapts with BETA."""

from __future__ import annotations

import json

import torch

from oral6_core.io import load_torch
from oral6_core.training import load_trained_model


def test_search_distils_a_student_checkpoint_that_beta_adapts(cli, tmp_path):
    teacher, search, adapted = tmp_path / "teacher", tmp_path / "search", tmp_path / "adapted"
    code, out = cli("train", "--model", "dass-resnet", "--dataset", "printed-digits", "--optimizer", "adam", "--epochs", "1",
                    "--set", "model.widths=[8,8]", "--set", "model.depths=[2,1]", "--set", "dataset.per_class=30",
                    "--device", "cpu", "--no-progress", "--out", teacher)
    assert code == 0, out
    code, out = cli("search", "--predictor", "params", "--dataset", "printed-digits", "--teacher", teacher / "checkpoint.pt",
                    "--budget-params", "3000", "--distil", "--device", "cpu", "--out", search, "--set", "dataset.per_class=30",
                    "--set", "predictor.num_candidates=20", "--set", "predictor.distil_epochs=1")
    assert code == 0, out
    record = json.loads((search / "search.json").read_text())
    again = ("search", "--predictor", "params", "--dataset", "printed-digits", "--teacher", teacher / "checkpoint.pt",
             "--budget-params", "3000", "--device", "cpu", "--out", search, "--set", "dataset.per_class=30",
             "--set", "predictor.num_candidates=20")
    code, out = cli(*again)
    assert code == 2 and "already holds a run (search.json, checkpoint.pt)" in out and "--overwrite" in out
    assert json.loads((search / "search.json").read_text()) == record, "a refused search must leave the folder as it was"
    chosen = record["ranked"][0]
    student, run = load_trained_model(search / "checkpoint.pt")
    assert run["model"] == "dass-resnet" and run["options"]["model"]["widths"] == [8, 8]
    assert sum(p.numel() for p in student.parameters()) == chosen["parameters"] <= 3000
    distilled = load_torch(search / "checkpoint.pt")["model"]

    code, out = cli("adapt", "--adapter", "beta", "--source-checkpoint", teacher / "checkpoint.pt", "--target", "digits",
                    "--student", search / "checkpoint.pt", "--device", "cpu", "--out", adapted, "--query-budget", "1200",
                    "--set", "adapter.epochs=1", "--set", "adapter.finetune_epochs=1", "--set", "adapter.bottleneck_dim=16")
    assert code == 0, out
    report = json.loads((adapted / "adapt.json").read_text())
    assert report["options"]["student_checkpoint"] == str(search / "checkpoint.pt") and report["options"]["model"] == "dass-resnet"
    assert 0 < report["black_box_queries"] <= 1200 and 0 <= report["adapted_accuracy_on_target"] <= 1
    weights = load_torch(adapted / "student.pt")["model"]  # BETA's twins: the first network's backbone is the searched student
    backbone = {k.removeprefix("nets.0.backbone."): v for k, v in weights.items() if k.startswith("nets.0.backbone.")}
    assert backbone.keys() == distilled.keys()
    assert any(not torch.equal(backbone[k], distilled[k]) for k in distilled), "the student was not adapted"

    code, out = cli("adapt", "--adapter", "beta", "--source-checkpoint", teacher / "checkpoint.pt", "--target", "digits",
                    "--student", search / "checkpoint.pt", "--model", "mlp")
    assert code == 2 and "give one of them" in out

    code, out = cli(*again, "--overwrite")
    assert code == 0, out
    assert not (search / "checkpoint.pt").exists(), "--overwrite replaces the earlier search's outputs"
