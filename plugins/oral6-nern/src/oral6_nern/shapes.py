"""Shapes32: procedurally rendered 32×32 colour images of ten shape classes (no files, no download)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from oral6_core.components import DatasetSource, Task
from oral6_core.config import ComponentConfig
from oral6_core.data import ArrayDataset, DataBundle, split_indices

CLASSES = ("disc", "square", "ring", "triangle", "plus", "cross", "diamond", "frame", "bar", "pillar")
SIZE = 32


def _masks(dx: Tensor, dy: Tensor, r: Tensor) -> Tensor:
    """One boolean mask per class for offsets (dx, dy) from the centre and radius r: (N, 10, H, W)."""
    ax, ay = dx.abs(), dy.abs()
    dist = (dx**2 + dy**2).sqrt()
    box = torch.maximum(ax, ay)
    u, v = (dx + dy).abs() / 2**0.5, (dx - dy).abs() / 2**0.5
    t = r / 3
    return torch.stack([
        dist < r,
        box < r * 0.8,
        (dist - r * 0.8).abs() < t * 0.8,
        (dy < r * 0.7) & (2 * ax < dy + r * 0.9),
        ((ax < t * 0.7) & (ay < r)) | ((ay < t * 0.7) & (ax < r)),
        ((u < t * 0.7) & (v < r)) | ((v < t * 0.7) & (u < r)),
        ax + ay < r,
        (box < r * 0.85) & (box > r * 0.5),
        (ay < t * 0.7) & (ax < r * 1.2),
        (ax < t * 0.7) & (ay < r * 1.2),
    ], 1)


def render_shapes(labels: Tensor, noise: float, generator: torch.Generator) -> Tensor:
    """Images (N, 3, 32, 32) in [0, 1]: one shape of class ``labels`` with random size, place and colours, plus noise."""
    n = len(labels)
    r = 5 + 5 * torch.rand(n, 1, 1, generator=generator)
    cx = r[:, 0, 0] + 1 + torch.rand(n, generator=generator) * (SIZE - 2 - 2 * r[:, 0, 0])
    cy = r[:, 0, 0] + 1 + torch.rand(n, generator=generator) * (SIZE - 2 - 2 * r[:, 0, 0])
    grid = torch.arange(SIZE, dtype=torch.float32) + 0.5
    dx = grid.view(1, 1, SIZE) - cx.view(n, 1, 1)
    dy = grid.view(1, SIZE, 1) - cy.view(n, 1, 1)
    mask = _masks(dx, dy, r)[torch.arange(n), labels].unsqueeze(1).float()
    fg = torch.rand(n, 3, 1, 1, generator=generator)
    bg = (fg + 0.3 + 0.4 * torch.rand(n, 3, 1, 1, generator=generator)) % 1.0
    images = mask * fg + (1 - mask) * bg + noise * torch.randn(n, 3, SIZE, SIZE, generator=generator)
    return images.clamp(0, 1)


class Shapes32Config(ComponentConfig):
    num_samples: int = Field(6000, ge=30, description="Images in all splits together.")
    noise: float = Field(0.15, ge=0, description="Standard deviation of the pixel noise.")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Share of images held out for validation.")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of images held out for testing.")
    data_seed: int = Field(0, description="Seed that renders the images and splits them.")


class Shapes32(DatasetSource):
    """Ten classes of procedurally rendered 32×32 colour shapes (disc, square, ring, ...); offline."""

    name = "shapes32"
    Config = Shapes32Config

    def load(self, seed: int = 0) -> DataBundle:
        c = self.config
        generator = torch.Generator().manual_seed(c.data_seed)
        labels = torch.arange(c.num_samples) % len(CLASSES)
        x = (render_shapes(labels, c.noise, generator) - 0.5) / 0.25
        full = ArrayDataset(x, labels)
        fractions = (1 - c.val_fraction - c.test_fraction, c.val_fraction, c.test_fraction)
        train, val, test = split_indices(c.num_samples, fractions, c.data_seed)
        return DataBundle(
            name=self.name, train=full.subset(train), val=full.subset(val) if len(val) else None,
            test=full.subset(test), task=Task("categorical", len(CLASSES), (3, SIZE, SIZE)),
        )
