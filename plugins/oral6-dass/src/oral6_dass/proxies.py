"""Zero-cost proxies scored on one minibatch at initialisation (Abdelfattah et al. 2021; Mellor et al. 2021).

Each sums a per-weight saliency over the weights of convolutions and linear layers:
synflow ``Σ|θ ⊙ ∂R/∂θ|`` with ``R = 1ᵀ f_{|θ|}(1)``; snip ``Σ|θ ⊙ ∂L/∂θ|``; grad-norm ``Σ_layers ‖∂L/∂W‖₂``;
NASWOT ``log|det K|`` with ``K_ij = N_R − d_H(c_i, c_j)`` over the binary ReLU codes ``c``.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _weighted_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def synflow(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """SynFlow: ``Σ|θ ⊙ ∂R/∂θ|`` of the network with all weights replaced by their absolute values,
    ``R`` the summed output for an all-ones input (double precision, BN in eval mode)."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.state_dict().values():
            if p.is_floating_point():
                p.abs_()
    device = next(net.parameters()).device
    net.zero_grad()
    net(torch.ones((1, *input_shape), dtype=torch.float64, device=device)).sum().backward()
    return float(sum((m.weight * m.weight.grad).detach().abs().sum() for m in _weighted_layers(net)))


def _loss_gradients(model: nn.Module, x: Tensor, y: Tensor) -> list[nn.Module]:
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return _weighted_layers(model)


def snip(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """SNIP: ``Σ|θ ⊙ ∂L/∂θ|`` of the cross-entropy on one minibatch."""
    layers = _loss_gradients(model, x, y)
    return float(sum((m.weight * m.weight.grad).detach().abs().sum() for m in layers))


def grad_norm(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """grad_norm: ``Σ_layers ‖∂L/∂W‖₂`` of the cross-entropy on one minibatch."""
    layers = _loss_gradients(model, x, y)
    return float(sum(m.weight.grad.detach().norm() for m in layers))


@torch.no_grad()
def naswot(model: nn.Module, x: Tensor) -> float:
    """NASWOT: ``log|det K|``, ``K = Σ_ReLU [c cᵀ + (1−c)(1−c)ᵀ]`` with ``c`` each input's binary activation code."""
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64, device=x.device)

    def count(_module: nn.Module, _inp: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal kernel
        c = (out.reshape(n, -1) > 0).double()
        kernel = kernel + c @ c.T + (1 - c) @ (1 - c).T

    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    handles = [m.register_forward_hook(count) for m in relus]
    was_training = model.training
    try:
        model.train()
        model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return float(torch.linalg.slogdet(kernel)[1])
