"""Pruners that reach their sparsity over the run: GMP (cubic schedule) and IMP (rounds with rewinding)."""

from __future__ import annotations

import copy
from typing import Any, Callable, Literal

import torch
from pydantic import Field, model_validator

from oral6_core.errors import ConfigError

from .base import MaskedPruner, MaskedPrunerConfig
from .schedules import gmp_sparsity, imp_density, imp_rounds
from .scores import magnitude_scores


class GMPConfig(MaskedPrunerConfig):
    initial_sparsity: float = Field(0.0, ge=0, lt=1, description="s_i, the sparsity at t0.")
    start: float = Field(0.1, ge=0, lt=1, description="t0 as a share of the training steps.")
    end: float = Field(0.8, gt=0, le=1, description="t1 as a share of the training steps (s_f is reached there).")
    update_every: int = Field(10, ge=1, description="ΔT: steps between magnitude-pruning updates.")

    @model_validator(mode="after")
    def _ordered(self) -> "GMPConfig":
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        if self.initial_sparsity >= self.sparsity:
            raise ValueError(f"initial_sparsity ({self.initial_sparsity}) must be below sparsity ({self.sparsity})")
        return self


class GMPPruner(MaskedPruner):
    """Gradual magnitude pruning (Zhu & Gupta, 2018): s_t = s_f + (s_i − s_f)(1 − (t − t0)/(t1 − t0))³, every ΔT steps."""

    name = "gmp"
    Config = GMPConfig
    citation = "Zhu & Gupta. To prune, or not to prune: exploring the efficacy of pruning for model compression. 2018."

    def __init__(self, config: GMPConfig | None = None) -> None:
        super().__init__(config)
        self.level = 0.0

    def reset(self) -> None:
        self.level = 0.0

    def start(self) -> None:
        if self.config.initial_sparsity > 0:
            self._prune(self.config.initial_sparsity)

    def window(self, total_steps: int) -> tuple[int, int]:
        """(t0, t1) in steps for a run of ``total_steps``."""
        t0 = round(self.config.start * total_steps)
        return t0, max(round(self.config.end * total_steps), t0 + 1)

    def update(self, step: int, total_steps: int) -> None:
        c = self.config
        t0, t1 = self.window(total_steps)
        if step < t0 or ((step - t0) % c.update_every and step < t1):
            return
        target = gmp_sparsity(step, t0, t1, c.initial_sparsity, c.sparsity)
        if target > self.level:
            self._prune(target)

    def _prune(self, sparsity: float) -> None:
        self.prune_to(magnitude_scores(self._masks().params), 1 - sparsity)
        self.level = sparsity

    def extra_state(self) -> dict[str, Any]:
        return {"level": self.level}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.level = float(state.get("level", 0.0))


class IMPConfig(MaskedPrunerConfig):
    rate: float = Field(0.2, gt=0, lt=1, description="Share of the remaining weights pruned each round.")
    rewind: Literal["init", "lrr"] = Field(
        "init", description="init: rewind weights to their start values (LTH; the pre-trained weights when fine-tuning); "
                            "lrr: keep the trained weights and restart training (learning-rate rewinding). Both "
                            "restart the optimizer state and the learning-rate schedule each round.")
    rewind_step: int = Field(0, ge=0, description="With rewind=init, rewind to the weights after this many steps (0: the start).")


class IMPPruner(MaskedPruner):
    """Iterative magnitude pruning in one run: rounds of training, prune `rate` of the remaining weights, rewind."""

    name = "imp"
    Config = IMPConfig
    citation = "Frankle & Carbin. The Lottery Ticket Hypothesis. ICLR 2019; Renda, Frankle, Carbin. Comparing Rewinding and Fine-tuning. ICLR 2020."

    def __init__(self, config: IMPConfig | None = None) -> None:
        super().__init__(config)
        self.round = 0
        self.rewind_weights: dict[str, torch.Tensor] | None = None
        self.schedule_start: tuple[dict[str, Any], list[float]] | None = None
        self.optimizer_start: dict[str, Any] = {}
        self.round_end_callbacks: list[Callable[[int, float], None]] = []

    def rounds(self) -> int:
        """Number of prune rounds: ⌈log(1 − s) / log(1 − rate)⌉."""
        return imp_rounds(self.config.sparsity, self.config.rate)

    def round_length(self, total_steps: int) -> int:
        """Steps per round: the run is split into rounds + 1 equal trainings (the last one at the final mask)."""
        length = total_steps // (self.rounds() + 1)
        if length < 1 or self.config.rewind_step >= length:
            raise ConfigError(
                f"IMP needs {self.rounds()} prune rounds (+1 final training) to reach sparsity {self.config.sparsity} "
                f"at rate {self.config.rate}, but the run has only {total_steps} steps (rewind_step "
                f"{self.config.rewind_step}). Train for more epochs, raise pruner.rate or lower pruner.rewind_step."
            )
        return length

    def reset(self) -> None:
        self.round = 0
        self.round_length(self.ctx.total_steps)  # type: ignore[union-attr]
        self.rewind_weights = self._snapshot() if self.config.rewind_step == 0 else None
        self.optimizer_start = copy.deepcopy(self.ctx.optimizer.state_dict())  # type: ignore[union-attr]  # before any step
        scheduler = self.ctx.scheduler  # type: ignore[union-attr]
        self.schedule_start = None if scheduler is None else (
            copy.deepcopy(scheduler.state_dict()), [group["lr"] for group in self.ctx.optimizer.param_groups])  # type: ignore[union-attr]

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.ctx.model.named_parameters()}  # type: ignore[union-attr]

    def update(self, step: int, total_steps: int) -> None:
        c = self.config
        if c.rewind == "init" and c.rewind_step and step == c.rewind_step:
            self.rewind_weights = self._snapshot()
        if self.round >= self.rounds() or step != (self.round + 1) * self.round_length(total_steps):
            return
        self._report_round()
        self.round += 1
        self.prune_to(magnitude_scores(self._masks().params), imp_density(self.round, c.sparsity, c.rate))
        self._rewind()

    @torch.no_grad()
    def _rewind(self) -> None:
        """Rewind the weights (LTH) or keep them (LRR); either way restart the optimizer's state and the LR schedule."""
        model, optimizer = self.ctx.model, self.ctx.optimizer  # type: ignore[union-attr]
        if self.config.rewind == "init":
            for name, p in model.named_parameters():
                p.copy_(self.rewind_weights[name])  # type: ignore[index]
        optimizer.load_state_dict(copy.deepcopy(self.optimizer_start))  # whatever state the optimizer keeps, as it was built
        if self.schedule_start is not None:
            state, rates = self.schedule_start
            self.ctx.scheduler.load_state_dict(copy.deepcopy(state))  # type: ignore[union-attr]
            for group, rate in zip(optimizer.param_groups, rates):
                group["lr"] = rate

    def _report_round(self) -> None:
        sparsity = self.sparsity()["overall"]
        for callback in self.round_end_callbacks:
            callback(self.round, sparsity)

    def on_train_end(self) -> None:
        self._report_round()

    def extra_state(self) -> dict[str, Any]:
        weights = None if self.rewind_weights is None else {k: v.clone() for k, v in self.rewind_weights.items()}
        return {"round": self.round, "rewind_weights": weights}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.round = int(state.get("round", 0))
        weights = state.get("rewind_weights")
        if weights is not None:
            device = self.ctx.device  # type: ignore[union-attr]
            self.rewind_weights = {k: v.to(device) for k, v in weights.items()}
