"""The composition matrix: every installed optimizer × regularizer × pruner (and none) trained together.

``check_compositions`` trains each combination a few steps with the real loop
(``oral6_core.training.fit``), once straight through and once stopped after its first epoch and
resumed from the checkpoint with fresh components, as ``oral6 train --resume`` does. It checks what
composing must keep: finite losses, pruned weights exactly zero after training and after resuming,
and, when every component is ``deterministic``, a resumed run equal bit for bit to the uninterrupted
one (weights and losses). A combination trains on the first dataset that meets every component's
``needs``; when none does it is skipped with the unmet needs as the reason. ``markdown`` renders a
report as the README's "Compose" tables.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from torch import nn

from . import registry
from .components import Component, Pruner
from .config import TrainConfig
from .data import DataBundle
from .errors import Oral6Error

Status = Literal["passed", "failed", "skipped"]
NO_PRUNER = "none"
Options = dict[str, dict[str, dict[str, Any]]]  # kind -> component name -> options
ModelFactory = Callable[[DataBundle], nn.Module]
README_BEGIN, README_END = "<!-- compose:begin -->", "<!-- compose:end -->"


@dataclass
class Composition:
    """One optimizer × regularizer × pruner combination and its outcome."""

    optimizer: str
    regularizer: str
    pruner: str
    status: Status = "passed"
    reason: str = ""
    dataset: str = ""
    sparsity: float | None = None
    bit_exact: bool = False
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.optimizer} × {self.regularizer} × {self.pruner}"


@dataclass
class CompositionReport:
    """Every combination's outcome, the components tried per kind, the run's settings and its wall time."""

    rows: list[Composition]
    kinds: dict[str, list[str]]
    steps: dict[str, int]  # training steps of a run, per dataset
    options: Options = field(default_factory=dict)
    seconds: float = 0.0

    def with_status(self, status: Status) -> list[Composition]:
        return [r for r in self.rows if r.status == status]

    def summary(self) -> str:
        """``N combinations: P passed, S skipped, F failed in T s``."""
        counts = {s: len(self.with_status(s)) for s in ("passed", "skipped", "failed")}
        return (f"{len(self.rows)} combinations: {counts['passed']} passed, {counts['skipped']} skipped, "
                f"{counts['failed']} failed in {self.seconds:.1f} s")


class _StopAfterFirstEpoch(Exception):
    """Raised from ``on_epoch_end`` to interrupt a run once its first checkpoint is written."""


def tiny_classifier(bundle: DataBundle) -> nn.Module:
    """The matrix's default model: a two-layer MLP (16 hidden units, timm split) sized for ``bundle``."""
    from .models.nets import MLP

    return MLP(math.prod(bundle.input_shape), bundle.num_classes, (16,))


def composition_datasets() -> list[DataBundle]:
    """The matrix's default datasets, in the order tried: ``tiny-plain`` (48 rows), then ``tiny`` (environments, attributes); no test split."""
    from .testing import tiny_bundle

    return [replace(tiny_bundle(n=48, environments=False), test=None), replace(tiny_bundle(n=48), test=None)]


