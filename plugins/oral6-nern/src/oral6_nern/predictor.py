"""NeRN's predictor: an MLP from a kernel's positional encoding to a 3×3 kernel."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .encoding import positional_encoding

KERNEL = 3


def predictor_parameters(hidden: int, levels: int = 40, depth: int = 5) -> int:
    """Parameter count of the predictor: for L=40 and 5 layers, 3h² + 253h + 9."""
    dims = [6 * levels] + [hidden] * (depth - 1) + [KERNEL * KERNEL]
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


class KernelPredictor(nn.Module):
    """Ŵ(l, f, c) = MLP(γ(l, f, c)): ``depth`` linear layers with ReLU between them, width h, output 3×3.

    ``forward`` computes the first layer without materialising γ: W₁γ(l, f, c) = W₁ˡγ(l) + W₁ᶠγ(f) + W₁ᶜγ(c),
    and each term takes one of few values (a layer, filter or channel index), so it is a row of a small table
    γ(0..max)·W₁ᵃᵀ. The result equals ``dense`` (the formula as written) up to float rounding, and the
    (N × 6L)·(6L × h) product and its weight gradient disappear from every step.
    """

    def __init__(self, hidden: int, levels: int = 40, base: float = 0.76, depth: int = 5) -> None:
        super().__init__()
        self.levels, self.base = levels, base
        dims = [6 * levels] + [hidden] * (depth - 1) + [KERNEL * KERNEL]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.ReLU(inplace=True))
        self.mlp = nn.Sequential(*layers)

    def forward(self, coords: Tensor) -> Tensor:
        """Integer coordinates (N, 3) -> kernels (N, 3, 3), first layer by table look-up."""
        first: nn.Linear = self.mlp[0]  # type: ignore[assignment]
        top = int(coords.max()) + 1
        codes = positional_encoding(torch.arange(top, device=coords.device).unsqueeze(1), self.levels, self.base)  # (top, 2L)
        tables = torch.einsum("ve,aoe->avo", codes, first.weight.view(first.out_features, 3, -1).transpose(0, 1))
        flat = coords + torch.arange(3, device=coords.device) * top  # index into the stacked (3·top, h) table
        hidden = F.embedding_bag(flat, tables.reshape(3 * top, -1), mode="sum") + first.bias
        return self.mlp[1:](hidden).view(-1, KERNEL, KERNEL)

    def dense(self, coords: Tensor) -> Tensor:
        """The same map computed literally, MLP(γ(l, f, c)) on the full (N, 6L) encoding."""
        return self.mlp(positional_encoding(coords, self.levels, self.base)).view(-1, KERNEL, KERNEL)
