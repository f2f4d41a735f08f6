"""Crossfilter at scale: the clustered walk's time on full-size layers and its smoothness against the exact chain."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from .permutations import clustered_chain, greedy_chains


def synthetic_layer(kind: str, filters: int, channels: int, seed: int) -> Tensor:
    """A (F, C, 3, 3) conv weight: ``random`` — Kaiming-normal (fan-out) as torchvision/timm initialise ResNets;
    ``trained-like`` — kernels whose energy falls off with spatial frequency, power ∝ (1 + u² + v²)^-1.5 over the
    3×3 DCT frequencies (u, v), plus 20% white noise, as trained kernels are smooth."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "random":
        return torch.randn(filters, channels, 3, 3, generator=generator) * (2.0 / (filters * 9)) ** 0.5
    u, v = torch.meshgrid(torch.arange(3.0), torch.arange(3.0), indexing="ij")
    power = (1 + u**2 + v**2).pow(-1.5).reshape(-1)
    basis = torch.stack([torch.cos(torch.pi * (torch.arange(3.0) + 0.5) * k / 3) for k in range(3)])  # DCT-II rows
    coefficients = torch.randn(filters * channels, 9, generator=generator) * power + 0.2 * power.mean() * torch.randn(
        filters * channels, 9, generator=generator)
    kernels = torch.einsum("nuv,ui,vj->nij", coefficients.view(-1, 3, 3), basis, basis)
    return kernels.reshape(filters, channels, 3, 3)


def smoothness(vectors: Tensor, order: Tensor) -> float:
    """Sum of the cosine similarities of neighbouring items along ``order``."""
    unit = F.normalize(vectors.double(), dim=-1)[order]
    return (unit[1:] * unit[:-1]).sum().item()


def crossfilter_study(timed: tuple[int, int], compared: tuple[int, int], seed: int = 0,
                      kinds: tuple[str, ...] = ("random", "trained-like")) -> list[dict[str, Any]]:
    """Time the clustered crossfilter walk on ``timed``-shaped layers and compare its smoothness with the exact
    greedy chain on ``compared``-shaped ones, for each of ``kinds`` (random-initialised, trained-like)."""
    rows: list[dict[str, Any]] = []
    for kind in kinds:
        kernels = synthetic_layer(kind, *timed, seed).reshape(timed[0] * timed[1], 9)
        wall, cpu = time.perf_counter(), time.process_time()
        order = clustered_chain(kernels)
        rows.append({"layer": f"{kind} {timed[0]}×{timed[1]}×3×3", "kernels": len(kernels), "measure": "time",
                     "cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
                     "smoothness": smoothness(kernels, order)})
        kernels = synthetic_layer(kind, *compared, seed + 1).reshape(compared[0] * compared[1], 9)
        wall, cpu = time.perf_counter(), time.process_time()
        approximate = smoothness(kernels, clustered_chain(kernels))
        exact = smoothness(kernels, greedy_chains(kernels.unsqueeze(0))[0])
        rows.append({"layer": f"{kind} {compared[0]}×{compared[1]}×3×3", "kernels": len(kernels), "measure": "smoothness",
                     "cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall, "smoothness": approximate,
                     "exact_smoothness": exact, "relative": approximate / exact})
    return rows
