"""NeRN's predictor: an MLP from a kernel's positional encoding to a 3×3 kernel."""

from __future__ import annotations

from torch import Tensor, nn

from .encoding import positional_encoding

KERNEL = 3


def predictor_parameters(hidden: int, levels: int = 40, depth: int = 5) -> int:
    """Parameter count of the predictor: for L=40 and 5 layers, 3h² + 253h + 9."""
    dims = [6 * levels] + [hidden] * (depth - 1) + [KERNEL * KERNEL]
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


class KernelPredictor(nn.Module):
    """Ŵ(l, f, c) = MLP(γ(l, f, c)): ``depth`` linear layers with ReLU between them, width h, output 3×3."""

    def __init__(self, hidden: int, levels: int = 40, base: float = 0.76, depth: int = 5) -> None:
        super().__init__()
        self.levels, self.base = levels, base
        dims = [6 * levels] + [hidden] * (depth - 1) + [KERNEL * KERNEL]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)

    def forward(self, coords: Tensor) -> Tensor:
        """Integer coordinates (N, 3) -> kernels (N, 3, 3)."""
        return self.mlp(positional_encoding(coords, self.levels, self.base)).view(-1, KERNEL, KERNEL)
