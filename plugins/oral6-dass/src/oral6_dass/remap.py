"""Parameter remapping: a student initialised from its teacher's weights, and its functional encoding.

Remapping keeps the first ``d`` blocks of every stage; each kept block takes
``conv1.weight[:m]``, ``bn1[:m]`` and ``conv2.weight[:, :m]`` of the teacher's block (``m`` the
student's inner width) and the teacher's ``bn2``, shortcut, stem and head unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from oral6_core.errors import ConfigError

from .network import DaSSResNet, StudentBlock
from .space import Architecture, SearchSpace

_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def teacher_space(teacher: nn.Module) -> SearchSpace:
    """The search space a teacher defines; a ``ConfigError`` if it is not a ``dass-resnet``."""
    if not isinstance(teacher, DaSSResNet):
        raise ConfigError(
            f"The teacher is a {type(teacher).__name__}, but DaSS searches students of a dass-resnet teacher. "
            f"Train one with `oral6 train --model dass-resnet --dataset D` and pass its checkpoint.pt as --teacher."
        )
    return teacher.space


def _slice_bn(target: nn.BatchNorm2d, source: nn.BatchNorm2d, n: int) -> None:
    for key in _BN_KEYS:
        getattr(target, key).copy_(getattr(source, key)[:n])
    target.num_batches_tracked.copy_(source.num_batches_tracked)


@torch.no_grad()
def remap_teacher(teacher: DaSSResNet, arch: Architecture, num_classes: int | None = None) -> DaSSResNet:
    """Build the student ``arch`` on the teacher's device with the teacher's sliced weights."""
    space = teacher_space(teacher)
    classes = teacher.head.out_features if num_classes is None else num_classes
    student = DaSSResNet(space, arch, classes).to(next(teacher.parameters()).device)
    student.stem.load_state_dict(teacher.stem.state_dict())
    for t_stage, s_stage in zip(teacher.stages, student.stages):
        for t_block, s_block in zip(t_stage, s_stage):
            assert isinstance(t_block, StudentBlock) and isinstance(s_block, StudentBlock)
            m = s_block.conv1.out_channels
            if m > t_block.conv1.out_channels:
                raise ConfigError(f"A student block is {m} channels wide, wider than its teacher block ({t_block.conv1.out_channels}).")
            s_block.conv1.weight.copy_(t_block.conv1.weight[:m])
            _slice_bn(s_block.bn1, t_block.bn1, m)
            s_block.conv2.weight.copy_(t_block.conv2.weight[:, :m])
            s_block.bn2.load_state_dict(t_block.bn2.state_dict())
            s_block.shortcut.load_state_dict(t_block.shortcut.state_dict())
    if classes == teacher.head.out_features:
        student.head.load_state_dict(teacher.head.state_dict())
    return student.eval()


def _bn(x: Tensor, bn: nn.BatchNorm2d, n: int | None = None) -> Tensor:
    n = x.shape[1] if n is None else n
    return F.batch_norm(x, bn.running_mean[:n], bn.running_var[:n], bn.weight[:n], bn.bias[:n], False, 0.0, bn.eps)


@torch.no_grad()
def remapped_features(teacher: DaSSResNet, arch: Architecture, x: Tensor) -> Tensor:
    """Last-stage maps of the remapped student on ``x`` (eval mode), computed from the teacher's tensors
    directly: the same function as ``remap_teacher(teacher, arch).forward_features(x)`` without building it."""
    space = teacher_space(teacher)
    space.validate(arch)
    h = F.relu(_bn(teacher.stem[0](x), teacher.stem[1]))
    for s, stage in enumerate(teacher.stages):
        for b in range(arch.depths[s]):
            block = stage[b]
            m = space.inner_width(s, arch.multipliers[s][b])
            out = F.conv2d(h, block.conv1.weight[:m], None, block.conv1.stride, 1)
            out = F.relu(_bn(out, block.bn1, m))
            out = _bn(F.conv2d(out, block.conv2.weight[:, :m], None, 1, 1), block.bn2)
            short = h
            if isinstance(block.shortcut, nn.Sequential):
                short = _bn(block.shortcut[0](h), block.shortcut[1])
            h = F.relu(out + short)
    return h
