"""How close the learned Q(λ) is to the exact inverse damped Fisher F_γ⁻¹ while FishLeg trains.

``track_inverse_fisher`` trains a model small enough for ``exact_fisher`` and, every few steps,
compares Q(λ)u with F_γ⁻¹u (F on a fixed probe batch) along the update direction u = ḡ/‖ḡ‖ and
along fixed random unit directions, and evaluates the auxiliary loss A(u) = ½ uᵀQF_γQu − uᵀQu
exactly, next to its minimum −½ uᵀF_γ⁻¹u.
"""

from __future__ import annotations

from typing import Any

import torch
from oral6_core.errors import ConfigError
from torch import Tensor, nn

from .fisher import exact_fisher
from .likelihoods import FishLikelihood
from .optimizer import FishLeg, FishLegConfig


def _flat(tensors: list[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors]).double()


def _compare(opt: FishLeg, fisher: Tensor, chol: Tensor, u: Tensor, init_scale: float) -> dict[str, float]:
    """Q u against F_γ⁻¹ u for one unit direction u; ``init_*``: the same for the initial Q₀ = s·I."""
    params = opt.param_groups[0]["params"]
    pieces = [t.view_as(p).to(p.dtype) for t, p in zip(u.split([p.numel() for p in params]), params)]
    q = _flat(opt.precondition(pieces))
    target = torch.cholesky_solve(u.unsqueeze(1), chol).squeeze(1)
    return {
        "rel_error": float((q - target).norm() / target.norm()),
        "cosine": float(q @ target / (q.norm() * target.norm())),
        "norm_ratio": float(q.norm() / target.norm()),
        "aux_loss": float(0.5 * q @ (fisher @ q) - u @ q),
        "aux_optimum": float(-0.5 * u @ target),
        "init_rel_error": float((init_scale * u - target).norm() / target.norm()),
        "init_cosine": float(u @ target / target.norm()),
    }


def _checkpoint(opt: FishLeg, model: nn.Module, likelihood: FishLikelihood, probe_x: Tensor, randoms: Tensor,
                step: int) -> dict[str, Any]:
    damping = opt.param_groups[0]["damping"]
    fisher = exact_fisher(model, likelihood, probe_x).double()
    fisher += damping * torch.eye(fisher.shape[0], dtype=fisher.dtype, device=fisher.device)
    chol = torch.linalg.cholesky(fisher)
    row: dict[str, Any] = {"step": step}
    scale = opt.init_scale
    momentum = _flat(opt.momentum())
    if bool(momentum.norm() > 0):
        row.update({f"gbar_{k}": v for k, v in _compare(opt, fisher, chol, momentum / momentum.norm(), scale).items()})
    random_rows = [_compare(opt, fisher, chol, r, scale) for r in randoms]
    row.update({f"random_{k}": sum(r[k] for r in random_rows) / len(random_rows) for k in random_rows[0]})
    return row


def track_inverse_fisher(
    model: nn.Module,
    likelihood: FishLikelihood,
    inputs: Tensor,
    targets: Tensor,
    config: FishLegConfig | None = None,
    steps: int = 400,
    batch_size: int = 32,
    checkpoints: list[int] | None = None,
    probe_size: int = 64,
    directions: int = 8,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Train ``model`` with FishLeg on minibatches of (``inputs``, ``targets``) and compare Q(λ) with F_γ⁻¹.

    Returns one row per checkpoint step (default: 0 and six steps spread up to ``steps``) with, for
    u = ḡ/‖ḡ‖ (``gbar_*``) and averaged over ``directions`` random unit vectors (``random_*``):
    ``rel_error`` ‖Qu − F_γ⁻¹u‖/‖F_γ⁻¹u‖, ``cosine``, ``norm_ratio`` ‖Qu‖/‖F_γ⁻¹u‖, ``aux_loss``
    A(u) and ``aux_optimum`` −½uᵀF_γ⁻¹u, and ``init_rel_error``/``init_cosine`` for Q₀ = s·I along the
    same u. F is the exact Fisher on the first ``probe_size`` inputs.
    """
    if len(inputs) != len(targets) or len(inputs) < batch_size:
        raise ConfigError(f"track_inverse_fisher needs at least batch_size={batch_size} inputs with one target each; "
                          f"got {len(inputs)} inputs and {len(targets)} targets.")
    checkpoints = sorted(set(checkpoints if checkpoints is not None else [0] + [round(steps * f) for f in
                                                                              (1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4, 1)]))
    opt = FishLeg(model, likelihood, config)
    size = sum(p.numel() for p in opt.param_groups[0]["params"])
    generator = torch.Generator(device=inputs.device).manual_seed(seed)
    randoms = torch.randn(directions, size, generator=generator, device=inputs.device, dtype=torch.float64)
    randoms /= randoms.norm(dim=1, keepdim=True)
    probe_x = inputs[:probe_size]
    rows = []
    for step in range(max(checkpoints) + 1):
        if step in checkpoints:
            rows.append(_checkpoint(opt, model, likelihood, probe_x, randoms, step))
        if step == max(checkpoints):
            break
        index = torch.randint(len(inputs), (batch_size,), generator=generator, device=inputs.device)
        opt.observe(inputs[index])
        opt.zero_grad(set_to_none=True)
        likelihood.nll(model(inputs[index]), targets[index]).backward()
        opt.step()
    return rows
