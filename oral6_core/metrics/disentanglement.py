"""Disentanglement metrics of a representation against ground-truth factors, for any generative model.

MIG, DCI and the FactorVAE score follow disentanglement_lib (Locatello et al., 2019):

* MIG: each code dimension is histogram-discretised into 20 equal-width bins over its observed
  range (``np.histogram`` edges, ``np.digitize``); ``I(z_j; v_k)`` is the plug-in estimate of the
  joint histogram (``sklearn.metrics.mutual_info_score``, nats) and ``H(v_k)`` the plug-in entropy
  of the discrete factor.
* DCI: importances from one gradient-boosted tree classifier per factor
  (``sklearn.ensemble.GradientBoostingClassifier``, depth 3, learning rate 0.1; 100 stages by
  default in ``importance_matrix``, as disentanglement_lib, 20 in ``evaluate_representation``) on
  the raw codes against the discrete factor values, ``R = |feature_importances_|``.
* FactorVAE score: accuracy of a majority-vote classifier.

MIG-sup and the leakage measure follow CUDOS (Li et al., 2023); leakage subtracts a permutation
baseline (the same estimator on code rows shuffled against the factors), because plug-in mutual
information of independent variables is biased upwards by about ``(bins − 1)(values − 1) / 2N``
nats per dimension. ``evaluate_representation`` is the one entry point the CLI calls.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError, ShapeError


def discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Histogram each code dimension into ``num_bins`` equal-width bins (disentanglement_lib's default)."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], bins=num_bins)[1]
        out[:, j] = np.digitize(codes[:, j], edges[:-1])
    return out


def mutual_information_matrix(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``I(z_j; v_k)`` in nats for every code dimension j and factor k: shape [codes, factors]."""
    from sklearn.metrics import mutual_info_score

    return np.array([[mutual_info_score(factors[:, k], discrete_codes[:, j]) for k in range(factors.shape[1])]
                     for j in range(discrete_codes.shape[1])])


