"""The ``oral6`` command line: thin typer commands that parse options and call library functions."""

from __future__ import annotations

import importlib
import json
import types
import typing
import signal
import sys
import threading
import warnings
from datetime import datetime
from pathlib import Path
from contextlib import nullcontext
from contextvars import ContextVar
from typing import Any, Callable, ContextManager, Literal, Optional

import click
import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from pydantic import BaseModel
from rich.table import Table
from typer.core import TyperGroup

from . import __version__, discovery, registry
from .config import RunConfig, TrainConfig, load_toml, merge_options, parse_set_options, validate_config
from .errors import ConfigError, Oral6Error, RunInterrupted
from .progress import shown
from .rundir import RunFolder, is_main_process

console = Console()
err_console = Console(stderr=True)


class _Deferred:
    """A module imported on first attribute access, so that `oral6 --help` and `list-plugins` never import torch."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


workflows = _Deferred("oral6_core.workflows")
COMPONENT_SECTIONS = ("model", "dataset", "optimizer", "regularizer", "pruner")


class Oral6Group(TyperGroup):
    """Turns every ``Oral6Error`` raised by any command (plugin commands too) into one paragraph and exit 2."""

    def invoke(self, ctx: Any) -> Any:
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _terminated) if main else None
        try:
            return super().invoke(ctx)
        except RunInterrupted as exc:
            if is_main_process():  # every torchrun rank stops at the same step; one message is enough
                err_console.print(str(exc), highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except Oral6Error as exc:
            err_console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except (KeyboardInterrupt, _Terminated) as exc:
            name, code = ("SIGTERM", 143) if isinstance(exc, _Terminated) else ("SIGINT", 130)
            err_console.print(f"Stopped by {name}; files already written are complete (writes are atomic).")
            raise typer.Exit(code) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


class _Terminated(Exception):
    """SIGTERM outside a training loop (which stops at a safe point itself)."""


def _terminated(_signum: int, _frame: Any) -> None:
    raise _Terminated


class Oral6RootGroup(Oral6Group):
    """The ``oral6`` group: plugins' commands load when one is run; ``--help`` lists them from the discovery cache."""

    listing = False  # True while the help page is drawn: plugin commands are then described, not loaded
    loaded = False
    described: list[dict[str, Any]] | None = None

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing, self.described = False, None

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        return names + [c["name"] for c in self._plugin_commands() if c["name"] not in names]

    def get_command(self, ctx: Any, name: str) -> Any:
        if name in self.commands or name not in {c["name"] for c in self._plugin_commands()}:
            return super().get_command(ctx, name)
        if self.listing and not self.loaded:
            described = next(c for c in self._plugin_commands() if c["name"] == name)
            stub = click.Command(name, help=described["help"], hidden=described["hidden"])
            stub.rich_help_panel = described["panel"]  # type: ignore[attr-defined]
            return stub
        self.commands.update({n: c for n, c in discovery.plugin_commands().items() if n not in self.commands})
        self.loaded = True
        return self.commands.get(name)

    def _plugin_commands(self) -> list[dict[str, Any]]:
        if self.described is None:
            try:
                self.described = discovery.listing()["commands"]
            except Oral6Error as exc:  # an invalid plugin: say so, and still show the core's commands
                err_console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
                self.described = []
        return self.described


app = typer.Typer(
    name="oral6", cls=Oral6RootGroup, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
    help="Research methods as composable PyTorch plugins: train, prune, adapt, search, represent, benchmark.",
)
bench_app = typer.Typer(cls=Oral6Group, no_args_is_help=True, help="List and run reproducible benchmarks.")
app.add_typer(bench_app, name="bench", rich_help_panel="Core")

SetOption = typer.Option(None, "--set", "-s", help="Component option as SECTION.OPTION=VALUE (repeatable), e.g. optimizer.lr=0.01.")
ProgressOption = typer.Option(True, "--progress/--no-progress", help="Show progress: a live bar on a terminal, one line per epoch or stage in a log file.")
LoggerOption = typer.Option(None, "--logger", "-l", help="Also log to tensorboard, mlflow or a plugin's logger (repeatable); "
                            "its options as --set logger.NAME.OPTION=VALUE.")


