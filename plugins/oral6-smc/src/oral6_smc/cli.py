"""``oral6 smc ...``: custom harness runs (any task × any registered pruner × the grid 1 − 0.8^k) and sparse export."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markdown import Markdown

from oral6_core.config import parse_set_options
from oral6_core.errors import ConfigError
from oral6_core.io import write_text

from .harness import DEFAULT_METHODS, GridSettings, MethodSpec, method_by_label, run_grid, write_outputs
from .schedules import smc_grid
from .tasks import make_task

console = Console()
smc_app = typer.Typer(no_args_is_help=True, help="SMC-Bench harness: prune on the easy/hard tasks over the sparsity grid 1 − 0.8^k.")


@smc_app.command("grid")
def grid(k_max: int = typer.Option(10, "--k-max", min=1, max=30, help="Largest exponent k.")) -> None:
    """Print the sparsity grid 1 − 0.8^k."""
    for k, sparsity in enumerate(smc_grid(k_max), start=1):
        console.print(f"k={k:2d}  sparsity {sparsity:.4f}")


@smc_app.command("methods")
def methods() -> None:
    """List the harness's built-in methods (pruner, start, family)."""
    for spec in DEFAULT_METHODS:
        console.print(f"{spec.label:14s} pruner={spec.pruner:7s} start={spec.start:10s} family={spec.family} {spec.options or ''}")


@smc_app.command("run")
def run(
    task: str = typer.Option("easy", "--task", "-t", help="easy (digits, small CNN), hard (last result of an arithmetic chain) or one-step (its first result); both pre-train a transformer once, cached in --out."),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m", help="Built-in method label (repeatable; see `oral6 smc methods`)."),
    pruner: Optional[list[str]] = typer.Option(None, "--pruner", "-p", help="Any registered pruner name (repeatable), run with --start."),
    start: str = typer.Option("pretrained", "--start", help="For --pruner: prune the 'pretrained' (initial) weights or the 'dense' fine-tuned model."),
    k: Optional[list[int]] = typer.Option(None, "--k", help="Grid exponents k (repeatable; default 1..10): sparsity 1 − 0.8^k."),
    seeds: int = typer.Option(1, "--seeds", min=1, help="Number of seeds (0, 1, ...)."),
    epochs: int = typer.Option(4, "--epochs", min=1, help="Epochs of (fine-)tuning for the dense model, before/during methods and each IMP round."),
    retrain_epochs: int = typer.Option(2, "--retrain-epochs", min=1, help="Epochs of fine-tuning after an after-training prune."),
    sets: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Options of the --pruner pruners as pruner.OPTION=VALUE."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    out: Path = typer.Option(Path("smc-results"), "--out", help="Output folder."),
) -> None:
    """Run methods over the grid on a task; writes the runs JSON, the figure and a markdown table.

    Dense models and finished runs are kept in ``--out``/cache and reused by a run with the same settings.
    """
    if start not in ("pretrained", "dense"):
        raise ConfigError(f"--start must be 'pretrained' or 'dense', not {start!r}.")
    options = parse_set_options(sets or [], ("pruner",)).get("pruner", {})
    specs = [method_by_label(label) for label in method or []]
    specs += [MethodSpec(name, name, start, "after" if start == "dense" else "before", options) for name in pruner or []]  # type: ignore[arg-type]
    if not specs:
        specs = list(DEFAULT_METHODS)
    ks = sorted(set(k or range(1, 11)))
    if any(not 1 <= value <= 30 for value in ks):
        raise ConfigError(f"Every --k must lie in 1..30; got {ks}.")
    results = run_grid(make_task(task, out / "pretrained.pt"), specs, [1 - 0.8**value for value in ks],
                       GridSettings(epochs, retrain_epochs, tuple(range(seeds)), device), log=console.print,
                       cache=out / "cache")
    _, markdown, files = write_outputs(results, specs, out)
    write_text(markdown, out / f"smc-{task}.md")
    console.print(Markdown(markdown))
    console.print("Wrote " + ", ".join(str(f) for f in [*files, out / f"smc-{task}.md"]))


@smc_app.command("export")
def export(
    checkpoint: Path = typer.Argument(..., help="checkpoint.pt written by `oral6 train`."),
    out: Path = typer.Option(..., "--out", help="Where to save the exported model (a pickled nn.Module)."),
    min_sparsity: float = typer.Option(0.9, "--min-sparsity", help="CPU: layers at least this sparse use CSR."),
    mode: str = typer.Option("auto", "--mode", help="auto, csr or semi-structured (2:4 on CUDA)."),
) -> None:
    """Export a pruned model for inference with sparse kernels; prints the kernel chosen per linear layer."""
    from oral6_core.io import save_torch
    from oral6_core.training import load_trained_model

    from .export import export_sparse

    model, _ = load_trained_model(checkpoint)
    exported, report = export_sparse(model, min_sparsity, mode)  # type: ignore[arg-type]
    for layer, kernel in report.items():
        console.print(f"{layer}: {kernel}")
    save_torch(exported, out)
    console.print(f"Wrote {out}")
