"""``multiattr-digits``: the paper's coloured / rotated MNIST recipe built on sklearn's bundled 8×8 digits."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor
from torch.nn import functional as F

from oral6_core.components import Attribute, DatasetSource, Task
from oral6_core.config import ComponentConfig
from oral6_core.data import ArrayDataset, DataBundle
from oral6_core.data.digits import load_digits_arrays
from oral6_core.errors import ConfigError

from .splits import EnvironmentSplits, bernoulli, build_splits

Variant = Literal["colour", "rotation", "colour+rotation"]


def rotate(images: Tensor, degrees: float) -> Tensor:
    """Rotate (N, C, H, W) images counter-clockwise about their centre, bilinear, zero fill."""
    t = math.radians(degrees)
    theta = images.new_tensor([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0]])
    grid = F.affine_grid(theta.expand(images.shape[0], 2, 3), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def colourise(images: Tensor, colours: Tensor) -> Tensor:
    """Two channels, the image in channel ``colour`` and zeros in the other (the paper's colouring)."""
    two = images.repeat(1, 2, 1, 1)
    keep = F.one_hot(colours, 2).to(images.dtype)[:, :, None, None]
    return two * keep


class MultiAttrDigitsConfig(ComponentConfig):
    variant: Variant = Field("colour+rotation", description="Which attributes shift: colour, rotation, or both.")
    label_noise: float = Field(0.25, ge=0, lt=0.5, description="Probability that the label digit<5 is flipped.")
    train_agreement: list[float] = Field([0.9, 0.8], description="P(colour = label) in each training environment.")
    test_agreement: float = Field(0.1, ge=0, le=1, description="P(colour = label) in the test domain.")
    train_angles: list[float] = Field([15.0, 60.0], description="Rotation (degrees) of each training environment.")
    test_angle: float = Field(90.0, description="Rotation (degrees) of the test domain.")
    test_share: float = Field(1 / 3, gt=0, lt=1, description="Share of the digits that form the test domain.")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Share of each training environment held out for validation.")
    test_val_fraction: float = Field(0.2, gt=0, lt=1, description="Share of the test domain held out for oracle selection.")
    pad: int = Field(2, ge=0, le=8, description="Zero padding around the 8×8 digits so rotation does not crop them.")
    data_seed: int | None = Field(None, description="Seed of the construction (default: the run's seed).")

    @field_validator("train_agreement")
    @classmethod
    def _probabilities(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 <= p <= 1 for p in v):
            raise ValueError("needs one probability in [0, 1] per training environment")
        return v


class MultiAttrDigits(DatasetSource):
    """Digits with a causal colour and/or an independent rotation shift (CACM's MNIST recipe, offline)."""

    name = "multiattr-digits"
    Config = MultiAttrDigitsConfig
    citation = "Kaur, Kiciman, Sharma. ICLR 2023 (coloured / rotated MNIST construction)."

    def load(self, seed: int = 0) -> DataBundle:
        return self.load_splits(seed).bundle()

    def load_splits(self, seed: int = 0) -> EnvironmentSplits:
        """All four splits, including the test-domain validation split used for oracle selection."""
        c = self.config
        coloured, rotated = "colour" in c.variant, "rotation" in c.variant
        if rotated and coloured and len(c.train_angles) != len(c.train_agreement):
            raise ConfigError("multiattr-digits needs as many train_angles as train_agreement values (one per environment).")
        n_train_envs = len(c.train_agreement) if coloured else len(c.train_angles)
        g = torch.Generator().manual_seed(seed if c.data_seed is None else c.data_seed)
        images, digits = load_digits_arrays()
        order = torch.randperm(len(digits), generator=g)
        images, digits = F.pad(images[order], [c.pad] * 4), digits[order]
        n_test = int(round(c.test_share * len(digits)))
        chunks = list(torch.arange(n_test, len(digits)).tensor_split(n_train_envs)) + [torch.arange(n_test)]
        agreements = (list(c.train_agreement) if coloured else [1.0] * n_train_envs) + [c.test_agreement]
        angles = list(c.train_angles) + [c.test_angle]
        parts = []
        for env, idx in enumerate(chunks):
            x, y = images[idx], (digits[idx] < 5).long() ^ bernoulli(c.label_noise, len(idx), g)
            attrs: dict[str, Tensor] = {}
            if rotated:
                x = rotate(x, angles[env])
                attrs["rotation"] = torch.full((len(idx),), env, dtype=torch.long)
            if coloured:
                colour = y ^ bernoulli(1 - agreements[env], len(idx), g)
                x = colourise(x, colour)
                attrs["colour"] = colour
            parts.append(ArrayDataset(x, y, torch.full((len(idx),), env, dtype=torch.long), attrs))
        attributes = ([Attribute("colour", "causal", 2)] if coloured else []) + (
            [Attribute("rotation", "independent", n_train_envs + 1)] if rotated else []
        )
        names = [self._env_name(agreements[e] if coloured else None, angles[e] if rotated else None, e == n_train_envs)
                 for e in range(n_train_envs + 1)]
        task = Task("categorical", 2, tuple(parts[0].x.shape[1:]))
        return build_splits(f"{self.name}[{c.variant}]", parts[:-1], parts[-1], c.val_fraction, c.test_val_fraction,
                            task, attributes, names, g)

    @staticmethod
    def _env_name(agreement: float | None, angle: float | None, test: bool) -> str:
        bits = [f"colour={agreement:.0%}" if agreement is not None else "", f"{angle:g}°" if angle is not None else ""]
        return ("test:" if test else "train:") + ",".join(b for b in bits if b)
