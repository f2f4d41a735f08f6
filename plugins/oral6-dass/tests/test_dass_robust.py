"""Encodings are invariant to the teacher's feature scale; unusual teachers and out-of-range scores are warned about."""

from __future__ import annotations

import copy

import pytest
import torch

from oral6_dass.network import DaSSResNet
from oral6_dass.novelty import TeacherStats
from oral6_dass.predictor_net import DaSSNet, encode_task
from oral6_dass.meta import MetaLearner
from oral6_dass.space import SearchSpace

SPACE = SearchSpace(1, (8, 16), (2, 2))


def _teacher(seed: int) -> DaSSResNet:
    torch.manual_seed(seed)
    teacher = DaSSResNet(SPACE, SPACE.teacher, 4)
    for m in teacher.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    return teacher.eval()


def _scaled(teacher: DaSSResNet, c: float) -> DaSSResNet:
    """The same function with every activation map multiplied by ``c`` (BN statistics, weights and biases rescaled)."""
    big = copy.deepcopy(teacher)
    for name, m in big.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            if not name.startswith("stem"):
                m.running_mean.mul_(c)
                m.running_var.mul_(c * c)
            m.weight.data.mul_(c)
            m.bias.data.mul_(c)
    return big


def _encode(teacher: DaSSResNet, accuracy: float = 0.8):
    archs = SPACE.sample_many(12, 3)
    return encode_task("t", teacher, archs, accuracy, (1, 8, 8), 0)


def test_an_eight_times_larger_teacher_gives_the_same_inputs_and_predictions():
    teacher = _teacher(0)
    big = _scaled(teacher, 8.0)
    z = torch.randn(1, 1, 8, 8)
    assert torch.allclose(big.forward_features(z), 8 * teacher.forward_features(z), rtol=1e-4, atol=1e-4)
    small, large = _encode(teacher), _encode(big)
    assert large.feature_scale == pytest.approx(8 * small.feature_scale, rel=1e-4)
    assert torch.allclose(small.student_maps, large.student_maps, atol=1e-4)
    torch.manual_seed(0)
    learner = MetaLearner(DaSSNet(16, SPACE.encoding_size, 8, 8, 8, 16), step_size=0.05)
    assert torch.allclose(learner.adapted_predict(small), learner.adapted_predict(large), atol=1e-4)


def test_teachers_unlike_the_meta_training_ones_are_reported():
    train = [_encode(_teacher(s), 0.7 + 0.05 * s) for s in range(4)]
    stats = TeacherStats.from_dict(TeacherStats.of(train).to_dict())
    assert stats.warnings(train[1]) == []
    scaled = stats.warnings(_encode(_scaled(_teacher(1), 8.0), 0.75))
    assert len(scaled) == 1 and "RMS" in scaled[0]
    weak = stats.warnings(_encode(_teacher(2), 0.2))
    assert len(weak) == 1 and "accuracy 0.200" in weak[0]
    other = _encode(_teacher(2))
    other.teacher_map = -other.teacher_map
    assert any("normalised encoding" in w for w in stats.warnings(other))


def test_search_scores_warn_about_an_unusual_teacher(capsys):
    from oral6_core import registry
    from oral6_core.components import SearchTask
    from oral6_dass.candidates import task_candidates
    from oral6_dass.tasks import load_task

    predictor = registry.create("predictor", "dass", {"hidden_channels": 8, "out_channels": 8, "arch_features": 8, "hidden": 16})
    torch.manual_seed(0)
    predictor.learner = predictor._new_learner(SPACE)
    predictor.teacher_stats = TeacherStats.of([_encode(_teacher(s), 0.7 + 0.05 * s) for s in range(4)])
    bundle = load_task("digits-1478")
    big = _scaled(_teacher(1), 8.0)
    task = SearchTask(bundle, big, 0.75)
    scores = predictor.predict(task_candidates(task, SPACE.sample_many(6, 1)), task)
    assert scores.shape == (6,) and any("RMS" in w for w in predictor.warnings)
    assert "Warning (dass): the teacher's last-stage features have RMS" in " ".join(capsys.readouterr().err.split())


def test_search_scores_are_the_raw_network_outputs_neither_clamped_nor_calibrated():
    from oral6_core import registry
    from oral6_core.components import SearchTask
    from oral6_dass.candidates import task_candidates
    from oral6_dass.tasks import load_task

    predictor = registry.create("predictor", "dass", {"hidden_channels": 8, "out_channels": 8, "arch_features": 8, "hidden": 16,
                                                      "adapt": False})
    torch.manual_seed(0)
    predictor.learner = predictor._new_learner(SPACE)
    predictor.learner.net.head[2].bias.data += 5.0  # every score far above any accuracy
    task = SearchTask(load_task("digits-1478"), _teacher(1), 0.75)
    archs = SPACE.sample_many(6, 1)
    scores = predictor.predict(task_candidates(task, archs), task)
    encoded = encode_task(task.bundle.name, task.teacher, archs, 0.75, (1, 8, 8), 0)
    raw = predictor.learner.net(encoded.student_maps, encoded.student_archs, encoded.teacher_map)
    assert torch.allclose(scores, raw) and scores.min() > 1 and len(set(scores.tolist())) == 6
    assert any("6 of 6 scores fall outside [0, 1]: read them as a ranking" in w for w in predictor.warnings)
