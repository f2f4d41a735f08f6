"""One-shot pruners: magnitude (OMP), random, SNIP and oBERT — prune once, then train with the mask fixed."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from torch import Tensor

from .base import MaskedPruner, MaskedPrunerConfig
from .scores import magnitude_scores, obert_scores, random_scores, snip_scores


class OneShotConfig(MaskedPrunerConfig):
    prune_at: float = Field(
        0.0, ge=0, lt=1,
        description="Share of the training steps run dense before the one-shot prune. 0 prunes the starting weights "
                    "(before training, or 'after training' when the starting model is already fine-tuned); 0.5 "
                    "trains dense for half the run, prunes, and fine-tunes the rest.",
    )


class OneShotPruner(MaskedPruner):
    """Base of the one-shot pruners: score once at ``prune_at``, keep the global/per-layer top-k."""

    Config = OneShotConfig

    def __init__(self, config: OneShotConfig | None = None) -> None:
        super().__init__(config)
        self.pruned = False

    def scores(self) -> dict[str, Tensor]:
        """Saliency of every prunable weight (higher is kept)."""
        raise NotImplementedError

    def reset(self) -> None:
        self.pruned = False

    def start(self) -> None:
        if self.config.prune_at == 0:
            self.prune_now()

    def update(self, step: int, total_steps: int) -> None:
        if not self.pruned and step >= round(self.config.prune_at * total_steps):
            self.prune_now()

    def prune_now(self) -> None:
        """Score and prune to the target sparsity."""
        self.prune_to(self.scores(), 1 - self.config.sparsity)
        self.pruned = True

    def extra_state(self) -> dict[str, Any]:
        return {"pruned": self.pruned}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.pruned = bool(state.get("pruned", True))


class MagnitudePruner(OneShotPruner):
    """One-shot magnitude pruning (OMP): keep the largest |w| under one global threshold."""

    name = "omp"

    def scores(self) -> dict[str, Tensor]:
        return magnitude_scores(self._masks().params)


class RandomPrunerConfig(OneShotConfig):
    allocation: Literal["global", "uniform", "erk"] = Field("uniform", description="Layer allocation; uniform keeps density d in every layer.")
    seed: int = Field(0, description="Seed of the random mask.")


class RandomPruner(OneShotPruner):
    """Random pruning: an exact-size uniformly random mask per layer (Bernoulli(d) made exact)."""

    name = "random"
    Config = RandomPrunerConfig

    def scores(self) -> dict[str, Tensor]:
        return random_scores(self._masks().params, self.config.seed)


class SnipConfig(OneShotConfig):
    batches: int = Field(1, ge=1, description="Mini-batches whose summed gradient scores the weights (SNIP uses one).")


class SnipPruner(OneShotPruner):
    """SNIP (Lee et al., 2019): keep the largest connection sensitivities |w ⊙ ∂L/∂w| from one batch."""

    name = "snip"
    Config = SnipConfig
    citation = "Lee, Ajanthan, Torr. SNIP: Single-shot Network Pruning based on Connection Sensitivity. ICLR 2019."

    def scores(self) -> dict[str, Tensor]:
        ctx = self.ctx
        return snip_scores(ctx.model, self._masks().params, ctx.train_loader, ctx.loss_fn, ctx.device, self.config.batches)  # type: ignore[union-attr]


class OBertConfig(OneShotConfig):
    num_grads: int = Field(16, ge=1, description="Mini-batch gradients m in the empirical Fisher F = λI + (1/m) Σ g gᵀ.")
    damp: float = Field(1e-6, gt=0, description="Dampening λ added to the Fisher's diagonal.")
    block_size: int = Field(0, ge=0, description="0: diagonal Fisher; B > 0: block-diagonal B × B blocks inverted by Woodbury.")


class OBertPruner(OneShotPruner):
    """oBERT (Kurtic et al., 2022): second-order saliency w² / (2 [F⁻¹]_ii) with the empirical Fisher, global top-k."""

    name = "obert"
    Config = OBertConfig
    citation = "Kurtic et al. The Optimal BERT Surgeon: Scalable and Accurate Second-Order Pruning for Large Language Models. EMNLP 2022."

    def scores(self) -> dict[str, Tensor]:
        ctx, c = self.ctx, self.config
        return obert_scores(ctx.model, self._masks().params, ctx.train_loader, ctx.loss_fn, ctx.device,  # type: ignore[union-attr]
                            c.num_grads, c.damp, c.block_size)
