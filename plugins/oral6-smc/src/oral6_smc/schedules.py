"""Sparsity and update schedules: GMP's cubic ramp, RigL's cosine drop fraction, IMP's rounds, SMC's grid."""

from __future__ import annotations

import math


def smc_grid(k_max: int = 10) -> list[float]:
    """SMC-Bench's sparsity grid 1 − 0.8^k for k = 1..k_max."""
    return [1 - 0.8**k for k in range(1, k_max + 1)]


def gmp_sparsity(step: int, t0: int, t1: int, s_i: float, s_f: float) -> float:
    """s_t = s_f + (s_i − s_f)(1 − (t − t0)/(t1 − t0))³ for t0 ≤ t ≤ t1; s_i before t0 and s_f after t1."""
    if step < t0:
        return s_i
    if step >= t1:
        return s_f
    return s_f + (s_i - s_f) * (1 - (step - t0) / (t1 - t0)) ** 3


def cosine_drop_fraction(step: int, alpha: float, t_end: int) -> float:
    """RigL's drop fraction p_t = α/2 · (1 + cos(π t / T_end)) for t < T_end, else 0."""
    if step >= t_end:
        return 0.0
    return alpha / 2 * (1 + math.cos(math.pi * step / t_end))


def imp_rounds(sparsity: float, rate: float) -> int:
    """Rounds of pruning ``rate`` of the remaining weights needed to reach ``sparsity``: ⌈log(1−s)/log(1−rate)⌉."""
    return max(1, math.ceil(math.log(1 - sparsity) / math.log(1 - rate) - 1e-9))


def imp_density(round_index: int, sparsity: float, rate: float) -> float:
    """Density after ``round_index`` rounds: (1 − rate)^r, never below the target 1 − s."""
    return max((1 - rate) ** round_index, 1 - sparsity)
