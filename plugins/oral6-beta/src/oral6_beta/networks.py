"""The adapted networks: a student backbone with DINE's bottleneck head, twin ensembles, and a domain discriminator."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


def pre_logits(model: nn.Module, x: Tensor) -> Tensor:
    """A model's pre-logit features (timm split) or, for a plain module, its output."""
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        return model.forward_head(model.forward_features(x), pre_logits=True)
    return model(x)


class BottleneckClassifier(nn.Module):
    """Backbone → bottleneck (Linear → BatchNorm) → weight-normalised linear classifier (DINE / BETA head)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, bottleneck_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.bottleneck = nn.Sequential(nn.Linear(feature_dim, bottleneck_dim), nn.BatchNorm1d(bottleneck_dim))
        self.classifier = weight_norm(nn.Linear(bottleneck_dim, num_classes))

    def forward_features(self, x: Tensor) -> Tensor:
        return pre_logits(self.backbone, x)

    def forward_head(self, f: Tensor, pre_logits: bool = False) -> Tensor:
        z = self.bottleneck(f)
        return z if pre_logits else self.classifier(z)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters trained at the full learning rate: bottleneck and classifier."""
        return [*self.bottleneck.parameters(), *self.classifier.parameters()]

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Backbone parameters (trained at a tenth of the rate), without the student's own unused head."""
        own_head = self.backbone.get_classifier() if hasattr(self.backbone, "get_classifier") else None
        skip = {id(p) for p in own_head.parameters()} if isinstance(own_head, nn.Module) else set()
        return [p for p in self.backbone.parameters() if id(p) not in skip]


def attach_bottleneck(student: nn.Module, probe: Tensor, num_classes: int, bottleneck_dim: int) -> BottleneckClassifier:
    """Wrap ``student`` with a fresh bottleneck head sized by one forward pass over ``probe``."""
    was_training = student.training
    student.eval()
    with torch.no_grad():
        feature_dim = pre_logits(student, probe[:2]).flatten(1).shape[1]
    student.train(was_training)
    device = probe.device
    return BottleneckClassifier(student, feature_dim, bottleneck_dim, num_classes).to(device)


def reinitialised_copy(student: nn.Module) -> nn.Module:
    """A copy of ``student`` with every layer re-initialised (the second of BETA's twin networks)."""
    twin = copy.deepcopy(student)
    for module in twin.modules():
        if hasattr(module, "reset_parameters") and module is not twin:
            module.reset_parameters()
    return twin


class TwinNetworks(nn.Module):
    """BETA's prediction: the average of its two networks' logits."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.nets = nn.ModuleList([first, second])

    def forward(self, x: Tensor) -> Tensor:
        return (self.nets[0](x) + self.nets[1](x)) / 2


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, coefficient: float) -> Tensor:  # type: ignore[override]
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return -ctx.coefficient * grad, None


def reverse_gradient(x: Tensor, coefficient: float) -> Tensor:
    """Identity forward, gradient multiplied by −coefficient backward (Ganin & Lempitsky's GRL)."""
    return _ReverseGradient.apply(x, coefficient)


class Discriminator(nn.Module):
    """DANN's domain classifier: two hidden ReLU layers with dropout, one logit (easy = 1, hard = 0)."""

    def __init__(self, in_features: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(hidden, 1),
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features).squeeze(1)
