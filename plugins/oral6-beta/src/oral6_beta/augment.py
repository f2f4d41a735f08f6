"""Weak and strong views of image batches with torchvision's v2 transforms, on the inputs' device.

The weak view is a random shift (the crop of the paper's crop-and-flip; flips would change digits),
the strong view RandAugment on top of it. Random parameters are drawn per group of ``GROUP``
samples rather than per sample, which keeps a CPU step cheap while every batch still sees many
different transforms.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

GROUP = 8


class Views:
    """Weak (random shift) and strong (shift + RandAugment) augmentations of [0, 1] image batches."""

    def __init__(self, enabled: bool = True, shift: float = 0.125, magnitude: int = 9, ops: int = 2) -> None:
        from torchvision.transforms import v2  # imported here: loading the plugin stays light

        self.enabled = enabled
        self._weak = v2.RandomAffine(degrees=0.0, translate=(shift, shift))
        self._strong = v2.RandAugment(num_ops=ops, magnitude=magnitude)

    def _grouped(self, x: Tensor, transform: Any) -> Tensor:
        return torch.cat([transform(chunk) for chunk in x.split(GROUP)])

    def weak(self, x: Tensor) -> Tensor:
        """A randomly shifted copy of an image batch (unchanged for non-image inputs or when disabled)."""
        if not self.enabled or x.dim() != 4:
            return x
        return self._grouped(x, self._weak)

    def strong(self, x: Tensor) -> Tensor:
        """RandAugment applied to a weak view, computed on 8-bit images as RandAugment expects."""
        if not self.enabled or x.dim() != 4:
            return x
        as_bytes = (self.weak(x).clamp(0, 1) * 255).round().to(torch.uint8)
        return self._grouped(as_bytes, self._strong).to(x.dtype) / 255.0
