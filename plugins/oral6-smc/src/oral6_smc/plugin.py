"""Hook implementations of the SMC-Bench plugin."""

from __future__ import annotations

from oral6_core.hookspecs import hookimpl

from .benchmarks import SmcEasyBenchmark, SmcHardBenchmark
from .speed import MaskSpeedBenchmark, SparseExportBenchmark
from .dynamic import RigLPruner, SETPruner
from .gradual import GMPPruner, IMPPruner
from .one_shot import MagnitudePruner, OBertPruner, RandomPruner, SnipPruner


@hookimpl
def oral6_pruners():
    return [MagnitudePruner, RandomPruner, IMPPruner, GMPPruner, SnipPruner, RigLPruner, SETPruner, OBertPruner]


@hookimpl
def oral6_benchmarks():
    return [SmcEasyBenchmark, SmcHardBenchmark, SparseExportBenchmark, MaskSpeedBenchmark]


@hookimpl
def oral6_register_commands(app):
    from .cli import smc_app

    app.add_typer(smc_app, name="smc", rich_help_panel="Plugins")
