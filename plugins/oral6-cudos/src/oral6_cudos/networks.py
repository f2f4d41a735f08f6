"""Convolutional encoder and decoder of the reference (conv 4×4 stride 2, ELU, batch norm; two FC layers), sized for small images."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from oral6_core.errors import ShapeError


class _ELUFunction(torch.autograd.Function):
    """``x`` for ``x > 0``, ``exp(x) − 1`` otherwise; the derivative from the output: 1, or ``y + 1``."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        y = torch.where(x > 0, x, torch.exp(x.clamp(max=0)) - 1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return grad * (y.clamp(max=0) + 1)


class ELU(nn.Module):
    """ELU (α = 1) through ``exp`` rather than ``expm1``: equal to ``nn.ELU`` to float rounding (tested) and several
    times faster on CPU, where torch's ELU kernel evaluates ``expm1`` one element at a time."""

    def forward(self, x: Tensor) -> Tensor:
        return _ELUFunction.apply(x)


def _check_size(image_size: int, layers: int) -> int:
    side = image_size // 2**layers
    if side < 1 or image_size % 2**layers:
        raise ShapeError(f"Images of side {image_size} cannot pass {layers} stride-2 layers; use a side divisible by {2**layers}.")
    return side


class ConvEncoder(nn.Module):
    """x → (μ, log σ²): conv blocks (stride 2, ELU, batch norm) → FC → FC → 2·latent outputs."""

    def __init__(self, in_channels: int, image_size: int, channels: tuple[int, ...], hidden: int, latent_dim: int) -> None:
        super().__init__()
        side = _check_size(image_size, len(channels))
        blocks, previous = [], in_channels
        for width in channels:
            blocks += [nn.Conv2d(previous, width, 4, 2, 1), ELU(), nn.BatchNorm2d(width)]
            previous = width
        self.features = nn.Sequential(*blocks, nn.Flatten())
        self.head = nn.Sequential(nn.Linear(previous * side * side, hidden), ELU(), nn.Linear(hidden, hidden), ELU(),
                                  nn.Linear(hidden, 2 * latent_dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.head(self.features(x)).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 8.0)


class ConvDecoder(nn.Module):
    """z → pixel logits: FC → FC → transposed conv blocks mirroring the encoder (Bernoulli likelihood)."""

    def __init__(self, out_channels: int, image_size: int, channels: tuple[int, ...], hidden: int, latent_dim: int) -> None:
        super().__init__()
        self.side = _check_size(image_size, len(channels))
        widths = list(reversed(channels))
        self.first = widths[0]
        self.head = nn.Sequential(nn.Linear(latent_dim, hidden), ELU(), nn.Linear(hidden, hidden), ELU(),
                                  nn.Linear(hidden, widths[0] * self.side * self.side), ELU())
        blocks = []
        for current, following in zip(widths, widths[1:]):
            blocks += [nn.ConvTranspose2d(current, following, 4, 2, 1), ELU(), nn.BatchNorm2d(following)]
        blocks.append(nn.ConvTranspose2d(widths[-1], out_channels, 4, 2, 1))
        self.deconv = nn.Sequential(*blocks)

    def forward(self, z: Tensor) -> Tensor:
        return self.deconv(self.head(z).view(-1, self.first, self.side, self.side))
