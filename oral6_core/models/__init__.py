"""Built-in model builders (mlp, cnn, resnet20) and the timm-style feature/head split."""

from __future__ import annotations

from torch import Tensor, nn

from .nets import MLP, SmallCNN, resnet20


def features_and_logits(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Pre-logit features and logits of any model; plain models give their output as both."""
    if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        logits = head(pre) if isinstance(head, nn.Module) else model.forward_head(model.forward_features(x))
        return pre, logits
    out = model(x)
    return out, out


class FeaturesAndLogits(nn.Module):
    """Wraps a model so that ``forward`` returns ``(features, logits)``; DDP wraps this module."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return features_and_logits(self.model, x)


__all__ = ["MLP", "SmallCNN", "resnet20", "features_and_logits", "FeaturesAndLogits"]
