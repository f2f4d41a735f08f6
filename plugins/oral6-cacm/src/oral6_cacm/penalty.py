"""The grouped MMD penalty: Σ over strata, Σ over pairs of attribute values, MMD²(g | a, s; g | a', s)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .kernels import gaussian_kernel


def mixed_radix(columns: Sequence[Tensor], cardinalities: Sequence[int], like: Tensor) -> Tensor:
    """One integer per row encoding the joint value of ``columns`` (each in ``[0, cardinality)``)."""
    code = torch.zeros(like.shape[0], dtype=torch.long, device=like.device)
    for column, card in zip(columns, cardinalities):
        code = code * card + column.long()
    return code


def grouped_mmd(rep: Tensor, strata: Tensor, values: Tensor, num_values: int, gammas: Sequence[float]) -> tuple[Tensor, Tensor]:
    """Σ_s Σ_{a<a'} MMD²(rep[s, a], rep[s, a']) over cells (stratum s, attribute value a) present in the batch.

    Vectorised: with W the column-normalised cell indicator and K the kernel matrix, S = Wᵀ K W holds
    every block mean, and MMD²(i, j) = S_ii + S_jj − 2 S_ij. Returns the penalty and whether any pair of
    cells shared a stratum (if not, every group was degenerate and the penalty is zero).
    """
    keys = strata.long() * num_values + values.long()
    cells, inverse = torch.unique(keys, return_inverse=True)
    onehot = torch.nn.functional.one_hot(inverse, cells.numel()).to(rep.dtype)
    weights = onehot / onehot.sum(0, keepdim=True)
    block = weights.T @ gaussian_kernel(rep, rep, gammas) @ weights
    diag = block.diagonal()
    mmd = diag[:, None] + diag[None, :] - 2 * block
    cell_stratum = cells // num_values
    pairs = (cell_stratum[:, None] == cell_stratum[None, :]).triu(1)
    return (mmd * pairs).sum(), pairs.any()
