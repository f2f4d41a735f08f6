"""Zero-cost proxies equal hand computations on a tiny network."""

from __future__ import annotations

import math

import torch
from torch import nn

from oral6_dass import proxies


def _tiny() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
        net[2].weight.copy_(torch.tensor([[2.0, -1.0], [-0.5, 1.5]]))
    return net


def test_synflow_by_hand():
    # |W1| = [[1,2],[3,.5]], |W2| = [[2,1],[.5,1.5]]; h = |W1|·1 = [3, 3.5]; R = Σ|W2|h = 9.5 + 6.75 = 16.25.
    # Σ|W2 ⊙ ∂R/∂W2| = Σ|W2|·h = R; ∂R/∂W1[i, j] = Σ_k |W2|[k, i] = [2.5, 2.5] -> Σ|W1 ⊙ g| = 2.5·3 + 2.5·3.5 = 16.25.
    assert math.isclose(proxies.synflow(_tiny(), (2,)), 2 * 16.25, rel_tol=1e-9)


def _hand_gradients(net, x, y):
    w1, w2 = net[0].weight.detach(), net[2].weight.detach()
    pre = x @ w1.T
    h = pre.clamp(min=0)
    delta = (torch.softmax(h @ w2.T, 1) - torch.eye(2)[y]) / x.shape[0]
    g2 = delta.T @ h
    g1 = ((delta @ w2) * (pre > 0)).T @ x
    return w1, w2, g1, g2


def test_snip_and_grad_norm_by_hand():
    x = torch.tensor([[1.0, 0.5], [-0.3, 2.0], [0.7, -1.0]])
    y = torch.tensor([0, 1, 1])
    w1, w2, g1, g2 = _hand_gradients(_tiny(), x, y)
    expected_snip = float((w1 * g1).abs().sum() + (w2 * g2).abs().sum())
    assert math.isclose(proxies.snip(_tiny(), x, y), expected_snip, rel_tol=1e-5)
    assert math.isclose(proxies.grad_norm(_tiny(), x, y), float(g1.norm() + g2.norm()), rel_tol=1e-5)


def test_naswot_by_hand():
    # Codes of the one ReLU: x1 -> pre [1, 3] -> c = [1, 1]; x2 -> pre [-2, .5] -> [0, 1]; x3 -> pre [-1, -3] -> [0, 0].
    # K_ij = N_R - Hamming(c_i, c_j) with N_R = 2: [[2,1,0],[1,2,1],[0,1,2]]; det = 4, so log|det K| = log 4.
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert math.isclose(proxies.naswot(_tiny(), x), math.log(4.0), rel_tol=1e-9)
