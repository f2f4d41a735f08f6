"""Kernel orderings that make neighbouring coordinates hold similar kernels (NeRN §3.3).

A permutation ``perm`` of a layer lists flat kernel indices (filter·C + channel) by rank: the kernel
``perm[r]`` is queried with the coordinate of rank ``r``, ``(layer, r // C, r % C)``, and written back
to its own slot, so the network never has to be un-permuted.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from oral6_core.errors import ConfigError

PermutationMode = Literal["none", "infilter", "crossfilter"]
MODES = ("none", "infilter", "crossfilter")
EXACT_LIMIT = 16384  # crossfilter chains up to this many kernels are exact; longer ones use the clustered walk
CLUSTER_SIZE = 64  # mean kernels per cluster of the clustered walk
SEARCHED_CLUSTERS = 64  # clusters searched per step of the clustered walk


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
def spherical_kmeans(unit: Tensor, clusters: int, iterations: int = 8, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Centres (K, D) and assignments (N,) of unit vectors by cosine k-means, started from a seeded sample."""
    generator = torch.Generator().manual_seed(seed)
    centres = unit[torch.randperm(len(unit), generator=generator)[:clusters]].clone()
    for _ in range(iterations):
        assign = (unit @ centres.T).argmax(1)
        centres = F.normalize(torch.zeros_like(centres).index_add_(0, assign, unit), dim=1)
    return centres, (unit @ centres.T).argmax(1)


