"""The ``oral6 dass`` commands: list tasks, build the meta-dataset, meta-train a predictor."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from oral6_core import registry
from oral6_core.config import parse_set_options
from oral6_core.errors import ConfigError

console = Console()
dass_app = typer.Typer(no_args_is_help=True, help="DaSS: build the meta-dataset of distilled students and meta-train the predictor.")


@dass_app.command("tasks")
def tasks() -> None:
    """List the offline tasks a meta-dataset can hold (usable as --dataset dass-task --set dataset.task=NAME)."""
    from .metadata import MetaDatasetSettings
    from .tasks import TASKS, task_family

    default = MetaDatasetSettings().splits()
    table = Table()
    for column in ("task", "family", "default split"):
        table.add_column(column)
    for name in TASKS:
        table.add_row(name, task_family(name), default.get(name, "-"))
    console.print(table)


@dass_app.command("build-meta")
def build_meta(
    out: Path = typer.Option(Path("runs/dass-meta"), "--out", help="Folder of the meta-dataset (resumed or extended when it exists)."),
    students: Optional[int] = typer.Option(None, "--students", min=2, help="Distilled students per task (more extend a build)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    sets: Optional[list[str]] = typer.Option(None, "--set", "-s", help="meta.OPTION=VALUE, e.g. meta.test_tasks='[\"shapes-6\"]'."),
) -> None:
    """Train a teacher per task and distil its students twice (KD, α=0.5, T=6); report each task's noise ceiling.

    Interrupted builds resume; more tasks, students or repeats with otherwise equal settings extend a build."""
    from .metadata import build_meta_dataset, parse_settings

    values = parse_set_options(sets or [], ("meta",)).get("meta", {})
    if students is not None:
        values["students_per_task"] = students
    settings = parse_settings(values)
    export = build_meta_dataset(out, settings, device=device, progress=progress)
    print_report(export)
    console.print(f"Meta-dataset ready in {out}: {len(settings.splits())} tasks × {settings.students_per_task} students × "
                  f"{settings.repeats} distillations (unseen: {', '.join(settings.test_tasks) or 'none'}); export {export}.")


def print_report(export: Path) -> None:
    """The build report of an export: per task teacher accuracy, label spread, noise ceiling, rank agreement."""
    import json

    report = json.loads(export.read_text())["report"]
    table = Table(title=f"Meta-dataset {export.name} ({report['cpu_minutes']:.1f} CPU-minutes to build)")
    columns = ("task", "split", "teacher", "mean acc", "acc sd", "ceiling", "agreement")
    keys = ("task", "split", "teacher accuracy", "mean accuracy", "accuracy sd", "noise ceiling", "rank agreement with other tasks")
    for column in columns:
        table.add_column(column, justify="left" if column in ("task", "split") else "right")
    for row in report["tasks"]:
        table.add_row(*(f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k] if row[k] is not None else "-") for k in keys))
    console.print(table)
    console.print("ceiling: Spearman between two distillations of the same students; agreement: mean Spearman of the "
                  "task's student ranking with the other tasks'.")


@dass_app.command("report")
def report(meta: Optional[Path] = typer.Option(None, "--meta", help="Export or build folder (default: the shipped meta-dataset).")) -> None:
    """Print a meta-dataset's build report (noise ceilings, label spread, rank agreement between tasks)."""
    from .metadata import EXPORT_NAME, SHIPPED, load_meta_dataset

    path = SHIPPED if meta is None else (meta / EXPORT_NAME if meta.is_dir() else meta)
    load_meta_dataset(path)
    print_report(path)


@dass_app.command("meta-train")
def meta_train(
    meta: Optional[Path] = typer.Option(None, "--meta", help="Meta-dataset (export or build folder of `oral6 dass build-meta`; "
                                        "default: the one shipped with the plugin)."),
    out: Path = typer.Option(Path("runs/dass.pt"), "--out", help="Where to write the predictor checkpoint."),
    predictor: str = typer.Option("dass", "--predictor", help="dass or dass-no-func."),
    device: str = typer.Option("cpu", "--device", help="auto, cpu or cuda (the network is tiny: cpu is fastest)."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch CPU threads (the network is tiny: more threads mostly add overhead)."),
    sets: Optional[list[str]] = typer.Option(None, "--set", "-s", help="predictor.OPTION=VALUE, e.g. predictor.episodes=2000."),
) -> None:
    """Meta-train the predictor (teacher-guided MAML); keeps the checkpoint with the best Spearman on the held-out
    validation tasks, and warns when no checkpoint beats the untrained network."""
    import torch

    from oral6_core.training import resolve_device

    from .meta import rank_correlations
    from .metadata import load_meta_dataset
    from .predictor import DaSSPredictor

    options = parse_set_options(sets or [], ("predictor",)).get("predictor", {})
    model = registry.create("predictor", predictor, options)
    if not isinstance(model, DaSSPredictor):
        raise ConfigError(f"Predictor {predictor!r} is training-free; meta-train dass or dass-no-func.")
    settings, records = load_meta_dataset(meta)
    torch.set_num_threads(threads)
    model.fit((settings, records), resolve_device(device))
    model.save(out)
    assert model.history is not None and model.learner is not None
    if model.selection_note:
        console.print(f"Warning: {model.selection_note}.", style="yellow")
    console.print(model.history.verdict(), style=None if model.history.improved else "bold yellow")
    console.print(f"Wrote {out}")
    space = settings.space()
    for record in records:
        if record.split == "test":
            encoded = model.encode(record, space)
            rho, r = rank_correlations(model.learner.adapted_predict(encoded.to(next(model.learner.parameters()).device)),
                                       encoded.accuracies)  # type: ignore[arg-type]
            ceiling = "-" if record.ceiling is None else f"{record.ceiling:.3f}"
            console.print(f"unseen task {record.name}: Spearman {rho:.3f} (noise ceiling {ceiling}), Pearson {r:.3f}")


def register(app: typer.Typer) -> None:
    """Attach ``oral6 dass ...`` to the main app."""
    app.add_typer(dass_app, name="dass", rich_help_panel="Plugins")
