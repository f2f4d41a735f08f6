"""Saliency scores: magnitude |w|, SNIP |w · ∂L/∂w| and oBERT's w² / (2 [F⁻¹]_ii) with the empirical Fisher."""

from __future__ import annotations

from itertools import cycle, islice
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from oral6_core import distributed
from oral6_core.components import Batch

LossFn = Callable[[nn.Module, Batch], Tensor]


def magnitude_scores(params: dict[str, nn.Parameter]) -> dict[str, Tensor]:
    """|w| per weight, written into one buffer that the scores tile in order (a global top-k reads it without a copy)."""
    values = list(params.values())
    if len({(p.device, p.dtype) for p in values}) != 1:
        return {name: p.detach().abs() for name, p in params.items()}
    buffer = torch.empty(sum(p.numel() for p in values), device=values[0].device, dtype=values[0].dtype)
    scores, offset = {}, 0
    for name, p in params.items():
        view = buffer[offset: offset + p.numel()].view_as(p)
        torch.abs(p.detach(), out=view)
        scores[name], offset = view, offset + p.numel()
    return scores


def minibatch_gradients(model: nn.Module, params: dict[str, nn.Parameter], loader: Iterable[Batch], loss_fn: LossFn,
                        count: int, device: torch.device) -> Iterable[dict[str, Tensor]]:
    """Yield ``count`` mini-batch gradients of the prunable weights (averaged across ranks), cycling the loader."""
    for batch in islice(cycle(loader), count):
        model.zero_grad(set_to_none=True)
        loss_fn(model, batch.to(device)).backward()
        yield {name: distributed.all_reduce_mean_(p.grad.detach().clone()) for name, p in params.items()}
    model.zero_grad(set_to_none=True)


def snip_scores(model: nn.Module, params: dict[str, nn.Parameter], loader: Iterable[Batch], loss_fn: LossFn,
                device: torch.device, batches: int = 1) -> dict[str, Tensor]:
    """SNIP connection sensitivity |w ⊙ ∂L/∂w| on ``batches`` mini-batches (gradients summed)."""
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    for grads in minibatch_gradients(model, params, loader, loss_fn, batches, device):
        for name, g in grads.items():
            total[name] += g
    return {name: (params[name].detach() * g).abs() for name, g in total.items()}


def inverse_fisher_diagonal(grads: Tensor, damp: float, block_size: int) -> Tensor:
    """[F⁻¹]_ii for F = λI + (1/m) Σ_j g_j g_jᵀ from ``grads`` (m × n): diagonal F, or block-diagonal via Woodbury.

    Block form (B entries per block, G the m × B gradients): F⁻¹ = (1/λ)(I − Gᵀ(mλI + GGᵀ)⁻¹G).
    """
    m, n = grads.shape
    if block_size <= 0:
        return 1.0 / (damp + grads.pow(2).mean(0))
    pad = (-n) % block_size
    g = nn.functional.pad(grads.double(), (0, pad)).view(m, -1, block_size).transpose(0, 1)  # blocks × m × B
    gram = g @ g.transpose(1, 2) + m * damp * torch.eye(m, dtype=g.dtype, device=g.device)
    solved = torch.linalg.solve(gram, g)
    diag = (1 - (g * solved).sum(1)) / damp
    return diag.reshape(-1)[:n].to(grads.dtype)


def obert_scores(model: nn.Module, params: dict[str, nn.Parameter], loader: Iterable[Batch], loss_fn: LossFn,
                 device: torch.device, num_grads: int, damp: float, block_size: int) -> dict[str, Tensor]:
    """oBERT saliency ρ_i = w_i² / (2 [F⁻¹]_ii) with the empirical Fisher of ``num_grads`` mini-batch gradients."""
    stacked: dict[str, list[Tensor]] = {name: [] for name in params}
    for grads in minibatch_gradients(model, params, loader, loss_fn, num_grads, device):
        for name, g in grads.items():
            stacked[name].append(g.reshape(-1))
    scores = {}
    for name, p in params.items():
        inv_diag = inverse_fisher_diagonal(torch.stack(stacked[name]), damp, block_size)
        scores[name] = (p.detach().reshape(-1).pow(2) / (2 * inv_diag)).view_as(p)
    return scores


def random_scores(params: dict[str, nn.Parameter], seed: int) -> dict[str, Tensor]:
    """Uniform random scores (top-k of them is an exact-size random mask)."""
    scores = {}
    for i, (name, p) in enumerate(params.items()):
        generator = torch.Generator(device=p.device).manual_seed(seed * 1009 + i)
        scores[name] = torch.rand(p.shape, generator=generator, device=p.device)
    return scores
