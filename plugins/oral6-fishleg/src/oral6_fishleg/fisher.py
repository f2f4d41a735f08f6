"""Fisher-vector products with labels sampled from the model (the "sampled" Fisher).

With y ~ p(y | x, θ) drawn once, F v is estimated as the Hessian-vector product of the sampled-label
NLL, ∇²_θ ℓ(θ; x, y) v (exact, through autograd), or by the antithetic finite difference
[∇ℓ(θ + hv) − ∇ℓ(θ − hv)] / 2h with the same labels. Its expectation over y is the Fisher
E_x E_y[∇ℓ ∇ℓᵀ] v; for a model linear in θ with a canonical link it equals F v for any y.
A third form, ``fisher``, uses the same sampled labels in the Fisher's own outer-product form,
F̂ v = (1/N) Σₙ Jₙᵀ sₙ sₙᵀ Jₙ v with sₙ = ∇_f[−log p(yₙ | fₙ)] and Jₙ v from forward-mode AD:
unbiased like the others but positive semi-definite, so the auxiliary loss stays bounded below, and
the cheapest: one forward pass carrying J v in forward mode and one backward pass.
``exact_fisher`` builds the exact Fisher of a small model as a matrix (the oracle of the diagnostics).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Literal, Sequence

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor, nn
from torch.func import functional_call

from .likelihoods import FishLikelihood

FvpMethod = Literal["hvp", "antithetic", "fisher"]


@contextmanager
def buffers_restored(model: nn.Module) -> Iterator[None]:
    """Run extra forward passes without changing running statistics (BatchNorm) or other buffers."""
    saved = [(b, b.clone()) for b in model.buffers()] if model.training else []
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def _grads_or_zeros(grads: Sequence[Tensor | None], params: Sequence[Tensor]) -> list[Tensor]:
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def fisher_vector_product(
    model: nn.Module,
    likelihood: FishLikelihood,
    x: Tensor,
    params: Sequence[nn.Parameter],
    vectors: Sequence[Tensor],
    generator: torch.Generator | None = None,
    method: FvpMethod = "hvp",
    fd_eps: float = 1e-3,
) -> list[Tensor]:
    """F̂ v for ``vectors`` (one per parameter in ``params``) on inputs ``x``, labels drawn from the model."""
    with buffers_restored(model), torch.enable_grad():
        if method == "hvp":
            return _hvp(model, likelihood, x, params, vectors, generator)
        if method == "fisher":
            return _sampled_fisher(model, likelihood, x, params, vectors, generator)
        return _antithetic(model, likelihood, x, params, vectors, generator, fd_eps)


def _hvp(model: nn.Module, likelihood: FishLikelihood, x: Tensor, params: Sequence[nn.Parameter],
         vectors: Sequence[Tensor], generator: torch.Generator | None) -> list[Tensor]:
    output = model(x)
    loss = likelihood.nll(output, likelihood.draw(output, generator))
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vectors) if g is not None)
    if not isinstance(dot, Tensor) or not dot.requires_grad:
        return [torch.zeros_like(p) for p in params]
    return _grads_or_zeros(torch.autograd.grad(dot, params, allow_unused=True), params)


def _antithetic(model: nn.Module, likelihood: FishLikelihood, x: Tensor, params: Sequence[nn.Parameter],
                vectors: Sequence[Tensor], generator: torch.Generator | None, fd_eps: float) -> list[Tensor]:
    with torch.no_grad():
        target = likelihood.draw(model(x), generator)
        norm = torch.sqrt(sum((v * v).sum() for v in vectors))  # type: ignore[arg-type]
    if not bool(norm > 0):
        return [torch.zeros_like(p) for p in params]
    h = fd_eps / norm
    names = {id(p): n for n, p in model.named_parameters()}

    def gradient_at(sign: float) -> list[Tensor]:
        moved = [(p.detach() + sign * h * v).requires_grad_() for p, v in zip(params, vectors)]
        loss = likelihood.nll(functional_call(model, {names[id(p)]: m for p, m in zip(params, moved)}, (x,)), target)
        return _grads_or_zeros(torch.autograd.grad(loss, moved, allow_unused=True), params)

    plus, minus = gradient_at(1.0), gradient_at(-1.0)
    return [(a - b) / (2 * h) for a, b in zip(plus, minus)]


def _sampled_fisher(model: nn.Module, likelihood: FishLikelihood, x: Tensor, params: Sequence[nn.Parameter],
                    vectors: Sequence[Tensor], generator: torch.Generator | None) -> list[Tensor]:
    """One forward pass carrying J v as a forward-mode tangent, then one backward pass for Jᵀ(s sᵀ J v)."""
    names = {id(p): n for n, p in model.named_parameters()}
    with fwAD.dual_level():
        duals = {names[id(p)]: fwAD.make_dual(p, v.detach()) for p, v in zip(params, vectors)}
        output, jv = fwAD.unpack_dual(functional_call(model, duals, (x,)))
    jv = jv.detach() if jv is not None else torch.zeros_like(output)
    detached = output.detach().requires_grad_()
    total_nll = likelihood.nll(detached, likelihood.draw(detached, generator)) * output.shape[0]
    score = torch.autograd.grad(total_nll, detached)[0]
    weights = score * (score * jv).flatten(1).sum(1).view(-1, *[1] * (score.dim() - 1)) / output.shape[0]
    return _grads_or_zeros(torch.autograd.grad(output, params, weights, allow_unused=True), params)


def exact_fisher(model: nn.Module, likelihood: FishLikelihood, x: Tensor, params: Sequence[nn.Parameter] | None = None,
                 chunk: int = 32) -> Tensor:
    """The exact Fisher (1/N) Σₙ Jₙᵀ Λₙ Jₙ over ``params`` (default: all trainable), as a dense float64 matrix.

    Λₙ = E_y[sₙ sₙᵀ] is the likelihood's Fisher in output space (``output_fisher``) and Jₙ the
    Jacobian of the network output for example n. Meant for models with a few thousand parameters.
    """
    params = [p for p in model.parameters() if p.requires_grad] if params is None else list(params)
    names = {id(p): n for n, p in model.named_parameters()}
    values = {names[id(p)]: p.detach() for p in params}

    def output(values: dict[str, Tensor], row: Tensor) -> Tensor:
        return functional_call(model, values, (row.unsqueeze(0),)).reshape(-1)

    jacobian = torch.func.vmap(torch.func.jacrev(output), in_dims=(None, 0))
    size = sum(p.numel() for p in params)
    fisher = torch.zeros(size, size, dtype=torch.float64, device=x.device)
    with buffers_restored(model), torch.no_grad():
        for rows in x.split(chunk):
            jac = torch.cat([j.flatten(2) for j in jacobian(values, rows).values()], dim=2).double()  # (n, outputs, P)
            lam = likelihood.output_fisher(functional_call(model, values, (rows,)).flatten(1)).double()
            fisher += jac.reshape(-1, size).T @ (lam @ jac).reshape(-1, size)
    return fisher / x.shape[0]