def factor_entropies(factors: np.ndarray) -> np.ndarray:
    """Entropy ``H(v_k)`` in nats of each discrete factor."""
    from sklearn.metrics import mutual_info_score

    return np.array([mutual_info_score(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])


def normalized_mutual_information(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """``I(z_j; v_k) / H(v_k)`` for every code dimension and factor: shape [codes, factors]."""
    mi = mutual_information_matrix(discretize(codes, num_bins), factors)
    return mi / np.maximum(factor_entropies(factors), 1e-12)[None, :]


def mig(codes: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> float:
    """Mutual information gap: mean over factors k of ``(I(z_(1); v_k) − I(z_(2); v_k)) / H(v_k)``."""
    nmi = np.sort(normalized_mutual_information(codes, factors, num_bins), axis=0)
    if nmi.shape[0] < 2:
        return float(nmi[-1].mean())
    return float((nmi[-1] - nmi[-2]).mean())


def mig_sup(codes: np.ndarray, factors: np.ndarray, active: np.ndarray | None = None, num_bins: int = 20) -> float:
    """MIG-sup: mean over (active) code dimensions j of the gap between the two largest ``I(z_j; v_k)/H(v_k)``."""
    nmi = normalized_mutual_information(codes, factors, num_bins)
    if active is not None:
        nmi = nmi[np.asarray(active, dtype=bool)]
    if nmi.shape[0] == 0:
        return 0.0
    ordered = np.sort(nmi, axis=1)
    if ordered.shape[1] < 2:
        return float(ordered[:, -1].mean())
    return float((ordered[:, -1] - ordered[:, -2]).mean())


def leakage(codes: np.ndarray, factors: np.ndarray, old_dims: np.ndarray, new_factors: list[int], num_bins: int = 20,
            permutations: int = 10, seed: int = 0) -> float:
    """Debiased leakage of new factors into earlier-active dims.

    The raw measure is ``mean_{k∈new} Σ_{j∈old} I(z_j; v_k)/H(v_k)``; the mean of the same measure
    over ``permutations`` shuffles of the code rows against the factors (its value when nothing
    leaks) is subtracted. ``permutations=0`` gives the raw, biased measure.
    """
    old = np.asarray(old_dims, dtype=bool)
    if not new_factors or not old.any():
        return 0.0

    def raw(rows: np.ndarray) -> float:
        nmi = normalized_mutual_information(rows[:, old], factors[:, new_factors], num_bins)
        return float(nmi.sum(axis=0).mean())

    rng = np.random.default_rng(seed)
    baseline = [raw(codes[rng.permutation(len(codes))]) for _ in range(permutations)]
    return raw(codes) - (float(np.mean(baseline)) if baseline else 0.0)


def importance_matrix(codes: np.ndarray, factors: np.ndarray, seed: int = 0, trees: int = 100) -> tuple[np.ndarray, float]:
    """DCI's importance ``R[j, k]`` of code j for factor k and the mean test accuracy (informativeness).

    One ``GradientBoostingClassifier`` per factor (``trees`` boosting stages, otherwise sklearn's
    defaults, as disentanglement_lib uses it) is fitted on the first two thirds of the rows and
    scored on the rest; ``R[:, k]`` is its ``feature_importances_``.
    """
    from sklearn.ensemble import GradientBoostingClassifier

    n = codes.shape[0]
    split = max(1, (2 * n) // 3)
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    accuracies = []
    for k in range(factors.shape[1]):
        values = np.unique(factors[:split, k])
        if len(values) < 2:  # nothing to learn: no code dimension is important for this factor
            accuracies.append(float(np.mean(factors[split:, k] == values[0])) if split < n else 1.0)
            continue
        boosted = GradientBoostingClassifier(n_estimators=trees, random_state=seed)
        boosted.fit(codes[:split], factors[:split, k])
        importance[:, k] = np.abs(boosted.feature_importances_)
        accuracies.append(boosted.score(codes[split:], factors[split:, k]) if split < n else 1.0)
    return importance, float(np.mean(accuracies))


def _entropy_rows(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy with log base ``base`` of each row of a non-negative matrix after normalising it."""
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
    logs = np.log(np.where(p > 0, p, 1.0)) / np.log(max(base, 2))
    return -(p * logs).sum(axis=1)


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    """DCI disentanglement ``Σ_j ρ_j (1 − H_K(P_j·))`` and completeness ``Σ_k ρ_k (1 − H_D(P_·k))``."""
    codes, num_factors = importance.shape
    total = max(importance.sum(), 1e-12)
    disentanglement = float(((1 - _entropy_rows(importance, num_factors)) * importance.sum(1) / total).sum())
    completeness = float(((1 - _entropy_rows(importance.T, codes)) * importance.sum(0) / total).sum())
    return disentanglement, completeness


def factorvae_score(codes: np.ndarray, factors: np.ndarray, num_train: int = 300, num_eval: int = 150,
                    batch_size: int = 64, seed: int = 0) -> float:
    """FactorVAE score: accuracy of the majority vote from ``argmin_j Var(z_j/s_j | v_k fixed)`` to ``k``.

    Codes are divided by their global standard deviation ``s_j``; dimensions with zero variance
    are pruned, as in disentanglement_lib. Each vote fixes one factor at the value of a random
    point and draws ``batch_size`` points that share it.
    """
    rng = np.random.default_rng(seed)
    scale = codes.std(axis=0)
    keep = scale > 0
    if not keep.any():
        return 0.0
    normalized = codes[:, keep] / scale[keep]
    num_factors = factors.shape[1]

    def votes(count: int) -> np.ndarray:
        table = np.zeros((normalized.shape[1], num_factors), dtype=np.int64)
        for _ in range(count):
            k = rng.integers(num_factors)
            value = factors[rng.integers(len(factors)), k]
            pool = np.flatnonzero(factors[:, k] == value)
            rows = rng.choice(pool, size=batch_size, replace=len(pool) < batch_size)
            table[np.argmin(normalized[rows].var(axis=0)), k] += 1
        return table

    train, test = votes(num_train), votes(num_eval)
    classifier = train.argmax(axis=1)
    return float(test[np.arange(len(classifier)), classifier].sum() / max(test.sum(), 1))


@torch.no_grad()
def encode_dataset(encode: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 256) -> np.ndarray:
    """Codes of every row of ``x`` as a float64 numpy array, encoded in batches."""
    chunks = [encode(x[i : i + batch_size]).detach().float().cpu() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(chunks).reshape(x.shape[0], -1).double().numpy()


def evaluate_representation(encode: Callable[[Tensor], Tensor], data, factor_names: list[str],
                            num_samples: int = 2000, seed: int = 0, dci_trees: int = 20,
                            dci_samples: int | None = 1000) -> dict[str, float]:
    """MIG, MIG-sup, DCI (disentanglement, completeness, informativeness) and FactorVAE score of ``encode``.

    ``data`` is an ``ArrayDataset`` whose ``y`` holds integer factor values [N, F] named by
    ``factor_names``. Factors that are constant in ``data`` carry no information and are left out.
    MIG uses ``num_samples`` points, DCI the first ``dci_samples`` of them (``None``: all); FactorVAE
    votes draw from up to five times as many. ``dci_trees`` is the number of boosting stages of
    DCI's classifiers. The defaults (1000 points, 20 stages) are 3-9× cheaper than 2000 points with
    sklearn's 100 stages and, on constructed codes, gave DCI disentanglement within 0.035 of them
    (completeness within 0.07, informativeness within 0.05); pass ``dci_trees=100, dci_samples=None``
    for the expensive settings.
    """
    y = getattr(data, "y", None)
    x = getattr(data, "x", None)
    if x is None or y is None:
        raise DataError("evaluate_representation needs an ArrayDataset with inputs x and factor values y.")
    if y.dim() != 2 or y.shape[1] != len(factor_names):
        raise ShapeError(f"Factor values y have shape {tuple(y.shape)} but {len(factor_names)} factor names were "
                         "given; y must be [N, F] with one column per factor name.")
    factors_all = y.long().cpu().numpy()
    varying = [k for k in range(factors_all.shape[1]) if len(np.unique(factors_all[:, k])) > 1]
    if not varying:
        raise DataError("No factor varies in the data, so disentanglement is undefined; use data with varying factors.")
    rng = np.random.default_rng(seed)
    pool = rng.permutation(len(factors_all))[: min(len(factors_all), 5 * num_samples)]
    codes_all = encode_dataset(encode, x[torch.as_tensor(pool)])
    factors = factors_all[pool][:, varying]
    codes, sub = codes_all[:num_samples], factors[:num_samples]
    dci_rows = slice(0, dci_samples)
    importance, informativeness = importance_matrix(codes[dci_rows], sub[dci_rows], seed, dci_trees)
    disentanglement, completeness = dci_from_importance(importance)
    return {
        "mig": mig(codes, sub),
        "mig_sup": mig_sup(codes, sub, active=codes.std(axis=0) > 1e-2 * max(codes.std(axis=0).max(), 1e-12)),
        "dci_disentanglement": disentanglement,
        "dci_completeness": completeness,
        "dci_informativeness": informativeness,
        "factorvae": factorvae_score(codes_all, factors, seed=seed),
    }


__all__ = [
    "discretize", "mutual_information_matrix", "factor_entropies", "normalized_mutual_information", "mig", "mig_sup",
    "leakage", "importance_matrix", "dci_from_importance", "factorvae_score", "encode_dataset",
    "evaluate_representation",
]
