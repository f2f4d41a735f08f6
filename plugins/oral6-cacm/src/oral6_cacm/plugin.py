"""Hook implementations of the oral6-cacm plugin."""

from __future__ import annotations

from oral6_core.hookspecs import hookimpl

from .baselines import CORAL, IRM, EnvironmentMMD, VREx
from .bench_multiattr import MultiAttrBenchmark
from .bench_synthetic import SyntheticBenchmark
from .digits_shift import MultiAttrDigits
from .regularizers import CACM, ClassConditionalMMD
from .synthetic_shift import ShiftSynthetic


@hookimpl
def oral6_regularizers():
    return [CACM, ClassConditionalMMD, EnvironmentMMD, CORAL, IRM, VREx]


@hookimpl
def oral6_datasets():
    return [MultiAttrDigits, ShiftSynthetic]


@hookimpl
def oral6_benchmarks():
    return [MultiAttrBenchmark, SyntheticBenchmark]


@hookimpl
def oral6_register_commands(app):
    from .cli import register

    register(app)