def check_compositions(
    optimizers: Sequence[str] | None = None,
    regularizers: Sequence[str] | None = None,
    pruners: Sequence[str] | None = None,
    options: Options | None = None,
    datasets: Sequence[DataBundle] | None = None,
    model: ModelFactory = tiny_classifier,
    epochs: int = 2,
    batch_size: int = 16,
    strict: bool = True,
) -> CompositionReport:
    """Train every combination of the named components (default: every installed one) and check each.

    ``options`` sets components' options by kind and name, e.g. ``{"pruner": {"gmp": {"update_every": 1}}}``.
    ``datasets`` (default ``composition_datasets()``) are tried in order for each combination. With
    ``strict`` a failed combination raises an ``AssertionError`` that lists every failure with its reason.
    """
    started = time.perf_counter()
    kinds = {"optimizer": list(optimizers if optimizers is not None else registry.names("optimizer")),
             "regularizer": list(regularizers if regularizers is not None else registry.names("regularizer")),
             "pruner": [NO_PRUNER, *(pruners if pruners is not None else registry.names("pruner"))]}
    given = options or {}
    for kind, names in kinds.items():  # unknown names and bad options are the caller's errors, raised before any training
        for name in names:
            if name != NO_PRUNER:
                registry.create(kind, name, given.get(kind, {}).get(name))
    pool = list(datasets) if datasets is not None else composition_datasets()
    train = TrainConfig(epochs=epochs, batch_size=batch_size, device="cpu", progress=False)
    rows = []
    memory = Path("/dev/shm")  # run folders in memory where the system has one: checkpoints then cost no disk syncs
    with tempfile.TemporaryDirectory(prefix="oral6-compose-", dir=memory if memory.is_dir() else None) as tmp:
        for opt in kinds["optimizer"]:
            for reg in kinds["regularizer"]:
                for prn in kinds["pruner"]:
                    rows.append(_check_one(Composition(opt, reg, prn), given, pool, model, train, Path(tmp) / str(len(rows))))
    steps = {b.name: epochs * -(-len(b.train) // batch_size) for b in pool}  # type: ignore[arg-type]
    report = CompositionReport(rows, kinds, steps, given, time.perf_counter() - started)
    failed = report.with_status("failed")
    if strict and failed:
        raise AssertionError(f"{len(failed)} of {len(rows)} compositions failed:\n" + "\n".join(f"- {r.label}: {r.reason}" for r in failed))
    return report


def _classes(row: Composition) -> list[type[Component]]:
    named = (("optimizer", row.optimizer), ("regularizer", row.regularizer), ("pruner", row.pruner))
    return [registry.get(kind, name) for kind, name in named if name != NO_PRUNER]


def _check_one(row: Composition, options: Options, pool: list[DataBundle], model: ModelFactory, train: TrainConfig,
               folder: Path) -> Composition:
    started = time.perf_counter()
    try:
        classes = _classes(row)
        bundle = _first_fitting(row, classes, pool)
        if bundle is not None:
            row.dataset = bundle.name
            _train_and_resume(row, options, bundle, model, train, folder, exact=all(c.deterministic for c in classes))
    except AssertionError as exc:
        row.status, row.reason = "failed", str(exc)
    except Oral6Error as exc:
        row.status, row.reason = "failed", (f"{type(exc).__name__}: {exc} (a component that cannot train on {row.dataset or 'this data'} "
                                            f"declares what it needs in its `needs`, so that it is skipped instead)")
    except Exception as exc:  # any crash of a combination is a finding, reported with the others
        row.status, row.reason = "failed", f"{type(exc).__name__}: {exc}"
    row.seconds = time.perf_counter() - started
    return row


def _first_fitting(row: Composition, classes: list[type[Component]], pool: list[DataBundle]) -> DataBundle | None:
    """The first dataset meeting every component's needs; otherwise the row is marked skipped with them."""
    unmet = []
    for bundle in pool:
        reasons = [f"{cls.name} needs {' and '.join(cls.needs.unmet(bundle))}" for cls in classes if cls.needs.unmet(bundle)]
        if not reasons:
            return bundle
        unmet.append(f"{bundle.name}: {'; '.join(reasons)}")
    row.status, row.reason = "skipped", "no dataset has what it needs (" + " | ".join(unmet) + ")"
    return None


def _fit(row: Composition, options: Options, bundle: DataBundle, model: ModelFactory, train: TrainConfig, out: Path | None,
         resume: bool = False, stop: bool = False) -> tuple[nn.Module, Pruner | None, list[dict[str, Any]]]:
    """Seed, build the model and fresh components, and train (``stop``: interrupt after the first epoch)."""
    from .training import fit, seed_everything

    def build(kind: str, name: str) -> Any:
        return None if name == "none" else registry.create(kind, name, options.get(kind, {}).get(name))

    def on_epoch_end(_row: dict[str, Any]) -> None:
        if stop:
            raise _StopAfterFirstEpoch

    seed_everything(train.seed)
    pruner = build("pruner", row.pruner)
    result = fit(model(bundle), bundle, build("optimizer", row.optimizer), train, build("regularizer", row.regularizer), pruner, out,
                 resume, on_epoch_end=on_epoch_end)
    return result.model, pruner, result.history


def _train_and_resume(row: Composition, options: Options, bundle: DataBundle, model: ModelFactory, train: TrainConfig, folder: Path,
                      exact: bool) -> None:
    straight, pruner, history = _fit(row, options, bundle, model, train, None)
    losses = {k: v for h in history for k, v in h.items() if k.endswith("_loss")}
    assert all(math.isfinite(v) for v in losses.values()), f"a loss is not finite: {losses}"
    _assert_masked(straight, pruner, "after training")
    try:
        _fit(row, options, bundle, model, train, folder, stop=True)
    except _StopAfterFirstEpoch:
        pass
    resumed, resumed_pruner, resumed_history = _fit(row, options, bundle, model, train, folder, resume=True)
    _assert_masked(resumed, resumed_pruner, "after resuming from the checkpoint")
    if pruner is not None:
        row.sparsity = pruner.sparsity()["overall"]
    if exact:
        for (key, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
            assert torch.equal(a, b), (f"the run resumed after epoch 1 ends with other weights than the uninterrupted run ({key}: "
                                       f"largest difference {(a.double() - b.double()).abs().max().item():.3g})")
        assert [h["train_loss"] for h in history] == [h["train_loss"] for h in resumed_history], (
            "the run resumed after epoch 1 has other training losses than the uninterrupted run")
        row.bit_exact = True


def _assert_masked(model: nn.Module, pruner: Pruner | None, when: str) -> None:
    if pruner is None:
        return
    params = dict(model.named_parameters())
    for name, mask in pruner.masks().items():
        assert bool((params[name].detach()[~mask.bool()] == 0).all()), f"pruned weights of {name!r} are not exactly zero {when}"


# --------------------------------------------------------------------------- the README section


def markdown(report: CompositionReport) -> str:
    """What composes with what: a table per regularizer × pruner (every optimizer in each cell), then every exception."""
    opts, regs, prns = report.kinds["optimizer"], report.kinds["regularizer"], report.kinds["pruner"]
    cells = {(r.regularizer, r.pruner): [] for r in report.rows}  # type: dict[tuple[str, str], list[Composition]]
    for r in report.rows:
        cells[(r.regularizer, r.pruner)].append(r)
    given = [f"{kind}.{name}.{key}={value}" for kind, named in report.options.items() for name, values in named.items()
             for key, value in values.items()]
    lines = [
        f"{len(opts)} optimizers ({', '.join(opts)}) × {len(regs)} regularizers × {len(prns) - 1} pruners and none: "
        f"{len(report.rows)} combinations, "
        f"{len(report.with_status('passed'))} passed, {len(report.with_status('skipped'))} skipped, "
        f"{len(report.with_status('failed'))} failed. Each trained with the training loop on the first of the datasets "
        f"{', '.join(f'{name} ({n} steps)' for name, n in report.steps.items())} that has what every component declares it "
        f"needs, then again stopped after its first epoch and resumed from the checkpoint. "
        f"✓: every optimizer passed (finite losses, pruned weights exactly zero after training and after resuming, the "
        f"resumed run equal bit for bit to the uninterrupted one); otherwise the cell names the exceptions, listed below. "
        f"Options: {', '.join(given) if given else 'the defaults'}.",
        "",
        "| regularizer (dataset) | " + " | ".join("no pruner" if p == NO_PRUNER else p for p in prns) + " |",
        "| --- |" + " --- |" * len(prns),
    ]
    for reg in regs:
        datasets = sorted({r.dataset for p in prns for r in cells[(reg, p)] if r.dataset})
        lines.append(f"| {reg} ({', '.join(datasets) or '—'}) | " + " | ".join(_cell(cells[(reg, p)]) for p in prns) + " |")
    sparsity = {r.pruner: r.sparsity for r in report.rows if r.sparsity is not None}
    if sparsity:
        lines += ["", "Sparsity each pruner reached: "
                  + ", ".join(f"{p} {s:.2f}" for p, s in sorted(sparsity.items())) + "."]
    exceptions = [r for r in report.rows if r.status != "passed" or not r.bit_exact]
    if exceptions:
        lines += ["", "Exceptions:", ""] + [f"- {r.label}: {_mark(r)}, {r.reason or 'resume not compared bit for bit (a component is not deterministic)'}"
                                              for r in exceptions]
    return "\n".join(lines)


def _mark(row: Composition) -> str:
    return {"passed": "passed" if row.bit_exact else "passed (not bit-exact)", "failed": "✗ failed", "skipped": "skipped"}[row.status]


def _cell(rows: list[Composition]) -> str:
    odd = [r for r in rows if r.status != "passed" or not r.bit_exact]
    return "✓" if not odd else "; ".join(f"{r.optimizer}: {_mark(r)}" for r in odd)


def check_readme(path: Path) -> str:
    """The text of ``path``; a ``ConfigError`` when it is not a file holding both compose markers."""
    from .errors import ConfigError

    text = path.read_text() if path.is_file() else ""
    if README_BEGIN not in text or README_END not in text:
        raise ConfigError(f"{path} is not a file with the markers {README_BEGIN} and {README_END}; add them where the "
                          f"Compose tables go.")
    return text


def update_readme(path: Path, report: CompositionReport) -> bool:
    """Rewrite the text between the compose markers of ``path`` (atomically); True if it changed."""
    from .io import write_text

    text = check_readme(path)
    head, rest = text.split(README_BEGIN, 1)
    new = f"{head}{README_BEGIN}\n{markdown(report)}\n{README_END}{rest.split(README_END, 1)[1]}"
    if new != text:
        write_text(new, path)
    return new != text


def readme_section(path: Path) -> str:
    """The text between the compose markers of ``path``."""
    return check_readme(path).split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip("\n")
