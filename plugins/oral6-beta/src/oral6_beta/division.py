"""BETA's domain division: a two-component GMM on per-sample losses splits easy from hard samples."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class Division:
    """One network's division of the target set: clean-posterior ``weights`` and the ``easy`` mask (w ≥ τ)."""

    weights: Tensor
    easy: Tensor

    @property
    def hard(self) -> Tensor:
        return ~self.easy


def clean_posterior(losses: Tensor, seed: int = 0) -> Tensor:
    """w_i = P(low-loss component | ℓ̃_i) under a 2-component GMM fitted to min-max scaled losses ℓ̃."""
    from sklearn.exceptions import ConvergenceWarning  # imported here: loading the plugin stays light
    from sklearn.mixture import GaussianMixture

    values = losses.detach().double().cpu()
    spread = float(values.max() - values.min())
    if spread < 1e-12:
        return torch.ones_like(losses, dtype=torch.float32)
    scaled = ((values - values.min()) / spread).numpy().reshape(-1, 1)
    gmm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 10 EM iterations, as the reference: often unconverged
        gmm.fit(scaled)
    posterior = gmm.predict_proba(scaled)[:, int(np.argmin(gmm.means_.ravel()))]
    return torch.from_numpy(posterior).float().to(losses.device)


def divide(losses: Tensor, threshold: float, seed: int = 0) -> Division:
    """Easy = {i : w_i ≥ τ}, hard = the rest."""
    weights = clean_posterior(losses, seed)
    return Division(weights, weights >= threshold)
