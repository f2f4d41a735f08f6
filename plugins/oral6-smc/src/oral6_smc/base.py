"""What every SMC pruner shares: options for the prunable set and allocation, and the mask bookkeeping."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from oral6_core.components import Pruner, TrainContext
from oral6_core.config import ComponentConfig
from oral6_core.errors import CheckpointError

from .masking import Allocation, MaskSet, select_prunable, topk_masks

CITATION = (
    "Liu, Chen, Zhang, Chen, Huang, Jaiswal, Wang. Sparsity May Cry: Let Us Fail (Current) Sparse Neural "
    "Networks Together! ICLR 2023."
)


class MaskedPrunerConfig(ComponentConfig):
    sparsity: float = Field(0.5, gt=0, lt=1, description="Target share of pruned weights over the prunable set, in (0, 1).")
    allocation: Allocation = Field("global", description="How sparsity is spread over layers: global (one threshold), uniform or erk.")
    prune_embeddings: bool = Field(False, description="Also prune nn.Embedding weights (off by default: the stronger recipe of Kurtic et al., 2023).")
    prune_head: bool = Field(False, description="Also prune the classifier weight.")
    include: list[str] = Field(default_factory=list, description="Glob patterns over parameter names: prune only these (each must match).")
    exclude: list[str] = Field(default_factory=list, description="Glob patterns over parameter names never pruned (each must match).")


class MaskedPruner(Pruner):
    """Base of the SMC pruners: selects the prunable set, owns the masks and keeps them applied."""

    Config = MaskedPrunerConfig
    citation = CITATION

    def __init__(self, config: MaskedPrunerConfig | None = None) -> None:
        super().__init__(config)
        self.ctx: TrainContext | None = None
        self.mask_set: MaskSet | None = None
        self.pending_state: dict[str, Any] | None = None

    # ------------------------------------------------------------------ hooks subclasses override
    def reset(self) -> None:
        """Called in ``on_train_start`` with ``self.ctx`` and dense masks: (re)set the schedule state; never prune here."""

    def start(self) -> None:
        """Called after ``reset`` when no saved state is pending: the initial prune, if the method has one."""

    def update(self, step: int, total_steps: int) -> None:
        """Called after each optimizer step, before the masks are re-applied."""

    def extra_state(self) -> dict[str, Any]:
        """State besides the masks that a resumed run needs."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``extra_state`` saved."""

    # ------------------------------------------------------------------ the Pruner protocol
    def on_train_start(self, ctx: TrainContext) -> None:
        """Select the prunable set; apply a state loaded before this call, else run the initial prune.

        The initial prune remembers the values it zeroed, so a ``load_state_dict`` that follows before
        anything else touched the weights gives them back wherever the saved masks keep them.
        """
        c = self.config
        self.ctx = ctx
        params = select_prunable(ctx.model, c.include, c.exclude, c.prune_embeddings, c.prune_head)
        self.mask_set = MaskSet(params)
        self.reset()
        if self.pending_state is not None:
            state, self.pending_state = self.pending_state, None
            self._restore(state)
            return
        with self.mask_set.undoable():
            self.start()

    def on_after_backward(self, step: int) -> None:
        masks = self._masks()
        masks.forget_undo()
        masks.apply_to_grads()

    def on_step_end(self, step: int, total_steps: int) -> None:
        masks = self._masks()
        masks.forget_undo()
        self.update(step, total_steps)
        masks.apply_to_optimizer_state(self.ctx.optimizer)  # type: ignore[union-attr]
        masks.apply_to_weights()

    def masks(self) -> dict[str, Tensor]:
        return dict(self._masks().masks)

    def sparsity(self) -> dict[str, float]:
        if self.mask_set is None:
            return {"overall": 0.0}
        return self.mask_set.measured_sparsity()

    def state_dict(self) -> dict[str, Any]:
        return {"masks": {k: v.clone() for k, v in self._masks().masks.items()}, **self.extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore saved masks and schedule state, before or after ``on_train_start``, without losing kept weights.

        Before ``on_train_start`` the state is held and applied there in place of the initial prune.
        After it, weights that the initial prune zeroed and the saved masks keep get their values back,
        provided nothing has modified the weights since (otherwise, e.g. once a checkpoint's weights were
        loaded, the current weights are kept and only the saved masks are applied).
        """
        if not isinstance(state, dict) or not isinstance(state.get("masks"), dict):
            raise CheckpointError(f"Pruner {self.name!r} expects the dict of its state_dict() (with 'masks'), "
                                  f"not {type(state).__name__}.")
        if self.mask_set is None:
            self.pending_state = state
            return
        self._restore(state)

    # ------------------------------------------------------------------ helpers
    def _restore(self, state: dict[str, Any]) -> None:
        masks = self._masks()
        saved = state["masks"]
        if set(saved) != set(masks.masks):
            raise CheckpointError(
                f"The checkpoint's pruner masks cover {sorted(saved)}, but this run prunes "
                f"{sorted(masks.masks)}. Resume with the same model and pruner options as the saved run."
            )
        for name, mask in saved.items():
            if tuple(mask.shape) != tuple(masks.params[name].shape):
                raise CheckpointError(f"The checkpoint's mask for {name!r} has shape {tuple(mask.shape)}, "
                                      f"but the parameter has {tuple(masks.params[name].shape)}.")
        masks.undo()
        masks.set(saved)
        masks.apply_to_optimizer_state(self.ctx.optimizer)  # type: ignore[union-attr]
        self.load_extra_state(state)

    def _masks(self) -> MaskSet:
        if self.mask_set is None:
            raise CheckpointError(f"Pruner {self.name!r} has no masks yet: call on_train_start(ctx) before using it.")
        return self.mask_set

    def prune_to(self, scores: dict[str, Tensor], density: float, allocation: Allocation | None = None) -> None:
        """Keep the top ``density`` share of ``scores`` (already-pruned weights are never revived)."""
        masks = self._masks()
        if not masks.dense:
            scores = {n: s.masked_fill(~masks.masks[n], -torch.inf) for n, s in scores.items()}
        masks.set(topk_masks(scores, density, allocation or self.config.allocation))
        masks.apply_to_optimizer_state(self.ctx.optimizer)  # type: ignore[union-attr]
