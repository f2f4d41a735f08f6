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
    from .tasks import TASKS

    default = MetaDatasetSettings().splits()
    table = Table()
    for column in ("task", "default split"):
        table.add_column(column)
    for name in TASKS:
        table.add_row(name, default.get(name, "-"))
    console.print(table)


@dass_app.command("build-meta")
def build_meta(
    out: Path = typer.Option(Path("runs/dass-meta"), "--out", help="Folder of the meta-dataset (resumed when it exists)."),
    students: Optional[int] = typer.Option(None, "--students", min=2, help="Distilled students per task."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    sets: Optional[list[str]] = typer.Option(None, "--set", "-s", help="meta.OPTION=VALUE, e.g. meta.test_tasks='[\"shapes-6\"]'."),
) -> None:
    """Train a teacher per task and distil its students (KD, α=0.5, T=6); interrupted builds resume."""
    from .metadata import build_meta_dataset, parse_settings

    values = parse_set_options(sets or [], ("meta",)).get("meta", {})
    if students is not None:
        values["students_per_task"] = students
    settings = parse_settings(values)
    build_meta_dataset(out, settings, device=device, progress=progress)
    n = len(settings.splits())
    console.print(f"Meta-dataset ready in {out}: {n} tasks × {settings.students_per_task} students "
                  f"(unseen: {', '.join(settings.test_tasks) or 'none'}).")


@dass_app.command("meta-train")
def meta_train(
    meta: Path = typer.Option(..., "--meta", help="Meta-dataset folder written by `oral6 dass build-meta`."),
    out: Path = typer.Option(Path("runs/dass.pt"), "--out", help="Where to write the predictor checkpoint."),
    predictor: str = typer.Option("dass", "--predictor", help="dass or dass-no-func."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    sets: Optional[list[str]] = typer.Option(None, "--set", "-s", help="predictor.OPTION=VALUE, e.g. predictor.episodes=500."),
) -> None:
    """Meta-train the predictor (teacher-guided MAML); keeps the checkpoint with the best validation Spearman."""
    from oral6_core.training import resolve_device

    from .meta import rank_correlations
    from .metadata import load_meta_dataset
    from .predictor import DaSSPredictor
    from .tasks import TASK_INPUT_SHAPE

    options = parse_set_options(sets or [], ("predictor",)).get("predictor", {})
    model = registry.create("predictor", predictor, options)
    if not isinstance(model, DaSSPredictor):
        raise ConfigError(f"Predictor {predictor!r} is training-free; meta-train dass or dass-no-func.")
    settings, records = load_meta_dataset(meta, resolve_device(device))
    model.fit((settings, records))
    model.save(out)
    assert model.history is not None and model.learner is not None
    console.print(f"Best validation Spearman {model.history.best_spearman:.3f} at episode {model.history.best_episode}; wrote {out}")
    for record in records:
        if record.split == "test":
            encoded = model.encode(record, TASK_INPUT_SHAPE)
            rho, r = rank_correlations(model.learner.adapted_predict(encoded), encoded.accuracies)  # type: ignore[arg-type]
            console.print(f"unseen task {record.name}: Spearman {rho:.3f}, Pearson {r:.3f}")


def register(app: typer.Typer) -> None:
    """Attach ``oral6 dass ...`` to the main app."""
    app.add_typer(dass_app, name="dass", rich_help_panel="Plugins")
