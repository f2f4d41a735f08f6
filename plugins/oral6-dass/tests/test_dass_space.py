"""Search space: exact sizes, architecture validation, encodings, the model builder."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from oral6_core.errors import ConfigError
from oral6_core.testing import check_component
from oral6_dass.network import DaSSResNet
from oral6_dass.space import WIDTH_MULTIPLIERS, Architecture, SearchSpace

SPACE = SearchSpace(1, (16, 32, 48), (3, 2, 2))


def _hook_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    total = 0

    def count(module: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += k * module.in_channels * module.out_channels * out.shape[2] * out.shape[3]
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("seed", range(6))
def test_built_students_have_the_counted_parameters_and_flops(seed):
    arch = SPACE.sample(random.Random(seed))
    model = DaSSResNet(SPACE, arch, 7)
    assert sum(p.numel() for p in model.parameters()) == SPACE.num_params(arch, 7)
    for hw in ((8, 8), (9, 12)):
        assert _hook_macs(model, (1, *hw)) == SPACE.flops(arch, hw, 7)


def test_smaller_students_are_smaller():
    small = Architecture((1, 1, 1), ((0.5,), (0.5,), (0.5,)))
    assert SPACE.num_params(small, 10) < SPACE.num_params(SPACE.teacher, 10)
    assert SPACE.flops(small, (8, 8), 10) < SPACE.flops(SPACE.teacher, (8, 8), 10)
    block = DaSSResNet(SPACE, small, 10).stages[0][0]
    assert block.conv1.out_channels == 8 and block.conv2.in_channels == 8 and block.conv2.out_channels == 16


def test_unknown_architecture_keys_give_clear_errors():
    with pytest.raises(ConfigError, match="Unknown architecture key.*'widths'"):
        Architecture.from_dict({"depths": [1, 1, 1], "multipliers": [[1], [1], [1]], "widths": [4]})
    with pytest.raises(ConfigError, match="lacks key"):
        Architecture.from_dict({"depths": [1, 1, 1]})
    with pytest.raises(ConfigError, match="outside 1..2"):
        SPACE.validate(Architecture((1, 3, 1), ((1.0,), (1.0, 1.0, 1.0), (1.0,))))
    with pytest.raises(ConfigError, match="not one of"):
        SPACE.validate(Architecture((1, 1, 1), ((0.3,), (1.0,), (1.0,))))
    with pytest.raises(ConfigError, match="3 stages"):
        SPACE.validate(Architecture((1, 1), ((1.0,), (1.0,))))


def test_round_trip_and_encoding_are_one_to_one():
    archs = SPACE.sample_many(40, seed=3)
    assert len(set(archs)) == 40
    assert all(Architecture.from_dict(a.to_dict()) == a for a in archs)
    codes = torch.stack([SPACE.encode(a) for a in archs])
    assert codes.shape == (40, SPACE.encoding_size)
    assert len({tuple(c.tolist()) for c in codes}) == 40
    assert len(WIDTH_MULTIPLIERS) == 9 and WIDTH_MULTIPLIERS[0] == 0.5 and WIDTH_MULTIPLIERS[-1] == 1.0


def test_components_conform():
    check_component("model", "dass-resnet")
    check_component("dataset", "dass-task", {"task": "textures-4"})
    for name in ("dass", "dass-no-func", "params", "flops", "synflow", "snip", "grad-norm", "naswot"):
        check_component("predictor", name, exercise=False)  # exercised on a dass-resnet task in tests/test_core_workflow_conformance.py


def test_unknown_task_is_a_clear_error():
    from oral6_core import registry

    with pytest.raises(ConfigError, match="Known tasks: digits-all"):
        registry.create("dataset", "dass-task", {"task": "cifar"}).load()
