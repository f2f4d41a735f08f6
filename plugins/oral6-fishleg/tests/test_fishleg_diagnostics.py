"""The inverse-Fisher diagnostics: exact where Q can be exact, consistent with Q₀ at the start, A ≥ A* always."""

import pytest
import torch
from torch import nn

from oral6_core.errors import ConfigError
from oral6_fishleg import BernoulliLikelihood, FishLegConfig, GaussianLikelihood
from oral6_fishleg.autoencoders import autoencoder
from oral6_fishleg.diagnostics import track_inverse_fisher


def test_q_learns_the_exact_inverse_fisher_along_the_update_direction():
    """F_γ of a linear layer with a Gaussian likelihood is Kronecker, so Q(λ) fitted along ḡ can match it there."""
    torch.manual_seed(0)
    x = (torch.randn(96, 4) * torch.tensor([1.0, 0.5, 2.0, 1.0]) + 0.3).double()
    y = x @ torch.randn(4, 3).double()
    config = FishLegConfig(fvp="hvp", aux_every=1, aux_lr=0.03, init_scale=0.5, lr=0.01)
    rows = track_inverse_fisher(nn.Linear(4, 3).double(), GaussianLikelihood(0.5), x, y, config, steps=150,
                                batch_size=32, checkpoints=[0, 150], probe_size=96)
    first, last = rows
    assert first["random_rel_error"] == pytest.approx(first["random_init_rel_error"]) and first["random_rel_error"] > 0.5
    assert last["gbar_rel_error"] < 0.4 and last["gbar_rel_error"] < 0.2 * last["gbar_init_rel_error"]
    assert last["gbar_cosine"] > 0.9 > last["gbar_init_cosine"]


def test_rows_are_consistent_on_a_deep_autoencoder():
    torch.manual_seed(0)
    x = (torch.rand(64, 6) > 0.5).float()
    rows = track_inverse_fisher(autoencoder([6, 4, 2]), BernoulliLikelihood(), x, x, FishLegConfig(aux_every=2), steps=20,
                                batch_size=16, checkpoints=[0, 10, 20], directions=4)
    assert [r["step"] for r in rows] == [0, 10, 20] and "gbar_rel_error" not in rows[0]
    for row in rows:
        for prefix in ("random", "gbar") if "gbar_aux_loss" in row else ("random",):
            assert row[f"{prefix}_aux_loss"] >= row[f"{prefix}_aux_optimum"] - 1e-9  # A(λ) − A* = ½ eᵀF_γe ≥ 0
            assert -1 <= row[f"{prefix}_cosine"] <= 1 and row[f"{prefix}_norm_ratio"] > 0
    with pytest.raises(ConfigError, match="batch_size"):
        track_inverse_fisher(autoencoder([6, 4, 2]), BernoulliLikelihood(), x[:8], x[:8], batch_size=16)
