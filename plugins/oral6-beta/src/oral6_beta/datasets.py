"""Dataset components of the offline domain pairs: printed-digits → digits and shapes-a → shapes-b."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from oral6_core.components import DatasetSource, Task
from oral6_core.config import ComponentConfig
from oral6_core.data import ArrayDataset, DataBundle, split_indices

from .rendering import SHAPES, drawn_shapes, printed_digits


class RenderedConfig(ComponentConfig):
    per_class: int = Field(200, ge=5, description="Images rendered per class.")
    render_seed: int = Field(0, description="Seed of the rendering (fonts, sizes, rotations, noise, colours).")
    val_fraction: float = Field(0.15, ge=0, lt=1, description="Share of images held out for validation.")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of images held out for testing.")
    split_seed: int = Field(0, description="Seed of the fixed train/val/test split.")


def _bundle(name: str, x: Tensor, y: Tensor, classes: int, config: RenderedConfig) -> DataBundle:
    fractions = (1 - config.val_fraction - config.test_fraction, config.val_fraction, config.test_fraction)
    train, val, test = split_indices(len(y), fractions, config.split_seed)
    full = ArrayDataset(x, y)
    return DataBundle(name, full.subset(train), full.subset(val) if len(val) else None, full.subset(test),
                      Task("categorical", classes, tuple(x.shape[1:])))


class PrintedDigits(DatasetSource):
    """Digits 0-9 printed in matplotlib's fonts (varied size, rotation, offset, colours, noise), 1×8×8 like `digits`."""

    name = "printed-digits"
    Config = RenderedConfig

    def load(self, seed: int = 0) -> DataBundle:
        x, y = printed_digits(self.config.per_class, self.config.render_seed)
        return _bundle(self.name, x, y, 10, self.config)


class ShapesA(DatasetSource):
    """Five shapes (circle, square, triangle, cross, star), solid, upright and clean; 1×16×16 (source style)."""

    name = "shapes-a"
    Config = RenderedConfig

    def load(self, seed: int = 0) -> DataBundle:
        x, y = drawn_shapes("a", self.config.per_class, self.config.render_seed)
        return _bundle(self.name, x, y, len(SHAPES), self.config)


class ShapesB(DatasetSource):
    """The same five shapes outlined with striped fill, rotated, rescaled, shifted, on clutter and noise; 1×16×16."""

    name = "shapes-b"
    Config = RenderedConfig

    def load(self, seed: int = 0) -> DataBundle:
        x, y = drawn_shapes("b", self.config.per_class, self.config.render_seed + 1)
        return _bundle(self.name, x, y, len(SHAPES), self.config)


class NoisyDigitsConfig(ComponentConfig):
    sigma: float = Field(0.25, ge=0, description="Standard deviation of the additive Gaussian noise (pixels in [0, 1]).")
    salt_pepper: float = Field(0.04, ge=0, le=1, description="Share of pixels set to 0 or 1 at random.")
    noise_seed: int = Field(0, description="Seed of the noise.")


class NoisyDigits(DatasetSource):
    """sklearn's digits with Gaussian noise and salt-and-pepper pixels, clipped to [0, 1] (same splits as `digits`)."""

    name = "noisy-digits"
    Config = NoisyDigitsConfig

    def load(self, seed: int = 0) -> DataBundle:
        import torch

        from oral6_core import registry

        c: NoisyDigitsConfig = self.config  # type: ignore[assignment]
        clean = registry.create("dataset", "digits").load(seed)
        generator = torch.Generator().manual_seed(c.noise_seed)

        def corrupt(split: ArrayDataset) -> ArrayDataset:
            x = split.x + c.sigma * torch.randn(split.x.shape, generator=generator)
            hit = torch.rand(x.shape, generator=generator) < c.salt_pepper
            x = torch.where(hit, (torch.rand(x.shape, generator=generator) < 0.5).float(), x)
            return ArrayDataset(x.clamp(0, 1), split.y)

        return DataBundle(self.name, corrupt(clean.train), None if clean.val is None else corrupt(clean.val),  # type: ignore[arg-type]
                          corrupt(clean.test), clean.task)  # type: ignore[arg-type]
