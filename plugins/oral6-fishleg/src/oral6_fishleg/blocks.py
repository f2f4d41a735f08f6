"""Q(λ) per layer: the structured, learned approximation of the inverse damped Fisher F_γ⁻¹.

A block owns the parameters that share one factor of Q and stores them as one matrix U:
- ``KroneckerBlock`` (Linear, Conv1d/2d/3d): U = [W | b] with W reshaped to out × fan_in, and
  Q(λ)U = A ⊙ (RᵀR (A ⊙ U) LᵀL), i.e. Q = D_A (LᵀL ⊗ RᵀR) D_A with λ = (L, R, A);
- ``DiagonalBlock`` (norm layers, embeddings and every other parameter): Q(λ)u = d ⊙ d ⊙ u.
Both start at Q₀ = s·I (s = ``init_scale``), so the first FishLeg step is an SGD step with lr η·s.

``lambda_grads`` returns ∇_λ ⟨d, Q(λ)u⟩ for a fixed d in closed form (the gradient of the auxiliary
loss), reusing the cached Gram matrices instead of differentiating through them.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
KRONECKER_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class QBlock:
    """Parameters sharing one factor of Q(λ); ``kind`` says which rule chose it."""

    kind: str = ""
    lambda_names: tuple[str, ...] = ()

    def __init__(self, params: Sequence[nn.Parameter], label: str) -> None:
        self.params = list(params)
        self.label = label

    def gather(self, tensors: Sequence[Tensor]) -> Tensor:
        """Per-parameter tensors → the block's matrix layout."""
        raise NotImplementedError

    def scatter(self, matrix: Tensor) -> list[Tensor]:
        """The block's matrix layout → per-parameter tensors (views)."""
        raise NotImplementedError

    def init_lambda(self, scale: float, like: Tensor) -> dict[str, Tensor]:
        """λ such that Q(λ) = scale · I."""
        raise NotImplementedError

    def factors(self, lam: dict[str, Tensor]) -> dict[str, Tensor]:
        """What ``apply`` needs from λ (Gram matrices), cached between auxiliary updates."""
        raise NotImplementedError

    def apply(self, factors: dict[str, Tensor], u: Tensor) -> Tensor:
        """Q(λ) u in the block's matrix layout (differentiable in λ through ``factors``)."""
        raise NotImplementedError

    def lambda_grads(self, lam: dict[str, Tensor], factors: dict[str, Tensor], u: Tensor, d: Tensor) -> dict[str, Tensor]:
        """∇_λ ⟨d, Q(λ)u⟩ with d held fixed, one tensor per entry of ``lam``."""
        raise NotImplementedError


