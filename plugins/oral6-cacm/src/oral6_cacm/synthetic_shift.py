"""``shift-synthetic``: the paper's synthetic causal and confounded attribute shifts, generated procedurally.

Causal shift:     Xc → Y → A,       A = Y xor Bern(1 − ρ_e)
Confounded shift: Xc → Y ← C → A,   A = C xor Bern(1 − ρ_e)
Inputs x = [Xc + noise, spurious features whose mean is ±μ by A]; ρ_e is high in the training
environments and low in the test domain, so a model that reads A from x fails there.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from oral6_core.components import Attribute, DatasetSource, Task
from oral6_core.config import ComponentConfig
from oral6_core.data import ArrayDataset, DataBundle

from .splits import EnvironmentSplits, bernoulli, build_splits


class ShiftSyntheticConfig(ComponentConfig):
    shift: Literal["causal", "confounded"] = Field("causal", description="How the attribute relates to the label.")
    samples_per_env: int = Field(1000, ge=20, description="Rows per environment (training and test).")
    core_dim: int = Field(4, ge=1, description="Dimensions of the causal features Xc.")
    spurious_dim: int = Field(4, ge=1, description="Dimensions of the attribute-driven features.")
    spurious_strength: float = Field(1.0, gt=0, description="Mean ±μ of the spurious features.")
    label_noise: float = Field(0.25, ge=0, lt=0.5, description="Probability that the label is flipped (causal shift).")
    confounder_strength: float = Field(1.0, ge=0, description="Effect β of C on Y: y = 1[w·Xc + β(2C−1) + ε > 0].")
    train_agreement: list[float] = Field([0.9, 0.8], description="P(A = Y) (causal) or P(A = C) (confounded) per training environment.")
    test_agreement: float = Field(0.1, ge=0, le=1, description="The same probability in the test domain.")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Share of each training environment held out for validation.")
    test_val_fraction: float = Field(0.2, gt=0, lt=1, description="Share of the test domain held out for oracle selection.")
    data_seed: int | None = Field(None, description="Seed of the generator (default: the run's seed).")


class ShiftSynthetic(DatasetSource):
    """Synthetic causal or confounded attribute shift (CACM's correct-vs-incorrect constraint study)."""

    name = "shift-synthetic"
    Config = ShiftSyntheticConfig

    def load(self, seed: int = 0) -> DataBundle:
        return self.load_splits(seed).bundle()

    def load_splits(self, seed: int = 0) -> EnvironmentSplits:
        """All four splits, including the test-domain validation split used for oracle selection."""
        c = self.config
        g = torch.Generator().manual_seed(seed if c.data_seed is None else c.data_seed)
        w = torch.randn(c.core_dim, generator=g)
        w = w / w.norm()
        direction = torch.randn(c.spurious_dim, generator=g)
        direction = direction / direction.norm()
        agreements = [*c.train_agreement, c.test_agreement]
        parts = []
        for env, rho in enumerate(agreements):
            n = c.samples_per_env
            core = torch.randn(n, c.core_dim, generator=g)
            score = core @ w
            if c.shift == "causal":
                y = (score > 0).long() ^ bernoulli(c.label_noise, n, g)
                attr = y ^ bernoulli(1 - rho, n, g)
            else:
                confounder = bernoulli(0.5, n, g)
                noise = 0.5 * torch.randn(n, generator=g)
                y = (score + c.confounder_strength * (2 * confounder - 1) + noise > 0).long()
                attr = confounder ^ bernoulli(1 - rho, n, g)
            spurious = (2 * attr - 1).float()[:, None] * c.spurious_strength * direction + torch.randn(n, c.spurious_dim, generator=g)
            x = torch.cat([core + 0.1 * torch.randn(n, c.core_dim, generator=g), spurious], 1)
            parts.append(ArrayDataset(x, y, torch.full((n,), env, dtype=torch.long), {"a": attr}))
        attribute = Attribute("a", "causal" if c.shift == "causal" else "confounded", 2)
        names = [f"train:agreement={p:.0%}" for p in c.train_agreement] + [f"test:agreement={c.test_agreement:.0%}"]
        task = Task("categorical", 2, (c.core_dim + c.spurious_dim,))
        return build_splits(f"{self.name}[{c.shift}]", parts[:-1], parts[-1], c.val_fraction, c.test_val_fraction,
                            task, [attribute], names, g)
