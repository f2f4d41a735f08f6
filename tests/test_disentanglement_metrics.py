"""Disentanglement metrics on constructed codes whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oral6_core.data import ArrayDataset
from oral6_core.errors import ShapeError
from oral6_core.metrics.disentanglement import (
    dci_from_importance, evaluate_representation, factorvae_score, importance_matrix, leakage, mig, mig_sup,
)


def _factors(n: int = 1500, sizes: tuple[int, ...] = (6, 8, 10), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(s, size=n) for s in sizes], axis=1)


def _aligned(factors: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scaled = factors / factors.max(axis=0)
    return scaled + 0.01 * rng.standard_normal(factors.shape)


def _rotated(codes: np.ndarray, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((codes.shape[1], codes.shape[1])))
    return codes @ rotation


def test_mig_is_high_for_an_aligned_code_and_low_for_a_rotation():
    factors = _factors()
    codes = _aligned(factors)
    assert mig(codes, factors) > 0.9
    assert mig(_rotated(codes), factors) < 0.4
    assert mig_sup(codes, factors) > 0.9
    assert mig_sup(_rotated(codes), factors) < 0.5


def test_mig_is_zero_when_two_dims_copy_the_same_factor():
    factors = _factors()
    codes = _aligned(factors)
    duplicated = np.concatenate([codes, codes[:, :1]], axis=1)
    assert mig(duplicated, factors[:, :1]) < 0.05


def test_dci_disentanglement_separates_aligned_from_rotated_codes():
    factors = _factors(600, (3, 4, 5))
    codes = _aligned(factors)
    importance, informativeness = importance_matrix(codes, factors, trees=30)
    d_aligned, c_aligned = dci_from_importance(importance)
    d_rotated, _ = dci_from_importance(importance_matrix(_rotated(codes), factors, trees=30)[0])
    assert d_aligned > 0.95 and c_aligned > 0.95 and informativeness > 0.95
    assert d_rotated < d_aligned - 0.3


def test_boosted_importances_give_the_known_dci_of_a_code_whose_first_dim_holds_two_factors():
    # z0 encodes (a, b) jointly, z1 encodes c: R = [[1, 1, 0], [0, 0, 1]] up to the boosted trees' fit, so
    # D = 2/3 (1 − log_3 2) + 1/3 · 1 (row weights 2/3 and 1/3) and C = 1 (each factor lives in one dim).
    factors = _factors(600, (3, 3, 4), seed=2)
    noise = 0.01 * np.random.default_rng(4).standard_normal((600, 2))
    codes = np.stack([(3 * factors[:, 0] + factors[:, 1]) / 9, factors[:, 2] / 4], axis=1) + noise
    importance, informativeness = importance_matrix(codes, factors)
    np.testing.assert_allclose(importance, [[1, 1, 0], [0, 0, 1]], atol=0.02)
    disentanglement, completeness = dci_from_importance(importance)
    assert disentanglement == pytest.approx(2 / 3 * (1 - np.log(2) / np.log(3)) + 1 / 3, abs=0.02)
    assert completeness == pytest.approx(1.0, abs=0.02) and informativeness > 0.95


def test_dci_of_a_known_importance_matrix():
    assert dci_from_importance(np.eye(3)) == pytest.approx((1.0, 1.0))
    assert dci_from_importance(np.ones((3, 3)))[0] == pytest.approx(0.0, abs=1e-9)


def test_factorvae_score_is_one_for_an_aligned_code_and_near_chance_for_noise():
    factors = _factors()
    assert factorvae_score(_aligned(factors), factors) > 0.95
    noise = np.random.default_rng(3).standard_normal((len(factors), 3))
    assert factorvae_score(noise, factors) < 0.7


def test_leakage_counts_only_new_factors_in_old_dims():
    factors = _factors()
    codes = _aligned(factors)
    old = np.array([True, False, False])
    assert abs(leakage(codes, factors, old, [2])) < 0.05
    leaky = codes.copy()
    leaky[:, 0] = codes[:, 2]
    assert leakage(leaky, factors, old, [2]) > 0.9


def test_leakage_of_uninformative_dims_is_near_zero_once_the_permutation_baseline_is_subtracted():
    rng = np.random.default_rng(5)
    factors = _factors(600, (10,), seed=5)
    noise = rng.standard_normal((600, 15))
    old = np.ones(15, dtype=bool)
    assert leakage(noise, factors, old, [0], permutations=0) > 0.5  # the plug-in estimator's bias
    assert abs(leakage(noise, factors, old, [0])) < 0.1
    leaky = noise.copy()
    leaky[:, 3] = factors[:, 0] + 0.01 * rng.standard_normal(600)
    assert leakage(leaky, factors, old, [0]) > 0.8


def test_evaluate_representation_encodes_data_and_drops_constant_factors():
    factors = torch.as_tensor(_factors(1200))
    factors = torch.cat([factors, torch.zeros(len(factors), 1, dtype=torch.long)], dim=1)
    x = factors.float().unsqueeze(1).repeat(1, 2, 1)  # [N, 2, 4]: inputs carry the factors
    data = ArrayDataset(x, factors)
    scores = evaluate_representation(lambda b: b[:, 0, :3] / 10, data, ["a", "b", "c", "const"], num_samples=600,
                                    dci_trees=20)
    assert {"mig", "dci_disentanglement", "factorvae", "mig_sup"} <= set(scores)
    assert scores["mig"] > 0.85 and scores["dci_disentanglement"] > 0.85 and scores["factorvae"] > 0.95
    with pytest.raises(ShapeError, match="factor names"):
        evaluate_representation(lambda b: b[:, 0], data, ["a"], num_samples=100)


def test_evaluate_representation_fits_dci_on_the_first_dci_samples_points_only():
    factors = torch.as_tensor(_factors(900))
    data = ArrayDataset(factors.float().unsqueeze(1), factors)
    rng = np.random.default_rng(1)
    mixing = rng.standard_normal((3, 3))
    encode = lambda b: b[:, 0] @ torch.as_tensor(mixing, dtype=torch.float32) + 0.3 * torch.sin(37 * b[:, 0])  # noqa: E731
    scores = evaluate_representation(encode, data, ["a", "b", "c"], num_samples=600, dci_trees=5, dci_samples=200)
    pool = np.random.default_rng(0).permutation(900)[:600]
    codes = encode(data.x[torch.as_tensor(pool)]).double().numpy()
    importance, informativeness = importance_matrix(codes[:200], factors.numpy()[pool][:200], 0, 5)
    assert scores["dci_disentanglement"] == pytest.approx(dci_from_importance(importance)[0])
    assert scores["dci_informativeness"] == pytest.approx(informativeness)
    full = evaluate_representation(encode, data, ["a", "b", "c"], num_samples=600, dci_trees=5, dci_samples=None)
    assert full["dci_informativeness"] != pytest.approx(informativeness)


def test_stream_scores_use_held_out_data_and_report_forgetting_and_leakage():
    from oral6_core.components import Environment
    from oral6_core.metrics.stream import StreamScores

    rng = np.random.default_rng(0)

    def environment(name: str, varying: list[int], n: int) -> ArrayDataset:
        factors = np.zeros((n, 2), dtype=np.int64)
        for k in varying:
            factors[:, k] = rng.integers(5, size=n)
        return ArrayDataset(torch.tensor(factors, dtype=torch.float32), torch.tensor(factors))

    noise = ArrayDataset(torch.randn(400, 2), environment("", [0], 400).y)  # training data the code knows nothing of
    first = Environment("first", noise, ["a", "b"], ["a"], held_out=environment("first", [0], 400))
    second = Environment("second", environment("second", [1], 400), ["a", "b"], ["b"], held_out=environment("second", [1], 400))
    state = {"phase": 0}

    def encode(x: torch.Tensor) -> torch.Tensor:
        # After the first environment the code is the factor values; after the second, dim 0 (used on the
        # first environment) holds factor b and dim 1 is constant: the first is forgotten and b leaks into dim 0.
        if state["phase"] == 0:
            return x
        return torch.stack([x[:, 1] + 0.01 * torch.randn(len(x)), torch.zeros(len(x))], 1)

    scores = StreamScores(encode, [first, second], num_samples=400)
    first_rows = scores.after_environment(0)
    assert first_rows[0]["mig"] > 0.9  # held out: the factor itself; on the noise it was trained on, MIG would be ~0
    state["phase"] = 1
    scores.after_environment(1)
    summary = scores.summary()
    assert summary["scored_on"] == "held-out" and len(scores.rows) == 3
    assert summary["forgetting_mig"] > 0.9 and summary["active_dims"] == [1, 1]
    assert summary["leakage"] > 0.8 and summary["leakage_per_environment"] == [pytest.approx(summary["leakage"], abs=1e-4)]
    assert StreamScores(encode, [Environment("x", noise, ["a", "b"], ["a"])]).held_out is False
