"""The label operations and losses match their formulas."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from oral6_beta.losses import (adaptive_label_smoothing, information_maximisation, kl_to_teacher, mixmatch_lambda, mixup,
                               prior_penalty, probability_mse, sharpen, soft_cross_entropy)


def test_sharpen_matches_the_power_formula_and_keeps_the_argmax() -> None:
    p = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    out = sharpen(p, 0.5)
    expected = p**2 / (p**2).sum(1, keepdim=True)
    assert torch.allclose(out, expected)
    assert torch.allclose(out.sum(1), torch.ones(2))
    assert torch.equal(out.argmax(1), p.argmax(1))
    assert (out.max(1).values > p.max(1).values).all()
    assert torch.allclose(sharpen(p, 1.0), p)


def test_mixup_is_the_convex_combination() -> None:
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    assert torch.allclose(mixup(a, b, 0.7), 0.7 * a + 0.3 * b)
    assert torch.allclose(mixup(a, b, 1.0), a)


def test_mixmatch_lambda_is_at_least_one_half_and_follows_beta() -> None:
    rng = np.random.default_rng(0)
    draws = np.array([mixmatch_lambda(1.0, rng) for _ in range(4000)])
    assert (draws >= 0.5).all() and (draws <= 1.0).all()
    # max(U, 1 − U) for U ~ Beta(1, 1) = Uniform(0, 1) is uniform on [0.5, 1]: mean 0.75.
    assert abs(draws.mean() - 0.75) < 0.01


def test_adaptive_label_smoothing_keeps_top_k_and_spreads_the_rest() -> None:
    outputs = torch.tensor([[0.0, 0.7, 0.0, 0.0], [0.4, 0.0, 0.0, 0.0]])
    teacher = adaptive_label_smoothing(outputs, k=1)
    assert torch.allclose(teacher[0], torch.tensor([0.1, 0.7, 0.1, 0.1]))
    assert torch.allclose(teacher[1], torch.tensor([0.4, 0.2, 0.2, 0.2]))
    assert torch.allclose(teacher.sum(1), torch.ones(2))
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    assert torch.allclose(adaptive_label_smoothing(probs, k=2), torch.tensor([[0.5, 0.3, 0.1, 0.1]]))


def test_information_maximisation_rewards_confident_and_diverse_predictions() -> None:
    confident_diverse = torch.eye(3)
    collapsed = torch.tensor([[1.0, 0.0, 0.0]] * 3)
    uniform = torch.full((3, 3), 1 / 3)
    assert information_maximisation(confident_diverse) < information_maximisation(uniform)
    assert information_maximisation(confident_diverse) < information_maximisation(collapsed)
    assert abs(float(information_maximisation(confident_diverse)) + math.log(3)) < 1e-3


def test_soft_losses_match_their_definitions() -> None:
    logits, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    onehot = F.one_hot(labels, 4).float()
    assert torch.allclose(soft_cross_entropy(logits, onehot), F.cross_entropy(logits, labels))
    assert torch.allclose(probability_mse(logits, onehot), ((logits.softmax(1) - onehot) ** 2).mean())
    teacher = torch.softmax(torch.randn(5, 4), 1)
    p = torch.softmax(logits, 1)
    assert torch.allclose(kl_to_teacher(p, teacher), (teacher * (teacher.log() - p.log())).sum(1).mean(), atol=1e-6)
    assert float(kl_to_teacher(teacher, teacher)) < 1e-6


def test_prior_penalty_is_zero_at_the_prior_and_positive_when_collapsed() -> None:
    balanced = torch.eye(4)
    assert abs(float(prior_penalty(balanced))) < 1e-6
    collapsed = torch.tensor([[0.97, 0.01, 0.01, 0.01]] * 4)
    assert float(prior_penalty(collapsed)) > 0.5
    mean = collapsed.mean(0)
    assert torch.allclose(prior_penalty(collapsed), (0.25 * (0.25 / mean).log()).sum())
