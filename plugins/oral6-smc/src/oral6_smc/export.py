"""Sparse export: swap pruned ``nn.Linear`` layers for CSR (CPU) or 2:4 semi-structured (CUDA) kernels."""

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

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            self.register_buffer("weight", linear.weight.detach().to_sparse_csr())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, self.in_features)
        out = torch.sparse.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


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


def export_sparse(model: nn.Module, min_sparsity: float = 0.9, mode: ExportMode = "auto") -> tuple[nn.Module, dict[str, str]]:
    """A copy of ``model`` for inference with sparse kernels where they pay; returns it and ``{layer: kernel}``.

    CPU: CSR for linear layers with sparsity ≥ ``min_sparsity``. CUDA (compute capability ≥ 8.0): 2:4
    semi-structured for linear layers whose weights follow the 2:4 pattern (see ``two_four_mask``).
    Other layers stay dense.
    """
    if not 0 <= min_sparsity < 1:
        raise ConfigError(f"min_sparsity must lie in [0, 1), not {min_sparsity}.")
    if mode not in ("auto", "csr", "semi-structured"):
        raise ConfigError(f"Unknown export mode {mode!r}; use auto, csr or semi-structured.")
    exported = copy.deepcopy(model).eval()
    report: dict[str, str] = {}
    for name, module in list(exported.named_modules()):
        if not isinstance(module, nn.Linear):
            continue
        device = module.weight.device
        kernel = "dense"
        if device.type == "cpu" and mode in ("auto", "csr") and weight_sparsity(module.weight) >= min_sparsity:
            replacement: nn.Module = CSRLinear(module)
            kernel = "csr"
        elif mode in ("auto", "semi-structured") and semi_structured_supported(device) and is_two_four(module.weight):
            replacement = SemiStructuredLinear(module)
            kernel = "2:4"
        if kernel != "dense":
            parent_name, _, attr = name.rpartition(".")
            setattr(exported.get_submodule(parent_name) if parent_name else exported, attr, replacement)
        report[name] = kernel
    if mode == "semi-structured" and "2:4" not in report.values():
        raise ConfigError(
            "No linear layer could use 2:4 semi-structured kernels: they need a CUDA GPU of compute capability ≥ 8.0, "
            "fp16/bf16 weights, and weights pruned to the 2:4 pattern (oral6_smc.export.two_four_mask)."
        )
    return exported, report