class KroneckerBlock(QBlock):
    """Q(λ)U = A ⊙ (RᵀR (A ⊙ U) LᵀL) for U = [W | b] of a Linear or Conv layer."""

    kind = "kronecker"

    def __init__(self, weight: nn.Parameter, bias: nn.Parameter | None, label: str, elementwise: bool = True) -> None:
        super().__init__([weight] if bias is None else [weight, bias], label)
        self.out_features = weight.shape[0]
        self.fan_in = weight[0].numel()
        self.has_bias = bias is not None
        self.cols = self.fan_in + int(self.has_bias)
        self.lambda_names = ("left", "right", "scale") if elementwise else ("left", "right")

    def gather(self, tensors: Sequence[Tensor]) -> Tensor:
        weight = tensors[0].reshape(self.out_features, self.fan_in)
        if not self.has_bias:
            return weight.clone()
        return torch.cat([weight, tensors[1].reshape(self.out_features, 1)], dim=1)

    def scatter(self, matrix: Tensor) -> list[Tensor]:
        weight = matrix[:, : self.fan_in].reshape(self.params[0].shape)
        return [weight, matrix[:, self.fan_in]] if self.has_bias else [weight]

    def init_lambda(self, scale: float, like: Tensor) -> dict[str, Tensor]:
        root = scale**0.25
        lam = {
            "left": root * torch.eye(self.cols, dtype=like.dtype, device=like.device),
            "right": root * torch.eye(self.out_features, dtype=like.dtype, device=like.device),
        }
        if "scale" in self.lambda_names:
            lam["scale"] = torch.ones(self.out_features, self.cols, dtype=like.dtype, device=like.device)
        return lam

    def factors(self, lam: dict[str, Tensor]) -> dict[str, Tensor]:
        out = {"left_gram": lam["left"].T @ lam["left"], "right_gram": lam["right"].T @ lam["right"]}
        if "scale" in lam:
            out["scale"] = lam["scale"]
        return out

    def apply(self, factors: dict[str, Tensor], u: Tensor) -> Tensor:
        scale = factors.get("scale")
        if scale is not None:
            u = scale * u
        z = factors["right_gram"] @ u @ factors["left_gram"]
        return scale * z if scale is not None else z

    def lambda_grads(self, lam: dict[str, Tensor], factors: dict[str, Tensor], u: Tensor, d: Tensor) -> dict[str, Tensor]:
        # s = ⟨E, G_R V G_L⟩ with V = A ⊙ u, E = A ⊙ d, G_L = LᵀL, G_R = RᵀR; ∂s/∂L = L(S + Sᵀ) for S = ∂s/∂G_L.
        scale = factors.get("scale")
        v, e = (u, d) if scale is None else (scale * u, scale * d)
        right_v = factors["right_gram"] @ v
        v_left = v @ factors["left_gram"]
        left = right_v.T @ e
        right = e @ v_left.T
        grads = {"left": lam["left"] @ (left + left.T), "right": lam["right"] @ (right + right.T)}
        if scale is not None:
            grads["scale"] = d * (right_v @ factors["left_gram"]) + u * (factors["right_gram"] @ e @ factors["left_gram"])
        return grads


class DiagonalBlock(QBlock):
    """Q(λ)u = d ⊙ d ⊙ u for one parameter (norm layers, embeddings, anything else)."""

    lambda_names = ("diag",)

    def __init__(self, param: nn.Parameter, label: str, kind: str) -> None:
        super().__init__([param], label)
        self.kind = kind

    def gather(self, tensors: Sequence[Tensor]) -> Tensor:
        return tensors[0].clone()

    def scatter(self, matrix: Tensor) -> list[Tensor]:
        return [matrix]

    def init_lambda(self, scale: float, like: Tensor) -> dict[str, Tensor]:
        return {"diag": torch.full_like(like, scale**0.5)}

    def factors(self, lam: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"diag_sq": lam["diag"] * lam["diag"]}

    def apply(self, factors: dict[str, Tensor], u: Tensor) -> Tensor:
        return factors["diag_sq"] * u

    def lambda_grads(self, lam: dict[str, Tensor], factors: dict[str, Tensor], u: Tensor, d: Tensor) -> dict[str, Tensor]:
        return {"diag": 2 * lam["diag"] * d * u}


def build_blocks(model: nn.Module, elementwise: bool = True, max_factor_size: int = 2048) -> list[QBlock]:
    """One block per Linear/Conv layer (Kronecker) and one diagonal block per remaining trainable parameter.

    A Linear or Conv layer whose factor would exceed ``max_factor_size`` rows, or whose weight is
    frozen, falls back to diagonal blocks. Shared parameters get a single block.
    """
    blocks: list[QBlock] = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        if not isinstance(module, KRONECKER_LAYERS) or id(module.weight) in seen or not module.weight.requires_grad:
            continue
        weight = module.weight
        bias = module.bias if module.bias is not None and module.bias.requires_grad and id(module.bias) not in seen else None
        block = KroneckerBlock(weight, bias, module_name or type(module).__name__, elementwise)
        if max(block.cols, block.out_features) > max_factor_size:
            continue
        blocks.append(block)
        seen.update(id(p) for p in block.params)
    modules = dict(model.named_modules())
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        module = modules.get(name.rpartition(".")[0])
        if isinstance(module, NORM_LAYERS):
            kind = "diagonal-norm"
        elif isinstance(module, nn.Embedding):
            kind = "diagonal-embedding"
        else:
            kind = "diagonal-other"
        blocks.append(DiagonalBlock(param, name, kind))
    return blocks
