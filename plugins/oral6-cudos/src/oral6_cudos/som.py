"""The self-organising spike-and-slab prior: a toroidal grid of components with mixture weights."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .som_online import online_update
from .spike_slab import DENSITY_FLOOR, SPIKE_HEIGHT, SPIKE_WIDTH, bernoulli_kl


def spike_slab_log_density(z: Tensor, means: Tensor, logvars: Tensor, alpha: Tensor) -> Tensor:
    """``Σ_j log[α_cj N(z_j; μ_cj, σ²_cj) + (1 − α_cj)·10·1(|z_j − μ_cj| < 0.1)]`` for every sample and component: [B, C]."""
    diff = z[:, None, :] - means[None]
    log_slab = -0.5 * (diff**2 / logvars.exp()[None] + logvars[None] + math.log(2 * math.pi))
    box = (diff.abs() < SPIKE_WIDTH).to(z.dtype) * SPIKE_HEIGHT
    return (alpha[None] * log_slab.exp() + (1 - alpha[None]) * box + DENSITY_FLOOR).log().sum(-1)


WINNERS = ("likelihood", "joint")


class SOMPrior(nn.Module):
    """``p(z) = Σ_c π_c Π_j [α_cj N(z_j; μ_cj, σ²_cj) + (1 − α_cj)·10·1(|z_j − μ_cj| < 0.1)]`` on a rows×cols torus.

    ``winner`` picks the neighbourhood centre c' of the SOM loss: ``likelihood`` maximises
    ``Σ_c h(c', c) log p(z|c)``, ``joint`` (the reference) ``Σ_c h(c', c)[log π_c + log p(z|c)]``.
    """

    def __init__(self, rows: int, cols: int, latent_dim: int, slab_init: float = 0.2, logvar_init: float = -1.0,
                 generator: torch.Generator | None = None, winner: str = "likelihood") -> None:
        super().__init__()
        if winner not in WINNERS:
            raise ValueError(f"winner must be one of {WINNERS}, not {winner!r}")
        self.rows, self.cols, self.winner = rows, cols, winner
        count = rows * cols
        self.means = nn.Parameter((torch.rand(count, latent_dim, generator=generator) - 0.5) * 0.1)
        self.logvars = nn.Parameter(torch.full((count, latent_dim), logvar_init))
        self.slab_raw = nn.Parameter(torch.full((count, latent_dim), slab_init))
        self.mixture_logits = nn.Parameter(torch.zeros(count))
        self.register_buffer("grid_sq_distances", self._torus_sq_distances(rows, cols))

    @staticmethod
    def _torus_sq_distances(rows: int, cols: int) -> Tensor:
        """Squared grid distance between every pair of nodes when the grid wraps at its edges."""
        r = torch.arange(rows).repeat_interleave(cols).float()
        c = torch.arange(cols).repeat(rows).float()
        dr = (r[:, None] - r[None, :]).abs()
        dc = (c[:, None] - c[None, :]).abs()
        dr, dc = torch.minimum(dr, rows - dr), torch.minimum(dc, cols - dc)
        return dr**2 + dc**2

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def slab_probability(self) -> Tensor:
        """``α = sigmoid(10(min(a, 1) − 0.5))`` per component and latent dimension (a starts at 0.2, α at 0.047)."""
        return torch.sigmoid(10.0 * (self.slab_raw.clamp(max=1.0) - 0.5))

    def log_mixture_weights(self) -> Tensor:
        """``log π`` (softmax of the mixture logits)."""
        return torch.log_softmax(self.mixture_logits, dim=0)

    def log_component_density(self, z: Tensor) -> Tensor:
        """``log p(z | c)`` for every sample and component: shape [B, C]."""
        return spike_slab_log_density(z, self.means, self.logvars, self.slab_probability())

    def joint_log_density(self, z: Tensor) -> Tensor:
        """``log π_c + log p(z | c)``: shape [B, C]."""
        return self.log_mixture_weights()[None] + self.log_component_density(z)

    def responsibilities(self, z: Tensor, allowed: Tensor | None = None) -> Tensor:
        """``q(c | z) ∝ π_c p(z | c)`` (rows sum to one), optionally restricted to ``allowed`` components."""
        joint = self.joint_log_density(z)
        if allowed is not None:
            joint = joint.masked_fill(~allowed[None], float("-inf"))
        return torch.softmax(joint, dim=-1)

    def bmu(self, z: Tensor, allowed: Tensor | None = None) -> Tensor:
        """Best matching unit: ``argmax_c q(c | z)``."""
        return self.responsibilities(z, allowed).argmax(-1)

    def neighbourhood(self, sigma: float) -> Tensor:
        """Row-normalised Gaussian neighbourhood ``h_σ(c', c) ∝ exp(−d²(c', c) / 2σ²)`` on the torus: [C, C]."""
        h = torch.exp(-self.grid_sq_distances / (2 * sigma**2))
        return h / h.sum(dim=1, keepdim=True)

    def loss(self, z: Tensor, sigma: float, spike_prior: float = 0.2) -> Tensor:
        """SOM loss: ``−mean_b Σ_c h_σ(c'_b, c)[log π_c + log p(z_b|c)] + mean_c Σ_j KL(Bern(α_cj) ‖ Bern(0.2))``,
        with the centre ``c'_b`` chosen as ``winner`` says (``joint``: the c' that maximises the first sum)."""
        h = self.neighbourhood(sigma)
        log_density = self.log_component_density(z.detach())
        joint = self.log_mixture_weights()[None] + log_density
        choice = joint if self.winner == "joint" else log_density
        centre = (choice.detach() @ h.T).argmax(dim=1)
        neighbourhood_fit = (joint * h[centre]).sum(1)
        prior = torch.full_like(self.slab_raw, spike_prior)
        return -neighbourhood_fit.mean() + bernoulli_kl(self.slab_probability(), prior).sum(-1).mean()

    def make_optimizer(self, lr: float, var_lr: float) -> torch.optim.Adam:
        """The SOM's own Adam: ``lr`` for means, slab probabilities and weights, ``var_lr`` for the log-variances."""
        return torch.optim.Adam([
            {"params": [self.means, self.slab_raw, self.mixture_logits], "lr": lr},
            {"params": [self.logvars], "lr": var_lr},
        ])

    def update(self, optimizer: torch.optim.Optimizer, z: Tensor, sigma: float, spike_prior: float = 0.2) -> float:
        """One optimiser step per code in ``z``, in order (the reference's online SOM update); the mean loss.

        ``optimizer`` is the SOM's Adam (``make_optimizer``). The steps run on a packed host copy of the
        parameters with closed-form gradients (``som_online``): the same arithmetic as autograd on ``loss``
        and ``torch.optim.Adam`` (tested), without the per-operator overhead of about 80 tiny torch calls a code.
        """
        return online_update(self, optimizer, z, sigma, spike_prior)

    @torch.no_grad()
    def usage(self, z: Tensor) -> dict[str, float]:
        """How ``z`` spreads over the map: nodes that are some code's BMU, the perplexity of the BMU histogram
        (the number of equally used nodes it equals) and the quantisation error ``mean ‖z − μ_BMU‖²``."""
        bmu = self.bmu(z)
        hits = torch.bincount(bmu, minlength=self.num_components)
        return {"nodes_used": float((hits > 0).sum()), "perplexity": hit_perplexity(hits),
                "quantisation_error": float(((z - self.means[bmu]) ** 2).sum(1).mean())}

    @torch.no_grad()
    def sample(self, components: Tensor) -> Tensor:
        """One ``z`` per entry of ``components``: slab ``N(μ, σ²)`` with probability α, else the box around μ."""
        mu, std = self.means[components], (0.5 * self.logvars[components]).exp()
        slab = torch.bernoulli(self.slab_probability()[components])
        gaussian = mu + std * torch.randn_like(mu)
        box = mu + (torch.rand_like(mu) * 2 - 1) * SPIKE_WIDTH
        return torch.where(slab.bool(), gaussian, box)


def hit_perplexity(hits: Tensor) -> float:
    """``exp(entropy)`` of a histogram of BMU hits: the number of equally used nodes it equals (0 without hits)."""
    share = hits[hits > 0].float() / max(float(hits.sum()), 1.0)
    return float(torch.exp(-(share * share.log()).sum())) if len(share) else 0.0


def annealed_sigma(step: int, start: float, end: float, begin_step: int, end_step: int) -> float:
    """Neighbourhood width: ``start`` until ``begin_step``, linear to ``end`` at ``end_step``, then ``end``."""
    if step <= begin_step:
        return start
    if step >= end_step:
        return end
    return start + (end - start) * (step - begin_step) / max(end_step - begin_step, 1)
