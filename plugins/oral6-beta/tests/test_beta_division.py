"""The GMM division separates clean from noisy samples when the truth is known."""

from __future__ import annotations

import torch

from oral6_beta.division import clean_posterior, divide


def test_gmm_division_recovers_clean_samples_from_a_bimodal_loss() -> None:
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(300, generator=g) * 0.3          # small losses of correctly labelled samples
    noisy = 2.0 + torch.rand(100, generator=g) * 1.5    # large losses of mislabelled samples
    losses = torch.cat([clean, noisy])[torch.randperm(400, generator=g)]
    truth = losses < 1.0
    division = divide(losses, threshold=0.8)
    precision = (truth & division.easy).sum() / division.easy.sum()
    recall = (truth & division.easy).sum() / truth.sum()
    assert precision > 0.97 and recall > 0.9
    assert torch.equal(division.hard, ~division.easy)
    assert ((division.weights >= 0) & (division.weights <= 1)).all()


def test_a_higher_threshold_gives_a_smaller_cleaner_easy_set() -> None:
    g = torch.Generator().manual_seed(1)
    clean = torch.randn(300, generator=g).abs() * 0.5
    noisy = 1.5 + torch.randn(150, generator=g).abs()
    losses = torch.cat([clean, noisy])
    truth = torch.arange(450) < 300
    loose, strict = divide(losses, 0.3), divide(losses, 0.95)
    assert strict.easy.sum() <= loose.easy.sum()
    assert (truth[strict.easy].float().mean()) >= (truth[loose.easy].float().mean())


def test_posterior_is_monotone_in_the_loss() -> None:
    losses = torch.cat([torch.linspace(0, 0.2, 50), torch.linspace(1, 1.2, 50)])
    w = clean_posterior(losses)
    assert w[:50].min() > w[50:].max()


def test_equal_losses_count_as_clean() -> None:
    assert torch.equal(clean_posterior(torch.full((10,), 0.3)), torch.ones(10))
