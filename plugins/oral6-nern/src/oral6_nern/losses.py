"""NeRN's losses: weight reconstruction, output distillation and attention-map distillation."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def reconstruction_loss(predicted: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """L_rec = sqrt(mean ‖W − Ŵ‖²) over the real kernel entries (``mask``; None: all are real)."""
    if mask is None:
        return (predicted - target).pow(2).mean().sqrt()
    sq = (predicted - target).pow(2) * mask
    return (sq.sum() / mask.sum().clamp_min(1)).sqrt()


def output_distillation_loss(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """L_kd = KL(softmax(z_T) ‖ softmax(z_S)), averaged over the batch."""
    return F.kl_div(student_logits.log_softmax(-1), teacher_logits.log_softmax(-1), reduction="batchmean", log_target=True)


def attention_map(features: Tensor) -> Tensor:
    """a(A) = vec(mean_c A_c²) / ‖vec(mean_c A_c²)‖ per sample (attention transfer, p = 2).

    The map is scale-invariant, so the channel sums of squares are divided by their (constant) per-sample
    maximum before normalising, and when they overflow (the huge activations of a poorly reconstructed
    network) the features are first divided by their largest magnitude: the result is unchanged but finite.
    """
    q = (features * features).sum(1).flatten(1)  # x·x: its backward is one multiply, square()'s a pow
    if not bool(torch.isfinite(q).all()):
        scale = torch.linalg.vector_norm(features.detach().flatten(1), float("inf"), dim=1).clamp_min(1e-30)
        scaled = features / scale.view(-1, *[1] * (features.dim() - 1))
        q = (scaled * scaled).sum(1).flatten(1)
    q = q / q.detach().amax(1, keepdim=True).clamp_min(1e-30)
    return q / q.square().sum(1, keepdim=True).add(1e-12).sqrt()


def attention_loss(student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """L_fmap = Σ_layers mean_batch ‖a(A_T) − a(A_S)‖², from the attention maps a(A) of each layer."""
    terms = [(s - t).pow(2).sum(1).mean() for s, t in zip(student, teacher)]
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
