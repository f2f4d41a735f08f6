"""Kernel coordinates and NeRN's sinusoidal positional encoding."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def kernel_coordinates(shapes: list[tuple[int, int]], device: torch.device | str = "cpu") -> Tensor:
    """Integer coordinates (layer, filter, channel) of every kernel, layer by layer in row-major order: (N, 3)."""
    blocks = []
    for layer, (filters, channels) in enumerate(shapes):
        f = torch.arange(filters, device=device).repeat_interleave(channels)
        c = torch.arange(channels, device=device).repeat(filters)
        blocks.append(torch.stack((torch.full_like(f, layer), f, c), 1))
    return torch.cat(blocks)


def positional_encoding(coords: Tensor, levels: int, base: float) -> Tensor:
    """γ(p) = [sin(π b^k p), cos(π b^k p)] for k = 0..L−1 per integer p; three coordinates give (N, 6L)."""
    exponents = torch.arange(levels, device=coords.device, dtype=torch.float64)
    freqs = (math.pi * base**exponents).to(torch.float32)
    angles = coords.to(torch.float32).unsqueeze(-1) * freqs  # (N, 3, L)
    return torch.stack((angles.sin(), angles.cos()), -1).flatten(1)
