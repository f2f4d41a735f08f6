"""Spike-and-slab pieces shared by the CUDOS posterior and prior: relaxed selection and closed-form KLs."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

SPIKE_WIDTH = 0.1  # half-width of the box that stands for the spike around a component mean
SPIKE_HEIGHT = 10.0  # the reference's value of the box density
DENSITY_FLOOR = 1e-6  # added to each dimension's density before the log, as in the reference
KL_EPS = 1e-6  # the clamp of bernoulli_kl


def selection(spike: Tensor, shape: torch.Size | tuple[int, ...], sharpness: float = 10.0,
              generator: torch.Generator | None = None) -> Tensor:
    """Relaxed spike draw ``sigmoid(c·(η + s − 1))`` with ``η ~ U(0, 1)``; near 0 where ``s`` is small, near 1 where large."""
    eta = torch.rand(shape, device=spike.device, dtype=spike.dtype, generator=generator)
    return torch.sigmoid(sharpness * (eta + spike - 1.0))


def expected_selection(spike: Tensor, sharpness: float = 10.0) -> Tensor:
    """``E_η[sigmoid(c·(η + s − 1))] = (softplus(c·s) − softplus(c·(s − 1))) / c``: the deterministic selection."""
    return (F.softplus(sharpness * spike) - F.softplus(sharpness * (spike - 1.0))) / sharpness


def spike_and_slab_sample(mu: Tensor, logvar: Tensor, spike: Tensor, sharpness: float = 10.0) -> Tensor:
    """``z = selection ⊙ (μ + σ ε)``: the reparameterised spike-and-slab posterior sample."""
    eps = torch.randn_like(mu)
    return selection(spike.expand_as(mu), mu.shape, sharpness) * (mu + (0.5 * logvar).exp() * eps)


def gaussian_kl(mu: Tensor, logvar: Tensor, mu_prior: Tensor, logvar_prior: Tensor) -> Tensor:
    """Elementwise ``KL(N(μ, σ²) ‖ N(μ_p, σ_p²))``."""
    return 0.5 * (logvar_prior - logvar + (logvar.exp() + (mu - mu_prior) ** 2) / logvar_prior.exp() - 1.0)


def bernoulli_kl(p: Tensor, q: Tensor, eps: float = KL_EPS) -> Tensor:
    """Elementwise ``KL(Bern(p) ‖ Bern(q))``."""
    p, q = p.clamp(eps, 1 - eps), q.clamp(eps, 1 - eps)
    return p * (p.log() - q.log()) + (1 - p) * ((1 - p).log() - (1 - q).log())


def logit(p: float) -> float:
    """``log(p / (1 − p))``."""
    return math.log(p / (1 - p))
