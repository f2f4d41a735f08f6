"""NeRN's losses: weight reconstruction, output distillation and attention-map distillation."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def reconstruction_loss(predicted: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """L_rec = sqrt(mean ‖W − Ŵ‖²) over the real (masked) kernel entries."""
    sq = (predicted - target).pow(2) * mask
    return (sq.sum() / mask.sum().clamp_min(1)).sqrt()


def output_distillation_loss(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """L_kd = KL(softmax(z_T) ‖ softmax(z_S)), averaged over the batch."""
    return F.kl_div(student_logits.log_softmax(-1), teacher_logits.log_softmax(-1), reduction="batchmean", log_target=True)


def attention_map(features: Tensor) -> Tensor:
    """a(A) = vec(mean_c A_c²) / ‖vec(mean_c A_c²)‖ per sample (attention transfer, p = 2).

    Each sample's map is scale-invariant, so A is first divided by its (constant) largest magnitude:
    the result is unchanged but stays finite for the huge activations of a poorly reconstructed network.
    """
    scale = features.detach().flatten(1).abs().amax(1).clamp_min(1e-30).view(-1, *[1] * (features.dim() - 1))
    a = (features / scale).pow(2).mean(1).flatten(1)
    return a / a.pow(2).sum(1, keepdim=True).add(1e-12).sqrt()


def attention_loss(student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """L_fmap = Σ_layers mean_batch ‖a(A_T) − a(A_S)‖²."""
    terms = [(attention_map(s) - attention_map(t)).pow(2).sum(1).mean() for s, t in zip(student, teacher)]
    return torch.stack(terms).sum()


def feature_modules(model: nn.Module) -> list[str]:
    """Where feature maps are compared: every BatchNorm2d output (stem and each conv) and each residual block's output."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) or hasattr(m, "downsample")]


class FeatureTap:
    """Collects the outputs of named modules during a forward pass (forward hooks, so functional calls are seen too)."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        self.model, self.names = model, names

    @contextmanager
    def recording(self) -> Iterator[list[Tensor]]:
        """Record the outputs of one forward pass into the yielded list."""
        modules = dict(self.model.named_modules())
        captured: list[Tensor] = []
        handles = [modules[n].register_forward_hook(lambda _m, _i, out: captured.append(out)) for n in self.names]
        try:
            yield captured
        finally:
            for h in handles:
                h.remove()
