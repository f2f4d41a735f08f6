"""``oral6 nern ...``: commands that use a fitted NeRN representation."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from oral6_core import registry
from oral6_core.io import write_json
from oral6_core.training import load_trained_model, resolve_device

from .importance import importance_study
from .representation import NeRN

nern_app = typer.Typer(no_args_is_help=True, help="NeRN tools: weight importance from a fitted representation.")
console = Console()


@nern_app.command("importance")
def importance(
    representation: Path = typer.Option(..., "--representation", help="File written by `oral6 represent --method nern`."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="The `oral6 train` checkpoint the representation was fitted to."),
    sparsity: list[float] = typer.Option([0.1, 0.3, 0.5], "--sparsity", help="Share of represented weights to prune (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="Seed of random pruning."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the rows as JSON to this file."),
) -> None:
    """Prune the weights NeRN reconstructs worst and compare with magnitude and random pruning."""
    rep = NeRN()
    rep.load(representation)
    dev = resolve_device(device)
    net, run = load_trained_model(checkpoint)
    net.to(dev).eval()
    rep.to(dev)
    bundle = registry.create("dataset", run.get("dataset", "digits"), (run.get("options") or {}).get("dataset")).load(seed=seed)
    test = bundle.test if bundle.test is not None else bundle.val
    rows = importance_study(net, rep, test, bundle.task, list(sparsity), seed)  # type: ignore[arg-type]
    table = Table(title="Test accuracy after pruning the represented weights")
    for column in ("sparsity", "criterion", "accuracy"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(f"{row['sparsity']:.2f}", str(row["criterion"]), f"{row['accuracy']:.4f}")
    console.print(table)
    if out is not None:
        write_json({"representation": str(representation), "checkpoint": str(checkpoint), "rows": rows}, out)
        console.print(f"Wrote {out}")
