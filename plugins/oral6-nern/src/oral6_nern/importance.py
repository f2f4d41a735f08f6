"""Weight importance from a NeRN (the paper's third application): prune what the predictor reconstructs worst.

The weights with the largest relative reconstruction error |W − Ŵ| / |W| are taken to be the least
important; pruning them is compared with magnitude pruning (smallest |W| first) and random pruning
at equal sparsity over the represented layers.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import Tensor, nn

from oral6_core.components import Task
from oral6_core.errors import ConfigError
from oral6_core.metrics import evaluate

from .representation import NeRN

PruneCriterion = Literal["reconstruction-error", "magnitude", "random"]
CRITERIA: tuple[PruneCriterion, ...] = ("reconstruction-error", "magnitude", "random")


def relative_errors(original: dict[str, Tensor], reconstructed: dict[str, Tensor]) -> dict[str, Tensor]:
    """e = |W − Ŵ| / |W| for every represented weight."""
    return {k: (original[k] - reconstructed[k].to(original[k].device)).abs() / original[k].abs().clamp_min(1e-12) for k in reconstructed}


def pruning_scores(criterion: str, original: dict[str, Tensor], reconstructed: dict[str, Tensor], seed: int = 0) -> dict[str, Tensor]:
    """Per-weight scores where a higher score is pruned first."""
    if criterion == "reconstruction-error":
        return relative_errors(original, reconstructed)
    if criterion == "magnitude":
        return {k: -original[k].abs() for k in reconstructed}
    if criterion == "random":
        generator = torch.Generator().manual_seed(seed)
        return {k: torch.rand(original[k].shape, generator=generator).to(original[k].device) for k in reconstructed}
    raise ConfigError(f"Unknown pruning criterion {criterion!r}; use one of: {', '.join(CRITERIA)}.")


def prune_highest(model: nn.Module, scores: dict[str, Tensor], sparsity: float) -> nn.Module:
    """A copy of ``model`` whose weights with the highest scores (a ``sparsity`` share, globally) are zero."""
    if not 0 <= sparsity < 1:
        raise ConfigError(f"Sparsity must be in [0, 1), got {sparsity}.")
    pruned = copy.deepcopy(model)
    params = dict(pruned.named_parameters())
    flat = torch.cat([scores[k].flatten() for k in scores])
    count = int(round(sparsity * flat.numel()))
    if count == 0:
        return pruned
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[flat.topk(count).indices] = True
    start = 0
    with torch.no_grad():
        for k, s in scores.items():
            params[k].masked_fill_(chosen[start : start + s.numel()].view_as(s), 0.0)
            start += s.numel()
    return pruned


def importance_study(model: nn.Module, rep: NeRN, test: torch.utils.data.Dataset, task: Task, sparsities: list[float],
                     seed: int = 0) -> list[dict[str, float | str]]:
    """Accuracy of ``model`` after pruning each criterion's highest-scored weights, for every sparsity."""
    device = next(model.parameters()).device
    reconstructed = rep.predicted_weights()
    params = dict(model.named_parameters())
    missing = [k for k in reconstructed if k not in params or params[k].shape != reconstructed[k].shape]
    if missing:
        raise ConfigError(f"The representation does not describe this model (no matching weights for {missing[:3]}); "
                          f"pass the checkpoint the representation was fitted to.")
    original = {k: params[k].detach() for k in reconstructed}
    rows: list[dict[str, float | str]] = []
    for sparsity in sparsities:
        for criterion in CRITERIA:
            pruned = prune_highest(model, pruning_scores(criterion, original, reconstructed, seed), sparsity)
            rows.append({"sparsity": sparsity, "criterion": criterion, "accuracy": evaluate(pruned, test, task, device)["accuracy"]})
    return rows
