"""Sparse export: swap pruned linear maps (``nn.Linear``, 1×1 ``nn.Conv2d``) for CSR (CPU) or 2:4 semi-structured (CUDA) kernels."""

from __future__ import annotations

import copy
import warnings
from typing import Literal

import torch
from torch import Tensor, nn

from oral6_core.errors import ConfigError, ShapeError

ExportMode = Literal["auto", "csr", "semi-structured"]


class CSRLinear(nn.Module):
    """A linear layer whose weight is stored in torch.sparse CSR: y = (W_csr · xᵀ)ᵀ + b (CPU)."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            self.register_buffer("weight", weight.detach().to_sparse_csr())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "CSRLinear":
        return cls(linear.weight, linear.bias)

    def matmul(self, columns: Tensor) -> Tensor:
        """W_csr · X for X of shape (in_features, n)."""
        return torch.sparse.mm(self.weight, columns)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, self.in_features)
        out = self.matmul(flat.t()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


class CSRConv1x1(CSRLinear):
    """A 1×1 convolution (stride 1, no padding, one group) as the linear map over channels it is, in CSR (CPU)."""

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "CSRConv1x1":
        return cls(conv.weight.reshape(conv.out_channels, conv.in_channels), conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        columns = x.transpose(0, 1).reshape(self.in_features, n * h * w)
        out = self.matmul(columns)
        if self.bias is not None:
            out = out + self.bias[:, None]
        return out.view(self.out_features, n, h, w).transpose(0, 1)


def is_pointwise_conv(module: nn.Module) -> bool:
    """True for an ``nn.Conv2d`` that is a plain linear map over channels (1×1 kernel, stride 1, no padding, one group)."""
    return (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.stride == (1, 1)
            and module.padding in ((0, 0), "valid") and module.dilation == (1, 1) and module.groups == 1
            and module.padding_mode == "zeros")


class SemiStructuredLinear(nn.Module):
    """A linear layer whose 2:4-sparse weight uses the GPU's semi-structured sparse tensor cores."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        from torch.sparse import to_sparse_semi_structured

        self.weight = nn.Parameter(to_sparse_semi_structured(linear.weight.detach()), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight, self.bias)


def two_four_mask(weight: Tensor) -> Tensor:
    """Keep the 2 largest |w| in every group of 4 consecutive inputs (the 2:4 pattern)."""
    if weight.shape[-1] % 4:
        raise ShapeError(f"A 2:4 mask needs the input size to be a multiple of 4, not {weight.shape[-1]}.")
    groups = weight.detach().abs().reshape(-1, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, groups.topk(2, dim=1).indices, True)
    return keep.view_as(weight)


def is_two_four(weight: Tensor) -> bool:
    """True when every group of 4 consecutive inputs holds at most 2 non-zeros."""
    return weight.shape[-1] % 4 == 0 and bool(((weight.reshape(-1, 4) != 0).sum(1) <= 2).all())


def semi_structured_supported(device: torch.device) -> bool:
    """2:4 kernels need a CUDA GPU of compute capability ≥ 8.0 (Ampere or newer)."""
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)


def weight_sparsity(weight: Tensor) -> float:
    """Share of exact zeros."""
    return float((weight == 0).sum()) / weight.numel()


def linear_maps(model: nn.Module) -> dict[str, nn.Module]:
    """The modules export can convert: ``nn.Linear`` layers and 1×1 convolutions, by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear) or is_pointwise_conv(m)}


def export_sparse(model: nn.Module, min_sparsity: float = 0.9, mode: ExportMode = "auto") -> tuple[nn.Module, dict[str, str]]:
    """A copy of ``model`` for inference with sparse kernels where they pay; returns it and ``{layer: kernel}``.

    Candidates are linear maps: ``nn.Linear`` layers and 1×1 convolutions. CPU: CSR for candidates with
    sparsity ≥ ``min_sparsity``. CUDA (compute capability ≥ 8.0): 2:4 semi-structured for ``nn.Linear``
    layers whose weights follow the 2:4 pattern (see ``two_four_mask``). Other layers stay dense. Raises
    ``ConfigError`` when no layer could be converted, naming each candidate's sparsity.
    """
    if not 0 <= min_sparsity < 1:
        raise ConfigError(f"min_sparsity must lie in [0, 1), not {min_sparsity}.")
    if mode not in ("auto", "csr", "semi-structured"):
        raise ConfigError(f"Unknown export mode {mode!r}; use auto, csr or semi-structured.")
    exported = copy.deepcopy(model).eval()
    report: dict[str, str] = {}
    for name, module in linear_maps(exported).items():
        replacement, kernel = _sparse_kernel(module, min_sparsity, mode)
        if replacement is not None:
            parent_name, _, attr = name.rpartition(".")
            setattr(exported.get_submodule(parent_name) if parent_name else exported, attr, replacement)
        report[name] = kernel
    if mode == "semi-structured" and "2:4" not in report.values():
        raise ConfigError(
            "No linear layer could use 2:4 semi-structured kernels: they need a CUDA GPU of compute capability ≥ 8.0, "
            "fp16/bf16 weights, and weights pruned to the 2:4 pattern (oral6_smc.export.two_four_mask)."
        )
    if set(report.values()) <= {"dense"}:
        maps = linear_maps(model)
        found = ", ".join(f"{n} ({weight_sparsity(m.weight):.1%})" for n, m in list(maps.items())[:12]) or "none"
        raise ConfigError(
            f"Nothing could be exported: no linear layer or 1×1 convolution is at least {min_sparsity:.0%} sparse "
            f"(sparsity of the candidates: {found}{', ...' if len(maps) > 12 else ''}). Prune the model first "
            f"(e.g. `oral6 train --pruner omp`), or lower --min-sparsity."
        )
    return exported, report


def _sparse_kernel(module: nn.Module, min_sparsity: float, mode: ExportMode) -> tuple[nn.Module | None, str]:
    """The sparse replacement of one linear map and its kernel's name (``None, "dense"`` when none pays)."""
    weight = module.weight
    if weight.device.type == "cpu" and mode in ("auto", "csr") and weight_sparsity(weight) >= min_sparsity:
        if isinstance(module, nn.Linear):
            return CSRLinear.from_linear(module), "csr"
        return CSRConv1x1.from_conv(module), "csr"  # type: ignore[arg-type]
    if (isinstance(module, nn.Linear) and mode in ("auto", "semi-structured") and semi_structured_supported(weight.device)
            and is_two_four(weight)):
        return SemiStructuredLinear(module), "2:4"
    return None, "dense"
