"""Ranger = RAdam + Lookahead, the optimiser NeRN trains its predictor with."""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn


class Lookahead:
    """Lookahead (Zhang et al., 2019): every k inner steps, slow ← slow + α(fast − slow) and fast ← slow."""

    def __init__(self, inner: torch.optim.Optimizer, k: int = 6, alpha: float = 0.5) -> None:
        self.inner, self.k, self.alpha = inner, k, alpha
        self.steps = 0
        self.slow = [[p.detach().clone() for p in group["params"]] for group in inner.param_groups]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.inner.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self) -> None:
        """One inner step; every k-th also pulls the slow weights toward the fast ones and resets the fast ones."""
        self.inner.step()
        self.steps += 1
        if self.steps % self.k:
            return
        for group, slow_group in zip(self.inner.param_groups, self.slow):
            for p, slow in zip(group["params"], slow_group):
                slow.add_(p - slow, alpha=self.alpha)
                p.copy_(slow)


def ranger(params: Iterable[nn.Parameter], lr: float, k: int = 6, alpha: float = 0.5) -> Lookahead:
    """RAdam (β = 0.95, 0.999; ε = 1e-5, Ranger's defaults) wrapped in Lookahead."""
    return Lookahead(torch.optim.RAdam(params, lr=lr, betas=(0.95, 0.999), eps=1e-5), k, alpha)
