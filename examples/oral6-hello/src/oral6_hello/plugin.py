"""Registers the ``lion`` optimizer and the ``csv`` logger with oral6."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from oral6_core.components import OptimizerFactory, Task
from oral6_core.config import ComponentConfig
from oral6_core.hookspecs import hookimpl

from .csv_logger import CsvLogger


class Lion(torch.optim.Optimizer):
    """Lion: w ← w − lr·(sign(β₁m + (1−β₁)g) + λw); m ← β₂m + (1−β₂)g."""

    def __init__(self, params, lr: float, beta1: float, beta2: float, weight_decay: float) -> None:
        super().__init__(params, {"lr": lr, "beta1": beta1, "beta2": beta2, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("m", torch.zeros_like(p))
                update = (group["beta1"] * m + (1 - group["beta1"]) * p.grad).sign()
                p.mul_(1 - group["lr"] * group["weight_decay"]).add_(update, alpha=-group["lr"])
                m.mul_(group["beta2"]).add_(p.grad, alpha=1 - group["beta2"])


class LionConfig(ComponentConfig):
    lr: float = Field(3e-4, gt=0, description="Learning rate (about 3-10x smaller than Adam's).")
    beta1: float = Field(0.9, ge=0, lt=1, description="Interpolation of momentum and gradient for the update.")
    beta2: float = Field(0.99, ge=0, lt=1, description="Momentum decay.")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay.")


class LionFactory(OptimizerFactory):
    """Lion, the sign-momentum optimizer found by program search (Chen et al., 2023)."""

    name = "lion"
    Config = LionConfig
    citation = "Chen et al. Symbolic Discovery of Optimization Algorithms. NeurIPS 2023."

    def build(self, model: nn.Module, task: Task) -> torch.optim.Optimizer:
        c = self.config
        return Lion(model.parameters(), c.lr, c.beta1, c.beta2, c.weight_decay)


@hookimpl
def oral6_optimizers():
    return [LionFactory]


@hookimpl
def oral6_loggers():
    return [CsvLogger]
