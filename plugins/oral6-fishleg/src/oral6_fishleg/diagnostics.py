"""How close the learned Q(λ) is to the exact inverse damped Fisher F_γ⁻¹ while FishLeg trains.

``track_inverse_fisher`` trains a model small enough for ``exact_fisher`` and, every few steps,
compares Q(λ)u with F_γ⁻¹u (F on a fixed probe batch) along the update direction u = ḡ/‖ḡ‖ and
along fixed random unit directions, and evaluates the auxiliary loss A(u) = ½ uᵀQF_γQu − uᵀQu
exactly, next to its minimum −½ uᵀF_γ⁻¹u. With ``masks`` the network is sparse: the masked
weights are zero throughout, gradients are masked as a pruner does, and everything is compared on
the kept coordinates S against the inverse of the restricted damped Fisher, (F_SS + γI)⁻¹.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from oral6_core.errors import ConfigError
from torch import Tensor, nn

from .fisher import exact_fisher
from .likelihoods import FishLikelihood
from .optimizer import FishLeg, FishLegConfig


def _flat(tensors: list[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors]).double()


def _compare(opt: FishLeg, fisher: Tensor, chol: Tensor, u: Tensor, kept: Tensor, init_scale: float) -> dict[str, float]:
    """Q u against F_γ⁻¹ u on the kept coordinates for one unit direction u (zero elsewhere); ``init_*``: Q₀ = s·I.

    ``fisher`` and its Cholesky factor ``chol`` are those of the restricted damped Fisher F_SS + γI; the
    product Q u is restricted to S too, since the weights outside S stay zero whatever it says there.
    """
    params = opt.param_groups[0]["params"]
    pieces = [t.view_as(p).to(p.dtype) for t, p in zip(u.split([p.numel() for p in params]), params)]
    q = _flat(opt.precondition(pieces))[kept]
    u = u[kept]
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


def kept_coordinates(params: list[nn.Parameter], masks: Mapping[nn.Parameter, Tensor] | None) -> Tensor:
    """The kept coordinates S as one flat boolean over ``params`` (all of them without ``masks``)."""
    masks = masks or {}
    return torch.cat([(masks[p] if p in masks else torch.ones_like(p, dtype=torch.bool)).reshape(-1) for p in params])


def compare_with_exact(opt: FishLeg, probe_x: Tensor, directions: Tensor,
                       masks: Mapping[nn.Parameter, Tensor] | None = None, step: int = 0) -> dict[str, Any]:
    """Q(λ)u against the exact (F_SS + γI)⁻¹u now, F the exact Fisher of ``opt.model`` on ``probe_x``.

    S is every coordinate without ``masks``; ``directions`` (one per row, over all of the optimizer's
    parameters) are restricted to S and normalised. Returns the ``gbar_*`` (u = ḡ/‖ḡ‖) and
    ``random_*`` (mean over ``directions``) entries described in ``track_inverse_fisher``.
    """
    params = opt.param_groups[0]["params"]
    kept = kept_coordinates(params, masks)
    damping = opt.param_groups[0]["damping"]
    fisher = exact_fisher(opt.model, opt.likelihood, probe_x, params).double()[kept][:, kept]
    fisher += damping * torch.eye(fisher.shape[0], dtype=fisher.dtype, device=fisher.device)
    chol = torch.linalg.cholesky(fisher)
    row: dict[str, Any] = {"step": step}
    scale = opt.init_scale
    momentum = _flat(opt.momentum()) * kept
    if bool(momentum.norm() > 0):
        row.update({f"gbar_{k}": v for k, v in _compare(opt, fisher, chol, momentum / momentum.norm(), kept, scale).items()})
    randoms = directions.double() * kept
    randoms = randoms / randoms.norm(dim=1, keepdim=True)
    random_rows = [_compare(opt, fisher, chol, r, kept, scale) for r in randoms]
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
    masks: dict[nn.Parameter, Tensor] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` with FishLeg on minibatches of (``inputs``, ``targets``) and compare Q(λ) with F_γ⁻¹.

    Returns one row per checkpoint step (default: 0 and six steps spread up to ``steps``) with, for
    u = ḡ/‖ḡ‖ (``gbar_*``) and averaged over ``directions`` random unit vectors (``random_*``):
    ``rel_error`` ‖Qu − F_γ⁻¹u‖/‖F_γ⁻¹u‖, ``cosine``, ``norm_ratio`` ‖Qu‖/‖F_γ⁻¹u‖, ``aux_loss``
    A(u) and ``aux_optimum`` −½uᵀF_γ⁻¹u, and ``init_rel_error``/``init_cosine`` for Q₀ = s·I along the
    same u. F is the exact Fisher on the first ``probe_size`` inputs. ``masks`` (parameter → boolean,
    True keeps) make the network sparse: FishLeg gets them through ``set_masks`` and every quantity is
    taken on the kept coordinates S, against (F_SS + γI)⁻¹ (the random directions lie in S).
    """
    if len(inputs) != len(targets) or len(inputs) < batch_size:
        raise ConfigError(f"track_inverse_fisher needs at least batch_size={batch_size} inputs with one target each; "
                          f"got {len(inputs)} inputs and {len(targets)} targets.")
    checkpoints = sorted(set(checkpoints if checkpoints is not None else [0] + [round(steps * f) for f in
                                                                              (1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4, 1)]))
    opt = FishLeg(model, likelihood, config)
    masks = masks or {}
    with torch.no_grad():
        for p, mask in masks.items():
            p.mul_(mask)
    opt.set_masks(masks)
    size = sum(p.numel() for p in opt.param_groups[0]["params"])
    generator = torch.Generator(device=inputs.device).manual_seed(seed)
    randoms = torch.randn(directions, size, generator=generator, device=inputs.device, dtype=torch.float64)
    probe_x = inputs[:probe_size]
    rows = []
    for step in range(max(checkpoints) + 1):
        if step in checkpoints:
            rows.append(compare_with_exact(opt, probe_x, randoms, masks, step))
        if step == max(checkpoints):
            break
        index = torch.randint(len(inputs), (batch_size,), generator=generator, device=inputs.device)
        opt.observe(inputs[index])
        opt.zero_grad(set_to_none=True)
        likelihood.nll(model(inputs[index]), targets[index]).backward()
        with torch.no_grad():
            for p, mask in masks.items():
                p.grad.mul_(mask)
        opt.step()
        with torch.no_grad():
            for p, mask in masks.items():
                p.mul_(mask)
    return rows
