"""Hook implementations of the FishLeg plugin."""

from __future__ import annotations

from oral6_core.hookspecs import hookimpl

from .benchmark import FishLegAutoencoderBenchmark, FishLegSparseAutoencoderBenchmark
from .optimizer import FishLegFactory


@hookimpl
def oral6_optimizers():
    return [FishLegFactory]


@hookimpl
def oral6_benchmarks():
    return [FishLegAutoencoderBenchmark, FishLegSparseAutoencoderBenchmark]
