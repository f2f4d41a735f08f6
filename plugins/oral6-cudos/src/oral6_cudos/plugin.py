"""Hook implementations of the CUDOS plugin: three generative models, five datasets and one benchmark."""

from __future__ import annotations

from oral6_core.hookspecs import hookimpl

from .baselines import BetaVAE, BetaVAEReplay
from .benchmark import CUDOSStreamBenchmark
from .cudos import CUDOS
from .datasets import DSprites, DSpritesSplit, DSpritesStream, Shapes3D, Shapes3DStream


@hookimpl
def oral6_generative_models():
    return [CUDOS, BetaVAE, BetaVAEReplay]


@hookimpl
def oral6_datasets():
    return [Shapes3D, Shapes3DStream, DSprites, DSpritesStream, DSpritesSplit]


@hookimpl
def oral6_benchmarks():
    return [CUDOSStreamBenchmark]