@torch.no_grad()
def nested_kmeans(unit: Tensor, clusters: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """About ``clusters`` cosine k-means clusters in two levels: √K coarse clusters, each split into its share of
    the K fine ones. It costs O(N·√K) instead of k-means' O(N·K), which on a 262,144-kernel layer with K = 4,096
    was most of the clustered walk's time."""
    coarse = math.isqrt(clusters)
    if coarse < 2:
        return spherical_kmeans(unit, clusters, seed=seed)
    _, top = spherical_kmeans(unit, coarse, seed=seed)
    centres, assign = [], torch.empty(len(unit), dtype=torch.long)
    for group in range(coarse):
        members = (top == group).nonzero().squeeze(1)
        if len(members) == 0:
            continue
        share = max(1, round(len(members) * clusters / len(unit)))
        fine, local = spherical_kmeans(unit[members], share, seed=seed + 1 + group)
        assign[members] = local + sum(len(c) for c in centres)
        centres.append(fine)
    return torch.cat(centres), assign


@torch.no_grad()
def clustered_chain(vectors: Tensor, cluster_size: int = CLUSTER_SIZE, searched: int = SEARCHED_CLUSTERS) -> Tensor:
    """A greedy nearest-neighbour chain on cosine similarity over (N, D) vectors, in near-linear time.

    The unit vectors are split into about N / ``cluster_size`` clusters (two-level cosine k-means). Each step searches
    the ``searched`` clusters whose centres are nearest the current item's cluster at once (one padded gather
    and one matrix-vector product) and moves to the most similar unvisited item among them. When those are
    used up it searches instead the clusters that can hold the most similar items: from q, no item of a
    cluster of angular radius r at angle θ is more similar than cos(max(0, θ − r)). Searching every cluster
    gives the exact greedy chain; the README measures the default's smoothness against it. Starts at item 0.
    """
    unit = F.normalize(vectors.detach().cpu().double(), dim=-1).float()
    n = len(unit)
    centres_t, assign_t = nested_kmeans(unit, max(1, n // cluster_size))
    vecs, centres, assign = unit.numpy(), centres_t.numpy(), assign_t.numpy()
    k = len(centres)
    count = np.bincount(assign, minlength=k)
    slots = np.zeros((k, count.max(), vecs.shape[1]), np.float32)  # each cluster's unvisited vectors come first
    ids = np.zeros((k, count.max()), np.int64)
    position = np.empty(n, np.int64)
    members = np.split(np.argsort(assign, kind="stable"), np.cumsum(count)[:-1])
    for c, mine in enumerate(members):
        slots[c, : len(mine)], ids[c, : len(mine)], position[mine] = vecs[mine], mine, np.arange(len(mine))
    cos_r = np.clip([(vecs[mine] @ centres[c]).min() if len(mine) else 1.0 for c, mine in enumerate(members)], -1.0, 1.0)
    sin_r = np.sqrt(1.0 - cos_r**2)
    live = min(searched, k)
    near = torch.topk(centres_t @ centres_t.T, live, dim=1).indices.numpy()  # each cluster's nearest clusters
    slot_index = np.arange(slots.shape[1])
    order = np.empty(n, np.int64)
    current = 0
    for step in range(n):
        order[step] = current
        c, p = assign[current], position[current]
        count[c] -= 1
        moved = ids[c, count[c]]
        slots[c, p], ids[c, p], position[moved] = slots[c, count[c]], moved, p
        if step == n - 1:
            break
        q = vecs[current]
        chosen = near[c]
        if not count[chosen].any():  # the neighbourhood is used up: the clusters that can hold the most similar items
            cos_t = centres @ q  # bound = cos(θ − r) for θ > r, else 1
            bound = np.where(cos_t >= cos_r, 1.0, cos_t * cos_r + np.sqrt(np.maximum(1.0 - cos_t**2, 0.0)) * sin_r)
            bound[count == 0] = -np.inf
            chosen = np.argpartition(-bound, live - 1)[:live] if live < k else np.arange(k)
        live_count = count[chosen]
        width = int(live_count.max())  # each cluster's unvisited vectors come first: gather only that prefix
        similarity = (slots[chosen, :width].reshape(-1, slots.shape[2]) @ q).reshape(len(chosen), width)
        similarity[slot_index[:width] >= live_count[:, None]] = -np.inf
        row, col = divmod(int(similarity.argmax()), width)
        current = int(ids[chosen[row], col])
    return torch.from_numpy(order).to(vectors.device)


@torch.no_grad()
def layer_permutation(weight: Tensor, mode: str) -> Tensor:
    """The rank -> flat kernel index permutation of a conv weight (F, C, k, k) for ``mode``.

    ``crossfilter``: one chain over all F·C kernels (exact greedy up to ``EXACT_LIMIT`` kernels, the clustered
    walk of ``clustered_chain`` above). ``infilter``: a chain over the channels of each filter, then a chain over
    the filters, two filters being as similar as the sum of the cosine similarities of their kernels with the
    channels in chain order (the reference's criterion).
    """
    filters, channels = weight.shape[:2]
    kernels = weight.reshape(filters, channels, -1)
    if mode == "none":
        return torch.arange(filters * channels, device=weight.device)
    if mode == "crossfilter":
        flat = kernels.reshape(filters * channels, -1)
        if len(flat) <= EXACT_LIMIT:
            return greedy_chains(flat.unsqueeze(0))[0]
        return clustered_chain(flat)
    if mode == "infilter":
        channel_order = greedy_chains(kernels)  # (F, C)
        ordered = torch.gather(kernels, 1, channel_order.unsqueeze(-1).expand_as(kernels))
        # Unit kernels concatenated: the dot product of two filters is the sum of their kernels' cosines (each such
        # vector has norm √C unless a kernel is zero, so the chain's own normalisation leaves the order unchanged).
        filter_order = greedy_chains(F.normalize(ordered, dim=-1).reshape(1, filters, -1))[0]  # (F,)
        return (filter_order.unsqueeze(1) * channels + channel_order[filter_order]).reshape(-1)
    raise ConfigError(f"Unknown permutation mode {mode!r}; use one of: {', '.join(MODES)}.")


def inverse_permutation(perm: Tensor) -> Tensor:
    """``inv`` with ``inv[perm[r]] = r``."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(perm), device=perm.device)
    return inv
