"""The ``oral6`` command line: thin typer commands that parse options and call library functions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table
from typer.core import TyperGroup

from . import __version__, registry, workflows
from .config import RunConfig, TrainConfig, load_toml, merge_options, parse_set_options, validate_config
from .errors import ConfigError, Oral6Error
from .plugins import failed_plugins, get_plugin_manager, plugin_source

console = Console()
err_console = Console(stderr=True)
COMPONENT_SECTIONS = ("model", "dataset", "optimizer", "regularizer", "pruner")


class Oral6Group(TyperGroup):
    """Turns every ``Oral6Error`` raised by any command (plugin commands too) into one paragraph and exit 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Oral6Error as exc:
            err_console.print(f"[bold red]Error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("Interrupted; files already written are complete (writes are atomic).")
            raise typer.Exit(130) from None


app = typer.Typer(
    name="oral6", cls=Oral6Group, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
    help="Research methods as composable PyTorch plugins: train, prune, adapt, search, represent, benchmark.",
)
bench_app = typer.Typer(cls=Oral6Group, no_args_is_help=True, help="List and run reproducible benchmarks.")
app.add_typer(bench_app, name="bench", rich_help_panel="Core")

SetOption = typer.Option(None, "--set", "-s", help="Component option as SECTION.OPTION=VALUE (repeatable), e.g. optimizer.lr=0.01.")


def _version(value: bool) -> None:
    if value:
        console.print(f"oral6 {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")) -> None:
    """Research methods as composable PyTorch plugins."""


# --------------------------------------------------------------------------- discovery


def plugin_report() -> dict[str, Any]:
    """Every loaded plugin with its distribution, version, hooks and what it registers per kind."""
    pm = get_plugin_manager()
    registers: dict[str, dict[str, list[str]]] = {}
    components: dict[str, list[dict[str, str]]] = {}
    for kind in registry.KINDS:
        for name, entry in sorted(registry.entries(kind).items()):
            registers.setdefault(entry.plugin, {}).setdefault(kind, []).append(name)
            components.setdefault(kind, []).append({"name": name, "plugin": entry.plugin, "summary": entry.cls.summary()})
    plugins = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin) or "?"
        source = plugin_source(name)
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        plugins.append({"name": name, "distribution": source.distribution, "version": source.version, "hooks": hooks,
                        "registers": registers.get(name, {})})
    return {"plugins": sorted(plugins, key=lambda p: (p["name"] != "builtin", p["name"])), "components": components,
            "failed": failed_plugins()}


@app.command("list-plugins", rich_help_panel="Core")
def list_plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """List installed plugins and the components each registers."""
    report = plugin_report()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title="Plugins")
    for column in ("plugin", "distribution", "version", "registers"):
        table.add_column(column)
    for p in report["plugins"]:
        regs = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in p["registers"].items()) or "(commands only)"
        table.add_row(p["name"], p["distribution"], p["version"], regs)
    console.print(table)
    for name, error in report["failed"].items():
        err_console.print(f"[bold red]Plugin {name!r} failed to import and was skipped:[/] {error}", highlight=False)
    for kind, items in report["components"].items():
        t = Table(title=f"{kind}s", title_justify="left")
        for column in ("name", "plugin", "summary"):
            t.add_column(column)
        for item in items:
            t.add_row(item["name"], item["plugin"], item["summary"])
        console.print(t)


def component_options(kind: str, name: str) -> list[dict[str, Any]]:
    """Each option of component ``name``: type, default and description."""
    cls = registry.get(kind, name)
    rows = []
    for key, info in cls.Config.model_fields.items():
        annotation = getattr(info.annotation, "__name__", None) or str(info.annotation).replace("typing.", "")
        default = "(required)" if info.is_required() else info.get_default(call_default_factory=True)
        rows.append({"option": key, "type": annotation, "default": default, "description": info.description or ""})
    return rows


