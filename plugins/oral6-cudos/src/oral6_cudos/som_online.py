"""The SOM's online update (one Adam step per code) on packed host arrays.

The reference steps its SOM once per sample. Done with torch ops on [C, D] tensors, each step costs
about 80 tiny operator calls plus an optimiser step over four parameters, and the per-call overhead
dominates. Here the four parameters and their Adam moments are packed into one [C, 3D + 1] float32
array (columns: means | log-variances | slab logits a | mixture logit), the closed-form gradient of
one code and the Adam step are a few dozen numpy operations on it, and the result is written back
into the parameters and the ``torch.optim.Adam`` state once per call. The arithmetic is that of
``SOMPrior.loss`` differentiated by autograd and stepped by ``torch.optim.Adam`` (equal to float
rounding, tested).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from .spike_slab import DENSITY_FLOOR, KL_EPS, SPIKE_HEIGHT, SPIKE_WIDTH

if TYPE_CHECKING:
    from .som import SOMPrior

LOG_2PI = math.log(2 * math.pi)


class PackedSOM:
    """Host copy of a SOM's parameters and Adam moments in one array, stepped one code at a time."""

    def __init__(self, som: SOMPrior, optimizer: torch.optim.Optimizer) -> None:
        self.som, self.optimizer = som, optimizer
        self.constants = (SPIKE_WIDTH, SPIKE_HEIGHT, DENSITY_FLOOR, KL_EPS)
        self.params = (som.means, som.logvars, som.slab_raw, som.mixture_logits)
        self.dim = som.means.shape[1]
        lr = np.full(3 * self.dim + 1, np.nan)
        betas, eps = set(), set()
        for group in optimizer.param_groups:
            if group.get("weight_decay", 0) or group.get("amsgrad") or group.get("maximize"):
                raise ValueError("the online SOM update supports plain Adam (no weight decay, amsgrad or maximize)")
            betas.add(tuple(group["betas"]))
            eps.add(group["eps"])
            for param in group["params"]:
                lr[self._columns(param)] = group["lr"]
        if np.isnan(lr).any() or len(betas) != 1 or len(eps) != 1:
            raise ValueError("the online SOM update needs every SOM parameter in the optimiser, with one (betas, eps)")
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas.pop(), eps.pop()
        self.value = self._pack([p.detach() for p in self.params])
        steps = {int(optimizer.state[p]["step"]) if "step" in optimizer.state[p] else 0 for p in self.params}
        if len(steps) != 1:
            raise ValueError("the SOM parameters have taken different numbers of optimiser steps")
        self.step = steps.pop()
        self.exp_avg = self._pack([self._moment(p, "exp_avg") for p in self.params])
        self.exp_avg_sq = self._pack([self._moment(p, "exp_avg_sq") for p in self.params])

    def _columns(self, param: Tensor) -> slice:
        d = self.dim
        index = next(i for i, p in enumerate(self.params) if p is param)
        return slice(3 * d, 3 * d + 1) if index == 3 else slice(index * d, (index + 1) * d)

    def _moment(self, param: Tensor, key: str) -> Tensor:
        state = self.optimizer.state[param]
        return state[key] if key in state else torch.zeros_like(param)

    @staticmethod
    def _pack(tensors: list[Tensor]) -> np.ndarray:
        means, logvars, slab, logits = (t.detach().to("cpu", torch.float32) for t in tensors)
        return torch.cat([means, logvars, slab, logits[:, None]], dim=1).numpy().copy()

    def loss_gradients(self, z: np.ndarray, neighbourhood: np.ndarray, spike_prior: float) -> tuple[float, np.ndarray]:
        """The SOM loss of one code ``z`` [D] and its gradient as one packed [C, 3D + 1] array.

        With ``J_c = log π_c + Σ_j log p_cj`` and ``c* = argmax_c' Σ_c h(c', c) J_c`` (winner ``joint``; ``likelihood``:
        the same without log π_c), the fit term is
        ``−Σ_c w_c J_c`` with ``w = h(c*, ·)`` (rows of h sum to one), so ``∂/∂ logits = −(w − π Σ w)`` and
        ``∂/∂ p_cj = −w_c / p_cj``, which the chain rule carries to μ, log σ² and a through
        ``p = α N + (1 − α)·box + 10⁻⁶``; the prior term ``mean_c Σ_j KL(Bern(α_cj) ‖ Bern(ρ))`` adds
        ``(logit α − logit ρ)/C`` to ``∂/∂ α`` where α is inside the KL's clamp.
        """
        width, height, floor, kl_eps = self.constants
        d, value = self.dim, self.value
        means, logvars, raw, logits = value[:, :d], value[:, d:2 * d], value[:, 2 * d:3 * d], value[:, 3 * d]
        diff = z[None] - means
        inv_var = np.exp(-logvars)
        sq = diff * diff * inv_var
        normal = np.exp(-0.5 * (sq + logvars + LOG_2PI))
        box = (np.abs(diff) < width).astype(np.float32) * np.float32(height)
        alpha = 1.0 / (1.0 + np.exp(-10.0 * (np.minimum(raw, 1.0) - 0.5)))
        density = alpha * normal + (1.0 - alpha) * box + np.float32(floor)
        shifted = logits - logits.max()
        log_pi = shifted - np.log(np.exp(shifted).sum())
        log_density = np.log(density).sum(1)
        joint = log_pi + log_density
        best = int((neighbourhood @ (joint if self.som.winner == "joint" else log_density)).argmax())
        weights = neighbourhood[best]
        grad = np.empty_like(value)
        ratio = -weights[:, None] / density
        slab_term = ratio * alpha * normal
        grad[:, :d] = slab_term * diff * inv_var
        grad[:, d:2 * d] = slab_term * 0.5 * (sq - 1.0)
        clamped = np.clip(alpha, kl_eps, 1 - kl_eps)
        inside = (alpha > kl_eps) & (alpha < 1 - kl_eps)
        prior_logit = math.log(spike_prior / (1 - spike_prior))
        log_c, log_1c = np.log(clamped), np.log1p(-clamped)
        g_alpha = ratio * (normal - box) + inside * ((log_c - log_1c - prior_logit) / len(alpha))
        grad[:, 2 * d:3 * d] = g_alpha * 10.0 * alpha * (1.0 - alpha) * (raw < 1.0)
        grad[:, 3 * d] = -(weights - np.exp(log_pi) * weights.sum())
        rho = min(max(spike_prior, kl_eps), 1 - kl_eps)
        kl = clamped * (log_c - math.log(rho)) + (1 - clamped) * (log_1c - math.log(1 - rho))
        return float(-(weights @ joint) + kl.sum(1).mean()), grad

    def adam_step(self, grad: np.ndarray) -> None:
        """``torch.optim.Adam``'s update (no weight decay) on the packed array, each column at its group's rate."""
        self.step += 1
        self.exp_avg += (1 - self.beta1) * (grad - self.exp_avg)
        self.exp_avg_sq *= self.beta2
        self.exp_avg_sq += (1 - self.beta2) * grad * grad
        step_size = (self.lr / (1 - self.beta1**self.step)).astype(np.float32)
        denom = np.sqrt(self.exp_avg_sq) / np.float32(math.sqrt(1 - self.beta2**self.step)) + np.float32(self.eps)
        self.value -= step_size * self.exp_avg / denom

    def write_back(self) -> None:
        """Copy parameters and Adam moments back into the SOM and its optimiser."""
        with torch.no_grad():
            for param in self.params:
                columns = self._columns(param)
                state = self.optimizer.state[param]
                for key, source in (("param", self.value), ("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq)):
                    block = torch.from_numpy(source[:, columns].copy()).reshape(param.shape).to(param.device, param.dtype)
                    if key == "param":
                        param.copy_(block)
                    else:
                        state[key] = block
                state["step"] = torch.tensor(float(self.step), dtype=torch.float32)


def online_update(som: SOMPrior, optimizer: torch.optim.Optimizer, z: Tensor, sigma: float, spike_prior: float) -> float:
    """One Adam step per code of ``z``, in order, on the SOM loss of that code; returns the mean loss."""
    if len(z) == 0:
        return 0.0
    packed = PackedSOM(som, optimizer)
    neighbourhood = som.neighbourhood(sigma).detach().to("cpu", torch.float32).numpy()
    total = 0.0
    for row in z.detach().to("cpu", torch.float32).numpy():
        loss, grad = packed.loss_gradients(row, neighbourhood, spike_prior)
        packed.adam_step(grad)
        total += loss
    packed.write_back()
    return total / len(z)
