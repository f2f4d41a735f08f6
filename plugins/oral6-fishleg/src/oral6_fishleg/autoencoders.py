"""The benchmark's data and models: bundled digits and procedural CURVES images, deep ReLU auto-encoders."""

from __future__ import annotations

from typing import Sequence

import torch
from oral6_core.components import Task
from oral6_core.data import ArrayDataset, DataBundle, split_indices
from oral6_core.data.digits import load_digits_arrays
from torch import Tensor, nn


def curves_images(n: int, side: int = 16, seed: int = 0, points: int = 48, width: float = 0.7) -> Tensor:
    """CURVES-style images: one random cubic Bézier curve per image, rendered with a soft pen, values in [0, 1].

    Follows the recipe of Hinton & Salakhutdinov's CURVES set at ``side``×``side`` pixels: four
    control points uniform in the image, the curve drawn as max over its points of exp(−dist²/2w²).
    """
    g = torch.Generator().manual_seed(seed)
    control = torch.rand(n, 4, 2, generator=g) * (side - 1)
    t = torch.linspace(0, 1, points).view(1, points, 1)
    basis = [(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3]
    curve = sum(b * control[:, i : i + 1, :] for i, b in enumerate(basis))  # (n, points, 2)
    grid = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij"), -1).float().view(1, 1, -1, 2)
    dist2 = ((curve.unsqueeze(2) - grid) ** 2).sum(-1)  # (n, points, side²)
    return torch.exp(-dist2 / (2 * width**2)).amax(1)


def autoencoder_bundle(name: str, n_curves: int = 2400, seed: int = 0) -> DataBundle:
    """Digits (64 pixels) or curves (256 pixels) as a Bernoulli reconstruction task: ``y`` is ``x``."""
    if name == "digits":
        x = load_digits_arrays()[0].flatten(1)
    else:
        x = curves_images(n_curves, seed=seed)
    train, val, test = split_indices(len(x), (0.7, 0.15, 0.15), seed)
    full = ArrayDataset(x, x)
    return DataBundle(name, full.subset(train), full.subset(val), full.subset(test), Task("bernoulli", 0, (x.shape[1],)))


def autoencoder(sizes: Sequence[int]) -> nn.Sequential:
    """A deep ReLU auto-encoder: ``sizes`` from input to code, mirrored back; the code layer is linear."""
    encoder = list(sizes)
    widths = encoder + encoder[-2::-1]
    code = len(encoder) - 1
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]), start=1):
        layers.append(nn.Linear(a, b))
        if i != code and i != len(widths) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)
