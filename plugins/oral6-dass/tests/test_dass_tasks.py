"""The procedural task families: valid 8×8 images, reproducible, and a class that the drawing carries."""

from __future__ import annotations

import pytest
import torch

from oral6_dass import tasks
from oral6_dass.metadata import load_meta_dataset
from oral6_dass.tasks import TASK_INPUT_SHAPE, load_task, task_family

NEW_FAMILIES = {"arrows": 8, "glyphs": 8, "pairs": 4, "landolt": 4, "scales": 4, "quadrants": 4, "symmetry": 4}


@pytest.mark.parametrize("name, classes", NEW_FAMILIES.items())
def test_a_nearest_class_mean_recovers_the_drawn_class(name, classes):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(800) % classes
    x = getattr(tasks, f"_{name}")(y, g)
    assert x.shape == (800, 16, 16) and x.min() >= 0 and x.max() <= 1
    features = x.flatten(1)
    if name == "scales":  # the class is the pattern's smoothness: neighbouring differences carry it
        features = (x[:, :, 1:] - x[:, :, :-1]).abs().flatten(1)
    if name == "symmetry":  # the class is the mirror that maps the image onto itself
        features = torch.stack([(x - x.flip(dims)).abs().mean((1, 2)) for dims in ((2,), (1,), (1, 2))], 1)
    means = torch.stack([features[:400][y[:400] == c].mean(0) for c in range(classes)])
    accuracy = (torch.cdist(features[400:], means).argmin(1) == y[400:]).float().mean().item()
    assert accuracy > 1.5 / classes


def test_procedural_tasks_are_reproducible_pooled_and_balanced():
    first, again = load_task("arrows", seed=0), load_task("arrows", seed=0)
    assert torch.equal(first.train.x, again.train.x) and tuple(first.train.x.shape[1:]) == TASK_INPUT_SHAPE
    assert first.num_classes == 8 and len(first.train) == 2000 and len(first.val) == 4000
    counts = torch.bincount(first.val.y, minlength=8)
    assert counts.min() > 0.8 * counts.float().mean()


def test_shipped_meta_dataset_holds_out_whole_families():
    settings, _ = load_meta_dataset()
    train = {task_family(t) for t in settings.train_tasks}
    val = {task_family(t) for t in settings.val_tasks}
    test = {task_family(t) for t in settings.test_tasks}
    assert len(settings.test_tasks) >= 3 and len(test) == len(settings.test_tasks)
    assert not test & (train | val) and not val & train
    assert task_family("shapes-6-noisy") == task_family("shapes-4") == "shapes"
