"""Small networks that follow timm's ``forward_features`` / ``forward_head`` convention."""

from __future__ import annotations

import math

from torch import Tensor, nn
from torch.nn import functional as F


class _HeadSplit(nn.Module):
    """Mixin: ``forward = forward_head(forward_features(x))`` with a linear ``head``."""

    head: nn.Module

    def forward_head(self, f: Tensor, pre_logits: bool = False) -> Tensor:
        f = self.pool(f)
        return f if pre_logits else self.head(f)

    def pool(self, f: Tensor) -> Tensor:
        return f

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class MLP(_HeadSplit):
    """A multi-layer perceptron on flattened inputs."""

    def __init__(self, in_features: int, num_outputs: int, hidden: tuple[int, ...] = (128, 128), dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.num_features = width
        self.head = nn.Linear(width, num_outputs)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.body(x)


class SmallCNN(_HeadSplit):
    """Conv-BN-ReLU blocks with max pooling, then global average pooling and a linear head."""

    def __init__(self, in_channels: int, num_outputs: int, channels: tuple[int, ...] = (32, 64)):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i, out in enumerate(channels):
            layers += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
            c = out
        self.body = nn.Sequential(*layers)
        self.num_features = c
        self.head = nn.Linear(c, num_outputs)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def pool(self, f: Tensor) -> Tensor:
        return f.mean((2, 3))


class BasicBlock(nn.Module):
    """ResNet basic block (two 3×3 convs) with a 1×1 projection shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class CifarResNet(_HeadSplit):
    """CIFAR-style ResNet (He et al. 2016, §4.2): a 3×3 stem and three stages of basic blocks."""

    def __init__(self, in_channels: int, num_outputs: int, blocks_per_stage: int = 3, width: int = 16):
        super().__init__()
        widths = (width, 2 * width, 4 * width)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, c = [], widths[0]
        for i, w in enumerate(widths):
            blocks = [BasicBlock(c if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1) for j in range(blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
            c = w
        self.layer1, self.layer2, self.layer3 = stages
        self.num_features = c
        self.head = nn.Linear(c, num_outputs)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def pool(self, f: Tensor) -> Tensor:
        return f.mean((2, 3))


def resnet20(in_channels: int = 3, num_outputs: int = 10, width: int = 16) -> CifarResNet:
    """ResNet-20: 3 stages × 3 basic blocks, widths (w, 2w, 4w)."""
    return CifarResNet(in_channels, num_outputs, blocks_per_stage=3, width=width)


def flat_size(shape: tuple[int, ...]) -> int:
    """Number of elements of one input of ``shape``."""
    return math.prod(shape)
