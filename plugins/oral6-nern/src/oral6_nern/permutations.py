"""Kernel orderings that make neighbouring coordinates hold similar kernels (NeRN §3.3).

A permutation ``perm`` of a layer lists flat kernel indices (filter·C + channel) by rank: the kernel
``perm[r]`` is queried with the coordinate of rank ``r``, ``(layer, r // C, r % C)``, and written back
to its own slot, so the network never has to be un-permuted.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from oral6_core.errors import ConfigError

PermutationMode = Literal["none", "infilter", "crossfilter"]
MODES = ("none", "infilter", "crossfilter")


@torch.no_grad()
def greedy_chains(vectors: Tensor) -> Tensor:
    """Greedy nearest-neighbour chains on cosine similarity, one per batch row: (B, N, D) -> orders (B, N).

    Each chain starts at item 0 and repeatedly moves to the most similar item not yet visited. All
    chains walk together; each step computes only the current items' similarities (a batched
    matrix-vector product and a masked arg-max), so memory stays O(B·N) even for huge layers.
    """
    batch, n, _ = vectors.shape
    unit = F.normalize(vectors.float(), dim=-1)
    rows = torch.arange(batch, device=vectors.device)
    order = torch.zeros(batch, n, dtype=torch.long, device=vectors.device)
    visited = torch.zeros(batch, n, dtype=torch.bool, device=vectors.device)
    visited[:, 0] = True
    current = order[:, 0].clone()
    for step in range(1, n):
        similarity = torch.bmm(unit, unit[rows, current].unsqueeze(-1)).squeeze(-1)
        current = similarity.masked_fill_(visited, float("-inf")).argmax(-1)
        visited[rows, current] = True
        order[:, step] = current
    return order


@torch.no_grad()
def layer_permutation(weight: Tensor, mode: str) -> Tensor:
    """The rank -> flat kernel index permutation of a conv weight (F, C, k, k) for ``mode``.

    ``crossfilter``: one chain over all F·C kernels. ``infilter``: a chain over the channels of each
    filter, then a chain over the filters (compared with their channels in chain order).
    """
    filters, channels = weight.shape[:2]
    kernels = weight.reshape(filters, channels, -1)
    if mode == "none":
        return torch.arange(filters * channels, device=weight.device)
    if mode == "crossfilter":
        return greedy_chains(kernels.reshape(1, filters * channels, -1))[0]
    if mode == "infilter":
        channel_order = greedy_chains(kernels)  # (F, C)
        ordered = torch.gather(kernels, 1, channel_order.unsqueeze(-1).expand_as(kernels))
        filter_order = greedy_chains(ordered.reshape(1, filters, -1))[0]  # (F,)
        return (filter_order.unsqueeze(1) * channels + channel_order[filter_order]).reshape(-1)
    raise ConfigError(f"Unknown permutation mode {mode!r}; use one of: {', '.join(MODES)}.")


def inverse_permutation(perm: Tensor) -> Tensor:
    """``inv`` with ``inv[perm[r]] = r``."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(perm), device=perm.device)
    return inv
