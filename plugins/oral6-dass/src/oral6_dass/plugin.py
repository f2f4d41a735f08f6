"""Hook implementations of the DaSS plugin: predictors, the teacher/student model, tasks, benchmark, commands."""

from __future__ import annotations

from oral6_core.hookspecs import hookimpl

from .baselines import FlopsPredictor, GradNormPredictor, NaswotPredictor, ParamsPredictor, SnipPredictor, SynflowPredictor
from .benchmark import DaSSUnseen
from .network import DaSSResNetBuilder
from .predictor import DaSSNoFuncPredictor, DaSSPredictor
from .tasks import DaSSTaskDataset


@hookimpl
def oral6_predictors():
    return [DaSSPredictor, DaSSNoFuncPredictor, ParamsPredictor, FlopsPredictor, SynflowPredictor, SnipPredictor,
            GradNormPredictor, NaswotPredictor]


@hookimpl
def oral6_models():
    return [DaSSResNetBuilder]


@hookimpl
def oral6_datasets():
    return [DaSSTaskDataset]


@hookimpl
def oral6_benchmarks():
    return [DaSSUnseen]


@hookimpl
def oral6_register_commands(app):
    from .commands import register

    register(app)