@app.command(rich_help_panel="Core")
def show(
    kind: str = typer.Argument(..., help=f"One of: {', '.join(registry.KINDS)}."),
    name: str = typer.Argument(..., help="Component name, as in list-plugins."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a component's summary and every option with its default and description."""
    entry, _ = registry.lookup(kind, name)
    rows = component_options(kind, name)
    if as_json:
        typer.echo(json.dumps({"kind": kind, "name": entry.cls.name, "plugin": entry.plugin, "summary": entry.cls.summary(),
                               "citation": entry.cls.citation, "options": rows}, indent=2, default=str))
        return
    console.print(f"[bold]{kind} {entry.cls.name}[/] (plugin {entry.plugin}): {entry.cls.summary()}")
    if entry.cls.citation:
        console.print(f"Cite: {entry.cls.citation}")
    table = Table()
    for column in ("option", "type", "default", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["option"], row["type"], repr(row["default"]), row["description"])
    console.print(table if rows else "No options.")
    section = "model" if kind.replace("_", "-") == "generative-model" else kind
    console.print(f"Set them with --set {section}.OPTION=VALUE.")


# --------------------------------------------------------------------------- train


def build_run_config(
    config_file: Path | None, flags: dict[str, Any], train_flags: dict[str, Any], sets: list[str], out: Path | None
) -> RunConfig:
    """Merge a TOML file, explicit flags and ``--set`` options (in that order of precedence, lowest first)."""
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
    train_cfg = validate_config(TrainConfig, train_values, "train")
    return RunConfig(**names, options=merge_options(options, parsed), train=train_cfg, out=out)


def print_run(result: Any) -> None:
    """The per-epoch table and the final summary of a training run."""
    history = result.history
    table = Table(title="Training run")
    columns = [c for c in ("epoch", "train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "sparsity") if history and c in history[-1]]
    for c in columns:
        table.add_column(c, justify="right")
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
        lines.append(f"written to {result.out_dir}/ (summary.json, metrics.jsonl, checkpoint.pt)")
    console.print("; ".join(lines))


@app.command(rich_help_panel="Core")
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
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/<time>-<dataset>-<model>-...)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder from its last checkpoint."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train a model, composing an optimizer with an optional regularizer and pruner."""
    from .training import default_out_dir
    from .training import train as run_training

    flags = {"model": model, "dataset": dataset, "optimizer": optimizer, "regularizer": regularizer, "pruner": pruner}
    train_flags = {"epochs": epochs, "batch_size": batch_size, "seed": seed, "device": device, "progress": progress}
    if resume is not None:
        run = workflows.resumable_run(resume, epochs)
        run = run.model_copy(update={"train": run.train.model_copy(update={"progress": progress})})
    else:
        run = build_run_config(config, flags, train_flags, sets or [], out)
        if run.out is None:
            run = run.model_copy(update={"out": default_out_dir(run)})
    print_run(run_training(run, resume=resume is not None))


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


@bench_app.command("run")
def bench_run(
    name: str = typer.Argument(..., help="Benchmark name (see `oral6 bench list`)."),
    quick: bool = typer.Option(False, "--quick", help="A seconds-long version that checks the benchmark still works."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default bench-results/NAME)."),
    sets: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Benchmark option as bench.OPTION=VALUE."),
    update_readme: bool = typer.Option(False, "--update-readme", help="Rewrite the benchmark's section in its plugin README."),
) -> None:
    """Run a benchmark: writes results.json, results.md and plots, and prints the table."""
    from .bench import run_benchmark

    options = parse_set_options(sets or [], ("bench",)).get("bench", {})
    out = out or Path("bench-results") / (name + ("-quick" if quick else ""))
    result = run_benchmark(name, out, quick=quick, options=options, update_readme_file=update_readme)
    console.print(Markdown(result.markdown))
    for claim, held in result.claims.items():
        console.print(f"{'[green]held[/]' if held else '[yellow]did not hold[/]'}: {claim}")
    console.print("Wrote " + ", ".join(str(f) for f in result.files))


# --------------------------------------------------------------------------- workflows


@app.command(rich_help_panel="Workflows")
def adapt(
    adapter: str = typer.Option(..., "--adapter", "-a", help="Black-box adapter (see list-plugins)."),
    source: str = typer.Option(..., "--source", help="Source-domain dataset the black box is trained on."),
    target: str = typer.Option(..., "--target", help="Target-domain dataset (its labels are used only for the final score)."),
    model: str = typer.Option("cnn", "--model", "-m", help="Student model builder."),
    source_model: Optional[str] = typer.Option(None, "--source-model", help="Black-box model builder (default: --model)."),
    source_epochs: int = typer.Option(15, "--source-epochs", min=1, help="Epochs to train the source model."),
    source_lr: float = typer.Option(2e-3, "--source-lr", min=0.0, help="Adam learning rate of the source model."),
    mode: str = typer.Option("topk", "--blackbox-mode", help="What the black box returns: topk, probs or label."),
    k: int = typer.Option(1, "--k", min=1, help="How many top classes the black box reveals in topk mode."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    sets: Optional[list[str]] = typer.Option(None, "--set", "-s", help="adapter.OPTION=V, model.OPTION=V, source.OPTION=V or target.OPTION=V."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write adapt.json and student.pt (the adapted weights) here."),
) -> None:
    """Adapt a student to an unlabelled target domain through a black-box source model."""
    if mode not in ("topk", "probs", "label"):
        raise ConfigError(f"--blackbox-mode must be topk, probs or label, not {mode!r}.")
    options = parse_set_options(sets or [], ("adapter", "model", "source", "target"))
    report = workflows.adapt(adapter, source, target, model, source_model or model, source_epochs, source_lr, mode, k, seed, device,
                             options, out)
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
) -> None:
    """Rank candidate student architectures for a teacher and dataset under a size budget."""
    options = parse_set_options(sets or [], ("predictor", "dataset"))
    report = workflows.search(predictor, dataset, teacher, budget_params, predictor_checkpoint, top_k, distil, seed, device, options)
    table = Table(title=f"Top {len(report['top'])} of {report['candidates']} candidates under the budget")
    for column in ("rank", "candidate", "parameters", "score"):
        table.add_column(column, justify="right" if column != "candidate" else "left")
    for i, row in enumerate(report["top"], 1):
        table.add_row(str(i), row["candidate"], f"{row['parameters']:,}", f"{row['score']:.4g}")
    console.print(table)
    console.print(f"teacher accuracy {report['teacher_accuracy']:.4f}; scored {report['candidates']} candidates in {report['seconds']:.2f}s")
    if "distilled_accuracy" in report:
        console.print(f"distilled {report['top'][0]['candidate']}: accuracy {report['distilled_accuracy']:.4f}")


@app.command("fit-generative", rich_help_panel="Workflows")
def fit_generative(
    model: str = typer.Option(..., "--model", "-m", help="Generative model (see list-plugins)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="A dataset with a stream of environments."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default runs/<time>-<model>-<dataset>)."),
    seed: int = typer.Option(0, "--seed"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda (default: the model's own device option)."),
    sets: Optional[list[str]] = typer.Option(None, "--set", "-s", help="model.OPTION=V or dataset.OPTION=V."),
) -> None:
    """Train a generative model on a stream of environments; report disentanglement after each."""
    options = parse_set_options(sets or [], ("model", "dataset"))
    summary: dict[str, Any] = {}
    rows, out_dir = workflows.fit_generative(model, dataset, out, seed, options, lambda r: console.print(_row_line(r)), device,
                                             summary.update)
    table = Table(title="Disentanglement after each environment")
    columns = list(rows[0]) if rows else []
    for c in columns:
        table.add_column(c, justify="right")
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
) -> None:
    """Fit a neural representation of a trained network's weights and rebuild the network from it."""
    options = parse_set_options(sets or [], ("representation",))
    report = workflows.represent(method, checkpoint, model, data, out, seed, device, options)
    _print_pairs("Weight representation", report)


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


def _register_plugin_commands() -> Oral6Error | None:
    try:
        get_plugin_manager().hook.oral6_register_commands(app=app)
    except Oral6Error as exc:
        return exc
    return None


_load_error = _register_plugin_commands()


def main() -> None:
    """Console-script entry point."""
    if _load_error is not None:
        err_console.print(f"[bold red]Error:[/] {_load_error}", highlight=False)
        raise SystemExit(2)
    app()
