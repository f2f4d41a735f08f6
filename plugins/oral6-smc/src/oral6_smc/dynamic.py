"""Dynamic sparse training from a sparse start: RigL (regrow by gradient) and SET (regrow at random)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from .base import MaskedPruner, MaskedPrunerConfig
from .schedules import cosine_drop_fraction
from .scores import magnitude_scores, random_scores


class DynamicConfig(MaskedPrunerConfig):
    allocation: Literal["global", "uniform", "erk"] = Field("erk", description="Layer densities of the initial mask (kept fixed afterwards).")
    init: Literal["random", "magnitude"] = Field("random", description="Initial mask: random per layer, or one-shot magnitude (OMP + dynamic training).")
    alpha: float = Field(0.3, gt=0, le=1, description="α: initial drop fraction, decayed as α/2 · (1 + cos(π t / T_end)).")
    update_every: int = Field(100, ge=1, description="ΔT: steps between drop/regrow updates.")
    end: float = Field(0.75, gt=0, le=1, description="T_end as a share of the training steps; the mask is fixed afterwards.")
    seed: int = Field(0, description="Seed of the random initial mask and of SET's random regrowth.")


class DynamicSparsePruner(MaskedPruner):
    """Base of RigL/SET: every ΔT steps, per layer, drop the p_t share of smallest |w| and regrow as many elsewhere."""

    Config = DynamicConfig

    def __init__(self, config: DynamicConfig | None = None) -> None:
        super().__init__(config)
        self.grow_scores: dict[str, Tensor] | None = None

    def reset(self) -> None:
        self.grow_scores = None

    def start(self) -> None:
        c = self.config
        params = self._masks().params
        scores = random_scores(params, c.seed) if c.init == "random" else magnitude_scores(params)
        self.prune_to(scores, 1 - c.sparsity)

    def is_update_step(self, step: int, total_steps: int) -> bool:
        """True on multiples of ΔT before T_end."""
        return step % self.config.update_every == 0 and step < round(self.config.end * total_steps)

    def on_after_backward(self, step: int) -> None:
        if self.is_update_step(step, self.ctx.total_steps):  # type: ignore[union-attr]
            self.grow_scores = self.regrowth_scores(step)
        super().on_after_backward(step)

    def regrowth_scores(self, step: int) -> dict[str, Tensor]:
        """Scores of the inactive weights; the largest are regrown (read before gradients are masked)."""
        raise NotImplementedError

    @torch.no_grad()
    def update(self, step: int, total_steps: int) -> None:
        if not self.is_update_step(step, total_steps) or self.grow_scores is None:
            return
        fraction = cosine_drop_fraction(step, self.config.alpha, round(self.config.end * total_steps))
        masks = self._masks()
        new = {name: self._drop_and_grow(p, masks.masks[name], self.grow_scores[name], fraction)
               for name, p in masks.params.items()}
        self.grow_scores = None
        masks.set(new)
        masks.apply_to_optimizer_state(self.ctx.optimizer)  # type: ignore[union-attr]

    @staticmethod
    def _drop_and_grow(weight: Tensor, mask: Tensor, grow: Tensor, fraction: float) -> Tensor:
        """Drop the k = ⌊p · nnz⌋ active weights of smallest |w|; activate the k inactive ones of largest ``grow``."""
        active = int(mask.sum())
        k = int(fraction * active)
        if k == 0:
            return mask
        flat_mask = mask.reshape(-1)
        magnitude = weight.detach().abs().reshape(-1).masked_fill(~flat_mask, torch.inf)
        drop = magnitude.topk(k, largest=False).indices
        kept = flat_mask.clone()
        kept[drop] = False
        candidates = grow.reshape(-1).masked_fill(kept, -torch.inf)
        regrow = candidates.topk(k).indices
        kept[regrow] = True
        return kept.view_as(mask)


class RigLPruner(DynamicSparsePruner):
    """RigL (Evci et al., 2020): drop smallest |w|, regrow where the dense gradient |∂L/∂w| is largest (new weights 0)."""

    name = "rigl"
    citation = "Evci, Gale, Menick, Castro, Elsen. Rigging the Lottery: Making All Tickets Winners. ICML 2020."

    def regrowth_scores(self, step: int) -> dict[str, Tensor]:
        return {name: p.grad.detach().abs() if p.grad is not None else torch.zeros_like(p)
                for name, p in self._masks().params.items()}


class SETPruner(DynamicSparsePruner):
    """SET (Mocanu et al., 2018): drop smallest |w|, regrow the same number at random positions (new weights 0)."""

    name = "set"
    citation = "Mocanu et al. Scalable training of artificial neural networks with adaptive sparse connectivity. Nature Communications 2018."

    def regrowth_scores(self, step: int) -> dict[str, Tensor]:
        return random_scores(self._masks().params, self.config.seed * 7919 + step)