def logger_options(names: list[str] | None, sets: list[str] | None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The selected loggers with their ``--set logger.NAME.OPTION=V`` options, and the other ``--set`` items."""
    from .loggers import logger_spec

    mine = [item for item in sets or [] if item.lstrip().startswith("logger.")]
    options = parse_set_options(mine, ("logger",)).get("logger", {})
    return logger_spec(names or [], options), [item for item in sets or [] if item not in mine]


def _version(value: bool) -> None:
    if value:
        console.print(f"oral6 {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")) -> None:
    """Research methods as composable PyTorch plugins."""


# --------------------------------------------------------------------------- discovery


@app.command("list-plugins", rich_help_panel="Core")
def list_plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """List installed plugins, the components each registers, and plugins that failed to import (with the reason)."""
    report = discovery.listing()["report"]
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title="Plugins")
    for column in ("plugin", "distribution", "version", "registers"):
        table.add_column(column)
    for p in report["plugins"]:
        regs = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in p["registers"].items()) or "(commands only)"
        if "error" in p:
            regs = f"[bold red]failed to import, skipped:[/] {escape(p['error'])}"
        table.add_row(p["name"], p["distribution"], p["version"], regs)
    console.print(table)
    for kind, items in report["components"].items():
        t = Table(title=f"{kind}s", title_justify="left")
        for column in ("name", "plugin", "summary"):
            t.add_column(column)
        for item in items:
            t.add_row(item["name"], item["plugin"], item["summary"])
        console.print(t)


def type_name(annotation: Any) -> str:
    """How ``show`` writes a type: ``int``, ``list[int]``, ``float | None``; a ``Literal`` lists its choices."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None and args:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    return "None" if annotation is type(None) else getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def config_options(config_cls: type[BaseModel]) -> list[dict[str, Any]]:
    """Each option of a config model: type, default, description and (for a ``Literal``) its choices."""
    rows = []
    for key, info in config_cls.model_fields.items():
        default = "(required)" if info.is_required() else info.get_default(call_default_factory=True)
        row = {"option": key, "type": type_name(info.annotation), "default": default, "description": info.description or ""}
        literal = next((a for a in (info.annotation, *typing.get_args(info.annotation)) if typing.get_origin(a) is Literal), None)
        if literal is not None:
            row["choices"] = list(typing.get_args(literal))
        rows.append(row)
    return rows


def component_options(kind: str, name: str) -> list[dict[str, Any]]:
    """Each option of component ``name``: type, default and description."""
    return config_options(registry.get(kind, name).Config)


def _options_table(rows: list[dict[str, Any]]) -> Table:
    table = Table()
    for column in ("option", "type", "default", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["option"], row["type"], repr(row["default"]), row["description"])
    return table


@app.command(rich_help_panel="Core")
def show(
    kind: str = typer.Argument(..., help=f"train (the training loop's options) or a kind: {', '.join(registry.KINDS)}."),
    name: Optional[str] = typer.Argument(None, help="Component name, as in list-plugins (none for train)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a component's summary and every option with its type (a choice lists its values), default and description."""
    if kind == "train":
        if name is not None:
            raise ConfigError("`oral6 show train` takes no name: it lists the training loop's options.")
        rows = config_options(TrainConfig)
        if as_json:
            typer.echo(json.dumps({"kind": "train", "options": rows}, indent=2, default=str))
            return
        console.print("[bold]train[/]: the training loop's options (`oral6 train`).")
        console.print(_options_table(rows))
        console.print("Set them with --set train.OPTION=VALUE or in the \\[train] table of --config; some have flags (oral6 train --help).")
        return
    if name is None:
        raise ConfigError(f"Name the {kind} to show, e.g. `oral6 show {kind} NAME`; `oral6 list-plugins` lists the names.")
    entry, _ = registry.lookup(kind, name)
    rows = component_options(kind, name)
    if as_json:
        typer.echo(json.dumps({"kind": kind, "name": entry.cls.name, "plugin": entry.plugin, "summary": entry.cls.summary(),
                               "citation": entry.cls.citation, "options": rows}, indent=2, default=str))
        return
    console.print(f"[bold]{kind} {entry.cls.name}[/] (plugin {entry.plugin}): {entry.cls.summary()}")
    if entry.cls.citation:
        console.print(f"Cite: {entry.cls.citation}")
    console.print(_options_table(rows) if rows else "No options.")
    section = "model" if kind.replace("_", "-") == "generative-model" else kind
    console.print(f"Set them with --set {section}.OPTION=VALUE.")


# --------------------------------------------------------------------------- train


def given_options(
    config_file: Path | None, flags: dict[str, Any], train_flags: dict[str, Any], sets: list[str], out: Path | None
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, Any], Path | None]:
    """What the user gave: component names, their options, train options and ``--out``, from a TOML
    file, flags and ``--set`` (in that order of precedence, lowest first); defaults are not filled in."""
    names: dict[str, Any] = {}
    options: dict[str, dict[str, Any]] = {}
    train_values: dict[str, Any] = {}
    if config_file is not None:
        data = load_toml(config_file)
        unknown = set(data) - {*COMPONENT_SECTIONS, "train", "out"}
        if unknown:
            raise ConfigError(f"{config_file}: unknown top-level keys {sorted(unknown)}; use {', '.join(COMPONENT_SECTIONS)}, train, out.")
        for section in COMPONENT_SECTIONS:
            value = data.get(section)
            if isinstance(value, str):
                names[section] = value
            elif isinstance(value, dict):
                value = dict(value)
                if "name" in value:
                    names[section] = value.pop("name")
                options[section] = value
        train_values.update(data.get("train", {}))
        out = out or (Path(data["out"]) if "out" in data else None)
    names.update({k: v for k, v in flags.items() if v is not None})
    train_values.update({k: v for k, v in train_flags.items() if v is not None})
    parsed = parse_set_options(sets, (*COMPONENT_SECTIONS, "train"))
    train_values.update(parsed.pop("train", {}))
    return names, merge_options(options, parsed), train_values, out


def build_run_config(
    config_file: Path | None, flags: dict[str, Any], train_flags: dict[str, Any], sets: list[str], out: Path | None
) -> RunConfig:
    """The run the user asked for (``given_options`` with defaults filled in and validated)."""
    names, options, train_values, out = given_options(config_file, flags, train_flags, sets, out)
    train_cfg = validate_config(TrainConfig, train_values, "train")
    return RunConfig(**names, options=options, train=train_cfg, out=out)


def print_run(result: Any) -> None:
    """The per-epoch table and the final summary of a training run."""
    history = result.history
    columns = [c for c in ("epoch", "train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "sparsity") if history and c in history[-1]]
    table = _numbers_table("Training run", columns)
    shown = history if len(history) <= 12 else history[:: max(1, len(history) // 10)] + [history[-1]]
    for row in shown:
        table.add_row(*(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    console.print(table)
    s = result.summary
    lines = [f"parameters {s['parameters']:,}", f"{s['steps']} steps in {s['train_seconds']:.1f}s"]
    for key, sel in s.items():
        if key.startswith("selected_by_") and sel.get("test_accuracy") is not None:
            split = key.removeprefix("selected_by_")
            lines.append(f"best {split} accuracy {sel[f'{split}_accuracy']:.4f} at epoch {sel['epoch']} (test {sel['test_accuracy']:.4f})")
    if "sparsity" in s:
        lines.append(f"sparsity {s['sparsity']['overall']:.4f}")
    if result.out_dir is not None:
        lines.append(f"written to {result.out_dir}/ (config.json, summary.json, metrics.jsonl, checkpoint.pt, best.pt)")
    console.print("; ".join(lines))


def _numbers_table(title: str, columns: list[str]) -> Table:
    """A table of right-aligned numbers whose headers break at ``_`` when one line would not fit the terminal."""
    table = Table(title=title)
    narrow = sum(len(c) + 3 for c in columns) + 1 > console.width
    for c in columns:
        table.add_column(c.replace("_", "\n") if narrow else c, justify="right")
    return table


def _train_epilog() -> str:
    """The training loop's options for ``oral6 train --help`` (one paragraph each: typer keeps them apart)."""
    rows = [f"  train.{r['option']} ({r['type']}, default {r['default']!r}): {r['description']}" for r in config_options(TrainConfig)]
    return "\n\n".join(["Training-loop options (--set train.OPTION=VALUE; `oral6 show train`):", *rows])


@app.command(rich_help_panel="Core", epilog=_train_epilog())
def train(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model builder (default mlp)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Dataset (default digits, bundled)."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", "-o", help="Optimizer (default sgd)."),
    regularizer: Optional[str] = typer.Option(None, "--regularizer", "-r", help="Regularizer (default none)."),
    pruner: Optional[str] = typer.Option(None, "--pruner", "-p", help="Pruner (default: dense training)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", help="Passes over the training set (default 10)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Global batch size (default 64)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default 0)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda (default auto)."),
    sets: Optional[list[str]] = SetOption,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML run file; flags and --set override it."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/<time>-<dataset>-<model>-...); one that holds a run "
                                       "needs --resume or --overwrite."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder from its last checkpoint, exactly. "
                                          "Only --epochs, --device, --checkpoint-every and --progress may change."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run already in the --out folder."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", min=1, help="Also checkpoint every N steps, mid-epoch."),
    progress: bool = ProgressOption,
    loggers: Optional[list[str]] = LoggerOption,
) -> None:
    """Train a model, composing an optimizer with an optional regularizer and pruner.

    Ctrl-C or SIGTERM stops after the current step with a checkpoint (exit 130 or 143); --resume then
    continues exactly.
    """
    from .loggers import recorded_loggers
    from .training import default_out_dir
    from .training import train as run_training

    spec, sets = logger_options(loggers, sets)
    flags = {"model": model, "dataset": dataset, "optimizer": optimizer, "regularizer": regularizer, "pruner": pruner}
    train_flags = {"epochs": epochs, "batch_size": batch_size, "seed": seed, "device": device, "progress": progress,
                   "checkpoint_every": checkpoint_every}
    if resume is not None:
        if overwrite:
            raise ConfigError("--resume and --overwrite exclude each other: resume continues a run, overwrite replaces it.")
        run = workflows.resumable_run(resume, *given_options(config, flags, train_flags, sets, out))
        spec = {**recorded_loggers(resume), **spec}
    else:
        run = build_run_config(config, flags, train_flags, sets, out)
        if run.out is None:
            run = run.model_copy(update={"out": default_out_dir(run)})
    run = run.model_copy(update={"loggers": spec})
    result = run_training(run, resume=resume is not None, overwrite=overwrite, on_epoch_end=EPOCH_HOOK.get())
    if is_main_process():  # under torchrun every rank returns the same result; one table is enough
        print_run(result)


# --------------------------------------------------------------------------- sweep

# The pruning callback of the sweep trial that runs the train command in this context (None otherwise).
EPOCH_HOOK: ContextVar[Callable[[dict[str, Any]], None] | None] = ContextVar("epoch_hook", default=None)


# click's usage-error base class, as the installed typer raises it (typer may vendor its own click).
ClickError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _command(words: list[str]) -> tuple[Any, list[str]]:
    """The click command named by the leading ``words`` (``train``, ``bench run``) and its arguments."""
    command = typer.main.get_command(app)
    while hasattr(command, "commands") and words:
        sub = command.commands.get(words[0])
        if sub is None:
            raise ConfigError(f"oral6 has no command {words[0]!r} to sweep over.")
        command, words = sub, words[1:]
    return command, words


def invoke_command(words: list[str], on_epoch_end: Callable[[dict[str, Any]], None] | None = None, dry: bool = False) -> None:
    """Run ``oral6 WORDS...`` in this process (a sweep's trial), or with ``dry`` only parse its options;
    a bad option is a ``ConfigError``."""
    command, args = _command(words)
    name = f"oral6 {' '.join(words[: len(words) - len(args)])}"
    token = EPOCH_HOOK.set(on_epoch_end)
    try:
        if dry:
            command.make_context(name, args)
        else:
            command.main(args=args, prog_name=name, standalone_mode=False)
    except ClickError as exc:
        raise ConfigError(exc.format_message()) from None
    finally:
        EPOCH_HOOK.reset(token)


@app.command(rich_help_panel="Core", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sweep(
    ctx: typer.Context,
    space: Path = typer.Argument(..., help='TOML file with a \\[space] table, e.g. "optimizer.lr" = {low = 1e-4, high = 0.1, log = true} '
                                 'or "optimizer.momentum" = {choices = [0.0, 0.9]}.'),
    trials: Optional[int] = typer.Option(10, "--trials", "-n", min=1, help="Trials in the study; resuming or sharing it runs only the "
                                         "missing ones (grid: omit for the full grid)."),
    metric: str = typer.Option("val_accuracy", "--metric", help="What to optimise: a metric of the run's last epoch (train) or a "
                               "numeric column of the result rows, averaged (bench)."),
    direction: str = typer.Option("maximize", "--direction", help="maximize or minimize."),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe, random or grid (grid needs choices only)."),
    prune: bool = typer.Option(True, "--prune/--no-prune", help="Stop a training trial whose per-epoch metric trails the median of "
                               "earlier trials (Optuna's MedianPruner)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL shared by several sweep processes or machines "
                                          "(default sqlite:///<out>/study.db)."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name in the storage (default oral6)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Sweep folder: trial-NNNN run folders, sweep.json, sweep.png "
                                       "(default sweeps/<space file name>); rerun the same command to resume."),
    seed: int = typer.Option(0, "--sampler-seed", help="Seed of the sampler."),
) -> None:
    """Tune any --set option of a train or bench command with Optuna: oral6 sweep SPACE.toml --trials 8 -- train --epochs 5 ..."""
    from .tuning import SECTIONS, best_rows, check_command, command_objective, load_space, run_sweep

    command = list(ctx.args)
    kind = check_command(command)
    invoke_command(command, dry=True)  # a bad option fails now, not in every trial
    space_dims = load_space(space, SECTIONS[kind])
    out = out or Path("sweeps") / space.stem
    objective = command_objective(command, out, metric, invoke_command, lambda line: console.print(escape(line), highlight=False))
    result = run_sweep(objective, space_dims, out, metric, trials, direction, sampler, seed, storage, study, prune and kind == "train")
    states = [t["state"] for t in result.trials]
    console.print(f"Best of {len(states)} trials ({states.count('complete')} completed, {states.count('pruned')} pruned, "
                  f"{states.count('fail')} failed), by {metric} ({direction}):")
    table = Table(title="Best trial")
    table.add_column("")
    table.add_column("value")
    for label, value in best_rows(result):
        table.add_row(label, value)
    console.print(table)
    for t in result.trials:
        if t["state"] == "fail":
            err_console.print(escape(f"trial {t['number']} failed: {t['message']}"), highlight=False, soft_wrap=True)
    console.print(f"Wrote {out}/sweep.json and {out}/sweep.png")


# --------------------------------------------------------------------------- bench


@bench_app.command("list")
def bench_list() -> None:
    """List the registered benchmarks."""
    table = Table()
    for column in ("benchmark", "plugin", "summary"):
        table.add_column(column)
    for name, entry in sorted(registry.entries("benchmark").items()):
        table.add_row(name, entry.plugin, entry.cls.summary())
    console.print(table)


def print_markdown(text: str) -> None:
    """Print markdown; its tables fold long headers and cells onto more lines instead of cutting them."""
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|") == (not block or block[0].startswith("|")):
            block.append(line)
            continue
        _print_block(block)
        block = [line]
    _print_block(block)


def _print_block(lines: list[str]) -> None:
    if not lines or not lines[0].startswith("|"):
        console.print(Markdown("\n".join(lines)))
        return
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if not set(line) <= set("|-: ")]
    table = Table()
    for header in cells[0]:
        table.add_column(header, overflow="fold")
    for row in cells[1:]:
        table.add_row(*row)
    console.print(table)


@bench_app.command("run")
def bench_run(
    name: str = typer.Argument(..., help="Benchmark name (see `oral6 bench list`)."),
    quick: bool = typer.Option(False, "--quick", help="A seconds-long version that checks the benchmark still works."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default bench-results/NAME)."),
    sets: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Benchmark option as bench.OPTION=VALUE."),
    update_readme: bool = typer.Option(False, "--update-readme", help="Rewrite the benchmark's section in its plugin README."),
    loggers: Optional[list[str]] = LoggerOption,
) -> None:
    """Run a benchmark: writes results.json, results.md and plots, and prints the table."""
    from .bench import QUICK_VERDICT, run_benchmark

    spec, sets = logger_options(loggers, sets)
    options = parse_set_options(sets, ("bench",)).get("bench", {})
    out = out or Path("bench-results") / (name + ("-quick" if quick else ""))
    result = run_benchmark(name, out, quick=quick, options=options, update_readme_file=update_readme, loggers=spec)
    print_markdown(result.markdown)
    for claim, held in result.claims.items():
        verdict = QUICK_VERDICT if quick else "[green]held[/]" if held else "[yellow]did not hold[/]"
        console.print(f"{verdict}: {claim}")
    console.print("Wrote " + ", ".join(str(f) for f in result.files))


@app.command(rich_help_panel="Core")
def compose(
    optimizers: Optional[list[str]] = typer.Option(None, "--optimizer", "-o", help="Only these optimizers (repeatable; default: every installed one)."),
    regularizers: Optional[list[str]] = typer.Option(None, "--regularizer", "-r", help="Only these regularizers (repeatable)."),
    pruners: Optional[list[str]] = typer.Option(None, "--pruner", "-p", help="Only these pruners (repeatable; no pruner is always tried)."),
    sets: Optional[list[str]] = typer.Option(None, "--set", "-s", help="A component's option as KIND.NAME.OPTION=VALUE, e.g. pruner.gmp.update_every=1."),
    readme: Optional[Path] = typer.Option(None, "--update-readme", help="Rewrite the Compose section (between <!-- compose:begin --> "
                                          "and <!-- compose:end -->) of this README with the tables."),
) -> None:
    """Train every optimizer × regularizer × pruner together a few steps and check that each composes (checkpoint and resume included)."""
    from .compositions import check_compositions, check_readme, markdown, update_readme

    if readme is not None:
        check_readme(readme)
    options = parse_set_options(sets or [], ("optimizer", "regularizer", "pruner"))
    for kind, names in options.items():
        for name, value in names.items():
            if not isinstance(value, dict):
                raise ConfigError(f"--set {kind}.{name}={value!r}: name the component too, as {kind}.NAME.OPTION=VALUE.")
            registry.create(kind, name, value)  # an unknown name or option is an error before any training
    report = check_compositions(optimizers, regularizers, pruners, options, strict=False)
    print_markdown(markdown(report))
    console.print(report.summary())
    if readme is not None:
        changed = update_readme(readme, report)
        console.print(f"{'Rewrote' if changed else 'Unchanged:'} the Compose section of {readme}")
    if report.with_status("failed"):
        raise typer.Exit(1)


# --------------------------------------------------------------------------- workflows

OverwriteOption = typer.Option(False, "--overwrite", help="Replace this workflow's results already in the --out folder.")


def _claimed(out: Optional[Path], files: tuple[str, ...], overwrite: bool) -> ContextManager[Any]:
    """Hold ``out`` for one workflow run: its earlier results there need --overwrite, and a second writer is an error."""
    return nullcontext() if out is None else RunFolder(out, overwrite=overwrite, files=files, resumable=False)


@app.command(rich_help_panel="Workflows")
def adapt(
    adapter: str = typer.Option(..., "--adapter", "-a", help="Black-box adapter (see list-plugins)."),
    source: Optional[str] = typer.Option(None, "--source", help="Source-domain dataset the black box is trained on (or give --source-checkpoint)."),
    target: str = typer.Option(..., "--target", help="Target-domain dataset (its labels are used only for the final score)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Student model builder (default cnn; not with --student)."),
    student: Optional[Path] = typer.Option(None, "--student", help="Adapt this checkpoint's network, from its weights: one written by "
                                           "`oral6 train`, or the distilled student of `oral6 search --distil --out DIR` (DIR/checkpoint.pt)."),
    source_model: Optional[str] = typer.Option(None, "--source-model", help="Black-box model builder (default: --model, else cnn)."),
    source_epochs: int = typer.Option(15, "--source-epochs", min=1, help="Epochs to train the source model."),
    source_lr: float = typer.Option(2e-3, "--source-lr", min=0.0, help="Adam learning rate of the source model."),
    mode: str = typer.Option("topk", "--blackbox-mode", help="What the black box returns: topk, probs or label."),
    k: int = typer.Option(1, "--k", min=1, help="How many top classes the black box reveals in topk mode."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    sets: Optional[list[str]] = typer.Option(None, "--set", "-s", help="adapter.OPTION=V, model.OPTION=V, source.OPTION=V or target.OPTION=V."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write adapt.json and student.pt (the adapted weights) here "
                                       "(default runs/<time>-adapt-<adapter>)."),
    source_checkpoint: Optional[Path] = typer.Option(None, "--source-checkpoint", help="Serve this `oral6 train` checkpoint instead of training a source model (--source and the source options are then ignored)."),
    query_budget: Optional[int] = typer.Option(None, "--query-budget", min=0, help="Most samples the black box answers; one more is an error."),
    overwrite: bool = OverwriteOption,
    loggers: Optional[list[str]] = LoggerOption,
    progress: bool = ProgressOption,
) -> None:
    """Adapt a student to an unlabelled target domain through a black-box source model served from its own process."""
    if mode not in ("topk", "probs", "label"):
        raise ConfigError(f"--blackbox-mode must be topk, probs or label, not {mode!r}.")
    if source is None and source_checkpoint is None:
        raise ConfigError("Name the black box's source: --source DATASET (trained here) or --source-checkpoint PATH.")
    if student is not None and model is not None:
        raise ConfigError("--model builds a fresh student and --student adapts a trained one: give one of them.")
    spec, sets = logger_options(loggers, sets)
    options = parse_set_options(sets, ("adapter", "model", "source", "target"))
    out = out or Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-adapt-{adapter}"
    source_model = source_model or model or "cnn"
    config = {"adapter": adapter, "source": source, "target": target, "model": model, "student": None if student is None else str(student),
              "source_model": source_model,
              "source_epochs": source_epochs, "source_lr": source_lr,
              "source_checkpoint": None if source_checkpoint is None else str(source_checkpoint),
              "blackbox_mode": mode, "k": k, "query_budget": query_budget, "seed": seed, "options": options}
    with _claimed(out, ("adapt.json", "student.pt"), overwrite), shown(progress):
        report = run_tracked(spec, out, "adapt", config, lambda logs: workflows.adapt(
            adapter, source or "", target, model or "cnn", source_model, source_epochs, source_lr, mode, k, seed, device, options, out,
            source_checkpoint, query_budget, student))
    _print_pairs("Black-box adaptation", report)


@app.command(rich_help_panel="Workflows")
def search(
    predictor: str = typer.Option(..., "--predictor", help="Performance predictor (see list-plugins)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Target dataset."),
    teacher: Path = typer.Option(..., "--teacher", help="Teacher checkpoint written by `oral6 train`."),
    budget_params: Optional[int] = typer.Option(None, "--budget-params", min=1, help="Largest student size in parameters."),
    predictor_checkpoint: Optional[Path] = typer.Option(None, "--predictor-checkpoint", help="A trained predictor to load."),
    top_k: int = typer.Option(5, "--top-k", min=1, help="How many candidates to print."),
    distil: bool = typer.Option(False, "--distil", help="Distil the best candidate from the teacher and report its accuracy."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    sets: Optional[list[str]] = typer.Option(None, "--set", "-s", help="predictor.OPTION=V or dataset.OPTION=V."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write search.json (every candidate ranked) and, with --distil, the student "
                                       "as checkpoint.pt (for `oral6 adapt --student`) here (default runs/<time>-search-<predictor>-<dataset>)."),
    overwrite: bool = OverwriteOption,
    loggers: Optional[list[str]] = LoggerOption,
) -> None:
    """Rank candidate student architectures for a teacher and dataset under a size budget."""
    spec, sets = logger_options(loggers, sets)
    options = parse_set_options(sets, ("predictor", "dataset"))
    out = out or Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-search-{predictor}-{dataset}".replace(":", "_")
    config = {"predictor": predictor, "dataset": dataset, "teacher": str(teacher), "budget_params": budget_params, "top_k": top_k,
              "distil": distil, "seed": seed, "options": options}
    with _claimed(out, ("search.json", "checkpoint.pt"), overwrite):
        report = run_tracked(spec, out, "search", config, lambda logs: workflows.search(
            predictor, dataset, teacher, budget_params, predictor_checkpoint, top_k, distil, seed, device, options, out))
    table = Table(title=f"Top {len(report['top'])} of {report['candidates']} candidates under the budget")
    for column in ("rank", "candidate", "parameters", "score"):
        table.add_column(column, justify="right" if column != "candidate" else "left")
    for i, row in enumerate(report["top"], 1):
        table.add_row(str(i), row["candidate"], f"{row['parameters']:,}", f"{row['score']:.4g}")
    console.print(table)
    console.print(f"teacher accuracy {report['teacher_accuracy']:.4f}; scored {report['candidates']} candidates in {report['seconds']:.2f}s")
    if "distilled_accuracy" in report:
        console.print(f"distilled {report['top'][0]['candidate']}: accuracy {report['distilled_accuracy']:.4f}")
    console.print(f"Wrote {out}/search.json" + (f" and the student as {out}/checkpoint.pt (adapt it with `oral6 adapt --student`)"
                                                   if distil else ""))


@app.command("fit-generative", rich_help_panel="Workflows")
def fit_generative(
    model: str = typer.Option(..., "--model", "-m", help="Generative model (see list-plugins)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="A dataset with a stream of environments."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default runs/<time>-<model>-<dataset>)."),
    seed: int = typer.Option(0, "--seed"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda (default: the model's own device option)."),
    sets: Optional[list[str]] = typer.Option(None, "--set", "-s", help="model.OPTION=V or dataset.OPTION=V."),
    overwrite: bool = OverwriteOption,
    loggers: Optional[list[str]] = LoggerOption,
    progress: bool = ProgressOption,
) -> None:
    """Train a generative model on a stream of environments; report disentanglement after each."""
    spec, sets = logger_options(loggers, sets)
    options = parse_set_options(sets, ("model", "dataset"))
    if spec and out is None:
        out = Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{model}-{dataset}"
    config = {"model": model, "dataset": dataset, "seed": seed, "options": options}
    summary: dict[str, Any] = {}

    def run(logs: Any) -> tuple[list[dict[str, Any]], Path]:
        def on_row(row: dict[str, Any]) -> None:
            console.print(_row_line(row))
            logs.log({f"{row['environment']}/{k}": v for k, v in row.items()}, row["after"])

        return workflows.fit_generative(model, dataset, out, seed, options, on_row, device, summary.update)

    with _claimed(out, ("metrics.json", "model.pt"), overwrite), shown(progress):
        rows, out_dir = run_tracked(spec, out, "fit-generative", config, run)
    columns = list(rows[0]) if rows else []
    table = _numbers_table("Disentanglement after each environment", columns)
    for r in rows:
        table.add_row(*(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in columns))
    console.print(table)
    _print_pairs("After the last environment", summary)
    console.print(f"Wrote {out_dir}/metrics.json and pictures in {out_dir}/")


@app.command(rich_help_panel="Workflows")
def represent(
    method: str = typer.Option(..., "--method", help="Weight representation (see list-plugins)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Checkpoint written by `oral6 train`."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model builder of the checkpoint (default: as recorded)."),
    data: bool = typer.Option(True, "--data/--no-data", help="Use the training data (or fit data-free, on noise)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: next to the checkpoint)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    sets: Optional[list[str]] = typer.Option(None, "--set", "-s", help="representation.OPTION=V."),
    overwrite: bool = OverwriteOption,
    loggers: Optional[list[str]] = LoggerOption,
    progress: bool = ProgressOption,
) -> None:
    """Fit a neural representation of a trained network's weights and rebuild the network from it."""
    spec, sets = logger_options(loggers, sets)
    options = parse_set_options(sets, ("representation",))
    config = {"method": method, "checkpoint": str(checkpoint), "model": model, "data": data, "seed": seed, "options": options}
    outputs = (f"{method}-represent.json", f"{method}-representation.pt")
    with _claimed(out or (checkpoint.parent if checkpoint.is_file() else None), outputs, overwrite), shown(progress):
        report = run_tracked(spec, out or checkpoint.parent, "represent", config, lambda logs: workflows.represent(
            method, checkpoint, model, data, out, seed, device, options))
    _print_pairs("Weight representation", report)


def run_tracked(spec: dict[str, dict[str, Any]], out: Path | None, workflow: str, config: dict[str, Any], call: Any) -> Any:
    """``call(logs)`` inside the selected loggers; a report it returns is logged, with the folder's files."""
    from .loggers import run_artifacts, track

    with track(spec, out, workflow, config) as logs:
        result = call(logs)
        if logs:
            if isinstance(result, dict):
                logs.log(result, 0)
            logs.log_artifacts(run_artifacts(out))  # type: ignore[arg-type]
    return result


def _row_line(row: dict[str, Any]) -> str:
    return "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())


def _print_pairs(title: str, report: dict[str, Any]) -> None:
    table = Table(title=title)
    table.add_column("")
    table.add_column("value", justify="right")
    for key, value in report.items():
        table.add_row(key.replace("_", " "), f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


# --------------------------------------------------------------------------- plugin commands


def _print_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                   file: typing.TextIO | None = None, line: str | None = None) -> None:
    """Print a Python warning as one plain paragraph (no source path or code line) for command-line users."""
    print(f"Warning: {message}", file=file or sys.stderr)


def main() -> None:
    """Console-script entry point."""
    warnings.showwarning = _print_warning
    app()
