"""Parameter remapping copies the expected teacher slices; the functional shortcut agrees with it."""

from __future__ import annotations

import pytest
import torch

from oral6_core.errors import ConfigError
from oral6_dass.network import DaSSResNet
from oral6_dass.remap import remap_teacher, remapped_features
from oral6_dass.space import Architecture, SearchSpace

SPACE = SearchSpace(1, (16, 32), (3, 2))


def _teacher() -> DaSSResNet:
    torch.manual_seed(0)
    teacher = DaSSResNet(SPACE, SPACE.teacher, 5)
    for m in teacher.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
            m.weight.data.normal_()
            m.bias.data.normal_()
    return teacher.eval()


def test_remap_copies_the_first_blocks_and_channels():
    teacher = _teacher()
    arch = Architecture((2, 1), ((0.75, 0.5), (0.5625,)))
    student = remap_teacher(teacher, arch)
    t0, s0 = teacher.stages[0][1], student.stages[0][1]
    assert torch.equal(s0.conv1.weight, t0.conv1.weight[:8])
    assert torch.equal(s0.conv2.weight, t0.conv2.weight[:, :8])
    assert torch.equal(s0.bn1.running_var, t0.bn1.running_var[:8])
    assert torch.equal(s0.bn1.weight, t0.bn1.weight[:8])
    assert torch.equal(s0.bn2.bias, t0.bn2.bias)
    t1, s1 = teacher.stages[1][0], student.stages[1][0]
    assert s1.conv1.weight.shape == (18, 16, 3, 3) and torch.equal(s1.conv1.weight, t1.conv1.weight[:18])
    assert torch.equal(s1.shortcut[0].weight, t1.shortcut[0].weight)
    assert torch.equal(student.stem[0].weight, teacher.stem[0].weight)
    assert torch.equal(student.head.weight, teacher.head.weight)
    assert len(student.stages[0]) == 2 and len(student.stages[1]) == 1


def test_the_full_width_student_is_the_teacher():
    teacher = _teacher()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(remap_teacher(teacher, SPACE.teacher)(x), teacher(x), atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_functional_remapping_equals_the_built_student(seed):
    import random

    teacher = _teacher()
    arch = SPACE.sample(random.Random(seed))
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        built = remap_teacher(teacher, arch).forward_features(x)
    assert torch.allclose(remapped_features(teacher, arch, x), built, atol=1e-5)


def test_remapping_needs_a_dass_teacher():
    from oral6_core.models.nets import SmallCNN

    with pytest.raises(ConfigError, match="--model dass-resnet"):
        remapped_features(SmallCNN(1, 3), SPACE.teacher, torch.zeros(1, 1, 8, 8))  # type: ignore[arg-type]
