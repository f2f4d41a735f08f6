"""Distribution distances between two sets of representations: Gaussian-kernel MMD² and CORAL."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

DOMAINBED_GAMMAS: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3)


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise ‖a_i − b_j‖², clamped at zero against round-off."""
    a2 = a.pow(2).sum(-1, keepdim=True)
    b2 = b.pow(2).sum(-1, keepdim=True)
    return torch.addmm(b2.transpose(-2, -1), a, b.transpose(-2, -1), alpha=-2).add_(a2).clamp_min_(0)


def gaussian_kernel(a: Tensor, b: Tensor, gammas: Sequence[float]) -> Tensor:
    """K(a_i, b_j) = Σ_γ exp(−γ ‖a_i − b_j‖²) (one γ: the plain Gaussian kernel; several: DomainBed's sum)."""
    d = squared_distances(a, b)
    return sum(torch.exp(-g * d) for g in gammas)  # type: ignore[return-value]


def mmd2(a: Tensor, b: Tensor, gammas: Sequence[float]) -> Tensor:
    """Biased MMD² estimate: mean K(a,a') + mean K(b,b') − 2 mean K(a,b)."""
    return gaussian_kernel(a, a, gammas).mean() + gaussian_kernel(b, b, gammas).mean() - 2 * gaussian_kernel(a, b, gammas).mean()


def coral_distance(a: Tensor, b: Tensor) -> Tensor:
    """CORAL (DomainBed form): mean (μ_a − μ_b)² + mean (Σ_a − Σ_b)² with unbiased covariances."""
    mean_a, mean_b = a.mean(0, keepdim=True), b.mean(0, keepdim=True)
    ca, cb = a - mean_a, b - mean_b
    cov_a = ca.T @ ca / max(len(a) - 1, 1)
    cov_b = cb.T @ cb / max(len(b) - 1, 1)
    return (mean_a - mean_b).pow(2).mean() + (cov_a - cov_b).pow(2).mean()
