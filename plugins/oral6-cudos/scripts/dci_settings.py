"""DCI at cheaper settings against 2,000 points with 100 boosting stages, on constructed codes.

Codes: two factors of a ``dsprites-split`` environment, standardised, rotated by an angle, with
Gaussian noise, plus eight near-constant dims. Prints D, C, I and seconds per setting.
Run: ``python plugins/oral6-cudos/scripts/dci_settings.py`` (about 5 minutes on a loaded 2-core CPU).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from oral6_core.metrics.disentanglement import dci_from_importance, importance_matrix
from oral6_cudos.datasets import DSPRITES_SPLIT, sample_factors
from oral6_cudos.rendering import DSPRITES_FACTORS

SETTINGS = ((2000, 100), (1000, 100), (1000, 20))  # (points, boosting stages)


def constructed_codes(factors: np.ndarray, degrees: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Two rotated, noisy copies of the standardised factors and eight near-constant dims."""
    standard = (factors - factors.mean(0)) / factors.std(0)
    t = np.deg2rad(degrees)
    rotation = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    informative = standard @ rotation.T + noise * rng.standard_normal(standard.shape)
    return np.concatenate([informative, 0.05 * rng.standard_normal((len(factors), 8))], axis=1)


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    names = list(DSPRITES_FACTORS)
    for index in (0, 1):
        name, varying, fixed = DSPRITES_SPLIT[index]
        factors = sample_factors(DSPRITES_FACTORS, varying, 2000, index, fixed)[:, [names.index(v) for v in varying]]
        for degrees, noise in ((15, 0.2), (40, 0.8)):
            codes = constructed_codes(factors, degrees, noise, rng)
            for points, stages in SETTINGS:
                started = time.perf_counter()
                importance, informativeness = importance_matrix(codes[:points], factors[:points], 0, stages)
                d, c = dci_from_importance(importance)
                print(f"{name} {degrees}° noise {noise}: N={points} stages={stages} D={d:.3f} C={c:.3f} "
                      f"I={informativeness:.3f} {time.perf_counter() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
