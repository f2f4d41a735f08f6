"""The mask engine: the prunable set, layer-wise allocation, exact top-k masks, and keeping them applied."""

from __future__ import annotations

import fnmatch
import math
from contextlib import contextmanager
from typing import Iterator, Literal, Sequence

import torch
from torch import Tensor, nn

from oral6_core import distributed
from oral6_core.errors import ConfigError

Allocation = Literal["global", "uniform", "erk"]


def embedding_names(model: nn.Module) -> set[str]:
    """Names of the weights of ``nn.Embedding`` modules (token tables)."""
    return {f"{m}.weight" if m else "weight" for m, mod in model.named_modules() if isinstance(mod, nn.Embedding)}


def head_names(model: nn.Module) -> set[str]:
    """Names of the classifier's weight: ``get_classifier()`` when the model has one, else the last ``nn.Linear``."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(head, nn.Module):
        linears = [mod for mod in model.modules() if isinstance(mod, nn.Linear)]
        head = linears[-1] if linears else None
    if head is None:
        return set()
    ids = {id(p) for p in head.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids and p.dim() >= 2}


def _check_patterns(patterns: Sequence[str], names: list[str], option: str) -> None:
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise ConfigError(
                f"pruner.{option} pattern {pattern!r} matches no parameter of the model, so it would silently do "
                f"nothing. Patterns are shell-style globs over parameter names such as: {shown}. Fix the pattern or "
                f"remove it."
            )


def select_prunable(
    model: nn.Module,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    prune_embeddings: bool = False,
    prune_head: bool = False,
) -> dict[str, nn.Parameter]:
    """The prunable set: parameters named ``*weight`` with ≥ 2 dims, minus embeddings/head unless asked, filtered by globs."""
    all_names = [n for n, _ in model.named_parameters()]
    _check_patterns(include, all_names, "include")
    _check_patterns(exclude, all_names, "exclude")
    skipped = set()
    if not prune_embeddings:
        skipped |= embedding_names(model)
    if not prune_head:
        skipped |= head_names(model)
    chosen = {}
    for name, p in model.named_parameters():
        if p.dim() < 2 or not name.endswith("weight") or name in skipped:
            continue
        if include and not any(fnmatch.fnmatch(name, pat) for pat in include):
            continue
        if any(fnmatch.fnmatch(name, pat) for pat in exclude):
            continue
        chosen[name] = p
    if not chosen:
        raise ConfigError(
            "The pruner found no prunable weight (weights with ≥ 2 dims, without embeddings and the head unless "
            "pruner.prune_embeddings / pruner.prune_head are true, after pruner.include / pruner.exclude). "
            "Loosen the patterns or allow the head/embeddings."
        )
    return chosen


SAMPLE_SIZE = 1 << 16  # scores sampled to bracket the k-th largest
EXACT_BELOW = 1 << 18  # fewer scores than this: plain kthvalue


def kth_largest(scores: Tensor, k: int) -> Tensor:
    """The ``k``-th largest entry of a 1-D ``scores`` (1 ≤ k ≤ n), exactly.

    A fixed-seed sample brackets the answer; one pass counts the scores above the bracket and one
    gathers those inside it, and ``kthvalue`` on that small set gives the exact value (a few passes
    over the scores instead of ``kthvalue``'s copy and selection over all of them). If the bracket
    misses, it falls back to ``kthvalue`` over all scores.
    """
    n = scores.numel()
    if n < EXACT_BELOW:
        return scores.kthvalue(n - k + 1).values
    generator = torch.Generator(device=scores.device).manual_seed(0)
    sample = scores[torch.randint(n, (SAMPLE_SIZE,), generator=generator, device=scores.device)].sort().values
    share = (n - k + 0.5) / n  # the answer's position from below, as a share
    margin = int(4 * math.sqrt(SAMPLE_SIZE * share * (1 - share))) + 32
    centre = int(share * SAMPLE_SIZE)
    low, high = sample[max(centre - margin, 0)], sample[min(centre + margin, SAMPLE_SIZE - 1)]
    above = int((scores > high).count_nonzero())
    inside = scores[(scores >= low) & (scores <= high)]
    rank = k - above  # the answer is the rank-th largest score inside the bracket
    if not 1 <= rank <= inside.numel():
        return scores.kthvalue(n - k + 1).values
    return inside.kthvalue(inside.numel() - rank + 1).values


def exact_topk_mask(scores: Tensor, k: int) -> Tensor:
    """Boolean mask of exactly ``k`` largest entries of a 1-D ``scores`` (ties broken by position)."""
    n = scores.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    threshold = kth_largest(scores, k)
    mask = scores > threshold
    missing = k - int(mask.count_nonzero())
    if missing > 0:
        ties = (scores == threshold).nonzero().squeeze(1)[:missing]
        mask[ties] = True
    return mask


def flat_scores(scores: dict[str, Tensor]) -> Tensor:
    """All scores as one 1-D tensor: the buffer they already tile in order (see ``magnitude_scores``), else a copy."""
    values = list(scores.values())
    first = values[0]
    offset = first.storage_offset()
    tiled = all(v.is_contiguous() and v.untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
                and v.storage_offset() == offset + sum(u.numel() for u in values[:i]) for i, v in enumerate(values))
    total = sum(v.numel() for v in values)
    if tiled and first.untyped_storage().nbytes() >= (offset + total) * first.element_size():
        return first.new_empty(0).set_(first.untyped_storage(), offset, (total,))
    return torch.cat([v.reshape(-1) for v in values])


def _largest_remainder(quotas: list[float], sizes: list[int], total: int) -> list[int]:
    """Round per-layer quotas to integers ≤ size that sum exactly to ``total``."""
    counts = [min(int(math.floor(q)), s) for q, s in zip(quotas, sizes)]
    order = sorted(range(len(quotas)), key=lambda i: quotas[i] - math.floor(quotas[i]), reverse=True)
    left = total - sum(counts)
    for i in order * 2:
        if left <= 0:
            break
        if counts[i] < sizes[i]:
            counts[i] += 1
            left -= 1
    return counts


def erk_densities(shapes: Sequence[torch.Size], density: float) -> list[float]:
    """Erdős–Rényi-kernel densities: d_l = ε·(Σ dims)/(Π dims), dense where that exceeds 1, Σ d_l n_l = d·N."""
    sizes = [math.prod(s) for s in shapes]
    raw = [sum(s) / math.prod(s) for s in shapes]
    dense: set[int] = set()
    target = density * sum(sizes)
    while True:
        budget = target - sum(sizes[i] for i in dense)
        weight = sum(raw[i] * sizes[i] for i in range(len(sizes)) if i not in dense)
        eps = budget / weight if weight > 0 else 0.0
        over = {i for i in range(len(sizes)) if i not in dense and eps * raw[i] > 1}
        if not over:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(sizes))]
        dense |= over


def layer_counts(shapes: Sequence[torch.Size], density: float, allocation: Allocation) -> list[int]:
    """Weights kept per layer for ``uniform`` or ``erk`` allocation; the total is exactly round(d·N)."""
    sizes = [math.prod(s) for s in shapes]
    total = round(density * sum(sizes))
    if allocation == "uniform":
        quotas = [density * n for n in sizes]
    elif allocation == "erk":
        quotas = [d * n for d, n in zip(erk_densities(shapes, density), sizes)]
    else:
        raise ConfigError(f"Unknown allocation {allocation!r}; use global, uniform or erk.")
    return _largest_remainder(quotas, sizes, total)


def topk_masks(scores: dict[str, Tensor], density: float, allocation: Allocation) -> dict[str, Tensor]:
    """Keep the highest scores: one global top-k over all layers, or a top-k per layer (uniform/ERK)."""
    if allocation == "global":
        flat = flat_scores(scores)
        keep = exact_topk_mask(flat, round(density * flat.numel()))
        pieces = keep.split([s.numel() for s in scores.values()])
        return {name: piece.view_as(s) for (name, s), piece in zip(scores.items(), pieces)}
    counts = layer_counts([s.shape for s in scores.values()], density, allocation)
    return {name: exact_topk_mask(s.reshape(-1), k).view_as(s) for (name, s), k in zip(scores.items(), counts)}


class MaskSet:
    """Boolean masks over named parameters, kept applied to weights, gradients and optimizer state."""

    def __init__(self, params: dict[str, nn.Parameter]) -> None:
        self.params = params
        self.masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in params.items()}
        self.dense = True  # no mask has been set yet
        self._recording = False
        self._undo: dict[str, Tensor] = {}
        self._versions: dict[str, int] = {}

    @contextmanager
    def undoable(self) -> Iterator[None]:
        """Remember the weights as they are before masking inside the block, so that ``undo`` can give them back."""
        self._recording, self._undo = True, {}
        try:
            yield
        finally:
            self._recording = False
            self._versions = {name: p._version for name, p in self.params.items()}

    @torch.no_grad()
    def undo(self) -> bool:
        """Put back the weights from before the last ``undoable`` block if no weight changed since; True if it did."""
        record, self._undo = self._undo, {}
        if not record or any(p._version != self._versions.get(n) for n, p in self.params.items()):
            return False
        for name, values in record.items():
            self.params[name].copy_(values)
        return True

    def forget_undo(self) -> None:
        """Drop the remembered weights (training has started: they are stale)."""
        self._undo = {}

    def set(self, masks: dict[str, Tensor]) -> None:
        """Replace the masks (same names and shapes), agreed across ranks, and zero the pruned weights."""
        for name, mask in masks.items():
            self.masks[name] = mask.to(device=self.params[name].device, dtype=torch.bool).view_as(self.params[name])
        self.dense = False
        self.broadcast()
        self.apply_to_weights()

    def broadcast(self) -> None:
        """Make every rank hold rank 0's masks (a no-op without a process group)."""
        if not distributed.is_active():
            return
        for name, mask in self.masks.items():
            as_bytes = mask.to(torch.uint8)
            distributed.broadcast_(as_bytes)
            self.masks[name] = as_bytes.bool()

    @torch.no_grad()
    def apply_to_weights(self) -> None:
        """w ← w ⊙ m (inside ``undoable``, the weights are first copied once)."""
        for name, p in self.params.items():
            if self._recording and name not in self._undo:
                self._undo[name] = p.detach().clone()
            p.mul_(self.masks[name])  # one pass, no temporary (a pruned negative weight becomes -0.0, which == 0)

    @torch.no_grad()
    def apply_to_grads(self) -> None:
        """∇w ← ∇w ⊙ m."""
        for name, p in self.params.items():
            if p.grad is not None:
                p.grad.masked_fill_(~self.masks[name], 0)

    @torch.no_grad()
    def apply_to_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero every per-weight optimizer buffer (momentum, Adam moments, ...) at pruned positions."""
        for name, p in self.params.items():
            for value in optimizer.state.get(p, {}).values():
                if isinstance(value, Tensor) and value.shape == p.shape:
                    value.masked_fill_(~self.masks[name], 0)

    def density(self) -> float:
        """Share of kept entries over the prunable set (from the masks)."""
        kept = sum(int(m.count_nonzero()) for m in self.masks.values())
        return kept / sum(m.numel() for m in self.masks.values())

    @torch.no_grad()
    def measured_sparsity(self) -> dict[str, float]:
        """Share of exactly-zero weights per layer and ``overall``, measured on the model's weights."""
        report, zeros, total = {}, 0, 0
        for name, p in self.params.items():
            z = int((p == 0).sum())
            report[name] = z / p.numel()
            zeros, total = zeros + z, total + p.numel()
        report["overall"] = zeros / total
        return report
