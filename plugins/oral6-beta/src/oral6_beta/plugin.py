"""Hook implementations of the BETA plugin: four adapters, four datasets and one benchmark."""

from __future__ import annotations

from oral6_core.hookspecs import hookimpl

from .baselines import DistillAdapter, SourceOnlyAdapter
from .benchmark import BetaDigitsBenchmark
from .beta import BETAAdapter
from .datasets import NoisyDigits, PrintedDigits, ShapesA, ShapesB
from .dine import DINEAdapter


@hookimpl
def oral6_adapters():
    return [SourceOnlyAdapter, DistillAdapter, DINEAdapter, BETAAdapter]


@hookimpl
def oral6_datasets():
    return [PrintedDigits, ShapesA, ShapesB, NoisyDigits]


@hookimpl
def oral6_benchmarks():
    return [BetaDigitsBenchmark]
