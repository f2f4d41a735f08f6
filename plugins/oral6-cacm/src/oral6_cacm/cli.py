"""``oral6 cacm plan``: show the constraint CACM chooses for each attribute of a dataset."""

from __future__ import annotations

import warnings
from typing import Optional

import typer

from oral6_core import registry
from oral6_core.config import parse_set_options
from oral6_core.errors import ConfigError

cacm_app = typer.Typer(help="CACM: inspect the constraint chosen for each attribute.", no_args_is_help=True)


@cacm_app.command("plan")
def plan(
    dataset: str = typer.Option("multiattr-digits", help="Dataset whose attributes are constrained."),
    regularizer: str = typer.Option("cacm", help="cacm or cmmd."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="dataset.OPTION=VALUE or regularizer.OPTION=VALUE."),
) -> None:
    """Print each attribute's type, the independence constraint applied, its weight and where it came from."""
    from rich.console import Console
    from rich.table import Table

    options = parse_set_options(set_ or [], ("dataset", "regularizer"))
    bundle = registry.create("dataset", dataset, options.get("dataset")).load(seed=0)
    reg = registry.create("regularizer", regularizer, options.get("regularizer"))
    if not hasattr(reg, "report"):
        raise ConfigError(f"Regularizer {regularizer!r} has no per-attribute plan; use cacm or cmmd.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.on_train_start(None, bundle)
    table = Table(title=f"{regularizer} on {bundle.name}; environments: {', '.join(bundle.environments)}")
    columns = ("attribute", "type", "constraint", "weight", "source")
    for column in columns:
        table.add_column(column)
    for row in reg.report():
        table.add_row(*(str(row[k]) for k in columns))
    Console(width=120).print(table)


def register(app: typer.Typer) -> None:
    """Add the ``cacm`` command group to the oral6 app."""
    app.add_typer(cacm_app, name="cacm", rich_help_panel="Plugins")
