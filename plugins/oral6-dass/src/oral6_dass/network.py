"""The ResNet-style teacher/student network of the search space and its model builder ``dass-resnet``."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from oral6_core.components import ModelBuilder
from oral6_core.config import ComponentConfig
from oral6_core.errors import ConfigError, ShapeError

from .space import Architecture, SearchSpace


class StudentBlock(nn.Module):
    """Basic block ``relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut x)`` with a narrow inner width."""

    def __init__(self, c_in: int, inner: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, inner, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + self.shortcut(x))


class DaSSResNet(nn.Module):
    """Stem conv, one ``nn.Sequential`` of blocks per stage (stride 2 from stage 1 on), pooling, linear head."""

    def __init__(self, space: SearchSpace, arch: Architecture, num_classes: int) -> None:
        super().__init__()
        self.space, self.arch = space, space.validate(arch)
        w0 = space.widths[0]
        self.stem = nn.Sequential(nn.Conv2d(space.in_channels, w0, 3, 1, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU())
        stages: list[list[nn.Module]] = [[] for _ in space.widths]
        for s, c_in, inner, c_out, stride in space.blocks(arch):
            stages[s].append(StudentBlock(c_in, inner, c_out, stride))
        self.stages = nn.ModuleList(nn.Sequential(*blocks) for blocks in stages)
        self.num_features = space.widths[-1]
        self.head = nn.Linear(space.widths[-1], num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's activation maps ``[N, C, h, w]``."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, f: Tensor, pre_logits: bool = False) -> Tensor:
        f = f.mean((2, 3))
        return f if pre_logits else self.head(f)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class DaSSResNetConfig(ComponentConfig):
    widths: list[int] = Field([16, 32, 64, 64], min_length=1, description="Channels of each stage (the stem uses the first).")
    depths: list[int] = Field([2, 2, 2, 2], min_length=1, description="Basic blocks per stage (the teacher's depth).")
    multipliers: list[list[float]] | None = Field(
        None, description="Inner-width multiplier of each block, one list per stage (0.5 to 1 in steps of 1/16): a student of "
                          "the search space, as `oral6 search --distil --out` records it. Default: every block at full width.")


class DaSSResNetBuilder(ModelBuilder):
    """ResNet-style teacher of DaSS's search space: stages of basic blocks (students are its slices)."""

    name = "dass-resnet"
    Config = DaSSResNetConfig
    citation = "Lee, An, Kim, Hwang. Meta-prediction Model for Distillation-Aware NAS on Unseen Datasets. ICLR 2023."

    def build(self, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
        if len(input_shape) != 3:
            raise ShapeError(
                f"dass-resnet needs image inputs shaped (channels, height, width), but the dataset gives {tuple(input_shape)}. "
                f"Use an image dataset such as digits or dass-task."
            )
        c = self.config
        if len(c.widths) != len(c.depths) or min(c.widths) < 1 or min(c.depths) < 1:
            raise ConfigError("model.widths and model.depths need one positive entry per stage, e.g. widths=[16,32] depths=[2,2].")
        space = SearchSpace(input_shape[0], tuple(c.widths), tuple(c.depths))
        if c.multipliers is None:
            return DaSSResNet(space, space.teacher, num_outputs)
        return DaSSResNet(space, Architecture.from_dict({"depths": c.depths, "multipliers": c.multipliers}), num_outputs)
