"""Hook implementations of the NeRN plugin."""

from __future__ import annotations

from oral6_core.hookspecs import hookimpl

from .benchmark import NeRNResNet20
from .representation import NeRN
from .shapes import Shapes32


@hookimpl
def oral6_representations():
    return [NeRN]


@hookimpl
def oral6_datasets():
    return [Shapes32]


@hookimpl
def oral6_benchmarks():
    return [NeRNResNet20]


@hookimpl
def oral6_register_commands(app):
    from .cli import nern_app

    app.add_typer(nern_app, name="nern", rich_help_panel="Plugins")
