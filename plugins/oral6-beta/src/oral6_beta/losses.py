"""The losses and label operations of DINE and BETA, one small function per equation."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

EPS = 1e-5


def adaptive_label_smoothing(outputs: Tensor, k: int) -> Tensor:
    """DINE's teacher from top-k outputs: keep the k largest, spread 1 − Σ top-k evenly over the other C − k classes."""
    classes = outputs.shape[1]
    k = min(k, classes)
    values, indices = outputs.topk(k, dim=1)
    rest = ((1.0 - values.sum(1, keepdim=True)) / max(classes - k, 1)).clamp_min(0)
    return rest.expand_as(outputs).clone().scatter_(1, indices, values)


def kl_to_teacher(probs: Tensor, teacher: Tensor) -> Tensor:
    """KL(P ‖ p) averaged over the batch: Σ_c P_c (log P_c − log p_c)."""
    return F.kl_div(probs.clamp_min(1e-8).log(), teacher, reduction="batchmean")


def information_maximisation(probs: Tensor) -> Tensor:
    """IM loss: mean per-sample entropy − entropy of the mean prediction, E[H(p)] − H(E[p])."""
    entropy = -(probs * (probs + EPS).log()).sum(1).mean()
    mean = probs.mean(0)
    return entropy + (mean * (mean + EPS).log()).sum()


def sharpen(probs: Tensor, temperature: float) -> Tensor:
    """Temperature sharpening: p_c^{1/T} / Σ_k p_k^{1/T}."""
    powered = probs ** (1.0 / temperature)
    return powered / powered.sum(1, keepdim=True)


def mixup(a: Tensor, b: Tensor, lam: float) -> Tensor:
    """Convex combination λ·a + (1 − λ)·b (inputs or soft targets alike)."""
    return lam * a + (1.0 - lam) * b


def mixmatch_lambda(alpha: float, rng: np.random.Generator) -> float:
    """λ ~ Beta(α, α) then λ ← max(λ, 1 − λ), so each mixed sample stays closer to its first input."""
    lam = float(rng.beta(alpha, alpha))
    return max(lam, 1.0 - lam)


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """−Σ_c q_c log softmax(z)_c averaged over the batch (CE with soft targets)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def probability_mse(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error between softmax(z) and soft targets (MixMatch's loss on unlabelled data)."""
    return ((F.softmax(logits, dim=1) - targets) ** 2).mean()


def prior_penalty(probs: Tensor, prior: Tensor | None = None) -> Tensor:
    """Σ_c π_c log(π_c / p̄_c) with p̄ the batch-mean prediction and π uniform unless given."""
    mean = probs.mean(0)
    prior = torch.full_like(mean, 1.0 / mean.numel()) if prior is None else prior
    return (prior * (prior / mean.clamp_min(1e-8)).log()).sum()
