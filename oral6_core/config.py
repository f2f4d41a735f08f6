"""Pydantic models for options: the strict base every component's ``Config`` extends, and run configs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ComponentConfig(BaseModel):
    """Base of every component's options: unknown keys are errors, not silent defaults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class TrainConfig(BaseModel):
    """Options of a training run that belong to the loop rather than to a component."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(10, ge=1, description="Passes over the training set.")
    batch_size: int = Field(64, ge=1, description="Global minibatch size (split across ranks under torchrun).")
    eval_batch_size: int = Field(512, ge=1, description="Minibatch size for evaluation.")
    seed: int = Field(0, description="Seed for data order, initialisation and sampling.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train; auto picks cuda when present.")
    lr_schedule: Literal["constant", "cosine"] = Field("constant", description="Learning-rate schedule over all steps.")
    grad_clip: float | None = Field(None, gt=0, description="Clip the global gradient norm to this value.")
    progress: bool = Field(True, description="Show progress: a live bar on a terminal, one line per epoch in a log file.")
    checkpoint: bool = Field(True, description="Write checkpoint.pt after each epoch and best.pt at each best epoch (atomically).")
    checkpoint_every: int | None = Field(None, ge=1, description="Also write checkpoint.pt every this many steps, mid-epoch.")


# Train options that ``--resume`` may change: they do not alter what the run computes.
RESUMABLE = ("epochs", "progress", "checkpoint_every", "device")


class RunConfig(BaseModel):
    """Everything ``oral6 train`` needs: component names, their options, and the loop's options."""

    model_config = ConfigDict(extra="forbid")

    model: str = "mlp"
    dataset: str = "digits"
    optimizer: str = "sgd"
    regularizer: str = "none"
    pruner: str | None = None
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    train: TrainConfig = Field(default_factory=TrainConfig)
    out: Path | None = None
    loggers: dict[str, dict[str, Any]] = Field(default_factory=dict)


def check_selected(run: RunConfig) -> None:
    """Options for a regularizer or pruner that is not selected would be ignored: an error naming them."""
    unused = {"pruner": run.pruner is None, "regularizer": run.regularizer == "none"}
    for section, idle in unused.items():
        names = [f"{section}.{key}" for key in run.options.get(section, {})] if idle else []
        if names:
            raise ConfigError(
                f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} set, but no {section} is selected, so "
                f"{'it' if len(names) == 1 else 'they'} would be ignored. Choose one with --{section} NAME "
                f"(see `oral6 list-plugins`), or drop the option."
            )


def check_resume(saved: dict[str, Any], names: dict[str, Any], options: dict[str, dict[str, Any]], train: dict[str, Any],
                 run_dir: Path, extra: tuple[str, ...] = ()) -> None:
    """An error naming every given option that differs from the run's ``config.json`` (``saved``):
    component ``names``, component ``options`` and ``train`` options other than ``RESUMABLE``, which a
    resumed run would ignore; ``extra`` lists other such differences (e.g. ``--out``)."""
    given = {**{f"--{k}": v for k, v in names.items()}, **flatten(options),
             **{_train_label(k): v for k, v in train.items() if k not in RESUMABLE}}
    recorded = {**{f"--{k}": saved.get(k) for k in names}, **flatten(saved.get("options") or {}),
                **{_train_label(k): v for k, v in saved["train"].items()}}
    changed = [f"{key} ({recorded.get(key)!r} -> {value!r})" for key, value in given.items() if recorded.get(key) != value]
    changed += extra
    if changed:
        raise ConfigError(
            f"--resume continues the run in {run_dir} as it was configured, so these options would be ignored: "
            f"{'; '.join(changed)}. Resume may change only {', '.join(_train_label(k) for k in RESUMABLE)}. To change "
            f"the others, start a new run (another --out, or --overwrite)."
        )


_TRAIN_FLAGS = ("epochs", "batch_size", "seed", "device", "checkpoint_every", "progress")


def _train_label(key: str) -> str:
    """How the user names a train option: its flag when it has one, else ``train.KEY``."""
    return f"--{key.replace('_', '-')}" if key in _TRAIN_FLAGS else f"train.{key}"


def flatten(options: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer.lr": 0.1}`` (nested dictionaries become dotted keys)."""
    flat: dict[str, Any] = {}
    for key, value in options.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """Render pydantic errors as ``optimizer.lr: Input should be greater than 0`` lines."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown option"
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(lines)


def validate_config(config_cls: type[BaseModel], values: dict[str, Any], prefix: str) -> Any:
    """Build ``config_cls(**values)``, turning a validation failure into a ``ConfigError``."""
    try:
        return config_cls(**values)
    except ValidationError as exc:
        known = ", ".join(config_cls.model_fields) or "none"
        raise ConfigError(
            f"Invalid options for {prefix}: {format_validation_error(exc, prefix)}. "
            f"Known options: {known}. See `oral6 show` for descriptions."
        ) from None


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value: JSON when it parses (numbers, booleans, lists), else the raw string."""
    lowered = text.strip()
    if lowered in ("true", "false", "null"):
        return json.loads(lowered)
    if lowered.lower() == "none":
        return None
    try:
        return json.loads(lowered)
    except json.JSONDecodeError:
        return text


def parse_set_options(items: list[str], sections: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Turn ``["optimizer.lr=0.01", "bench.meta.epochs=3"]`` into ``{"optimizer": {"lr": 0.01}, "bench": {"meta": {"epochs": 3}}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, option = key.strip().partition(".")
        if not sep or not dot or not option:
            raise ConfigError(f"Cannot read --set {item!r}: write it as SECTION.OPTION=VALUE, e.g. optimizer.lr=0.01.")
        if section not in sections:
            raise ConfigError(
                f"Unknown section {section!r} in --set {item!r}; the sections are: {', '.join(sections)}."
            )
        *parents, leaf = option.split(".")
        target = out.setdefault(section, {})
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise ConfigError(f"--set {item!r} sets a field inside {parent!r}, which was already given a value.")
        target[leaf] = parse_value(value)
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML run file with a clear error when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist.")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}.") from None


def merge_options(*layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Merge option dictionaries section by section; later layers win."""
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            merged.setdefault(section, {}).update(values)
    return merged
