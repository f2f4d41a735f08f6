"""A user's data as columns (label, env, split, attributes) turned into a ``DataBundle``.

Both user sources (``folder:`` and ``arrays:``) read their rows into a ``Table``; ``encode_table``
checks and encodes every column against ``dataset.toml`` and chooses the splits *before* any image
is decoded, so bad data fails fast and nothing is cached from a failed load; ``assemble`` then adds
the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from ..components import Attribute, Environment, Task
from ..config import ComponentConfig
from ..errors import ConfigError, DataError
from . import ArrayDataset, DataBundle, split_indices
from .spec import FACTOR, LABEL_FACTOR, DatasetSpec

VAL_NAMES = {"val", "valid", "validation"}


class UserDataConfig(ComponentConfig):
    """Options shared by the user data sources: where the spec is, how to split, how to normalise."""

    variant: str = Field(..., description="Path of the data (the part after the colon).")
    spec: Path | None = Field(None, description="The dataset.toml to read (default: the one beside the data).")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Share held out for validation (when the data has no split column).")
    test_fraction: float = Field(0.2, ge=0, lt=1, description="Share held out for testing (no split column, no test_environments).")
    test_environments: list[str] = Field([], description="Environments whose rows form the test split (no split column).")
    split_seed: int = Field(0, description="Seed of the split when the data has no split column.")
    normalize: Literal["none", "standard"] = Field(
        "none", description="none: inputs as stored ([0, 1] for images); standard: per-channel mean/std of the training split."
    )
    mean: list[float] | None = Field(None, description="Per-channel means to subtract (overrides normalize).")
    std: list[float] | None = Field(None, description="Per-channel standard deviations to divide by (with mean).")


@dataclass
class Table:
    """Raw columns of ``n`` rows; ``row(i)`` names row ``i`` in messages (file and line)."""

    source: Path
    label: np.ndarray
    row: Callable[[int], str]
    env: np.ndarray | None = None
    split: np.ndarray | None = None
    attrs: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.label)


@dataclass
class EncodedTable:
    """Every column as integer codes, with names, and the row indices of each split."""

    y: Tensor
    classes: list[str]
    env: Tensor | None
    environments: list[str]
    attrs: dict[str, Tensor]
    attributes: list[Attribute]
    splits: dict[str, Tensor]
    factor_names: list[str]
    graph: list[str]
    selection: list[str]


def _integers(values: np.ndarray) -> np.ndarray | None:
    """``values`` as int64 when every entry is a whole number (or a string of one), else ``None``."""
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        return values.astype(np.int64) if np.all(np.isfinite(values)) and np.all(values == np.round(values)) else None
    text = values.astype(str)
    if len(text) and all(v.strip().lstrip("-").isdigit() for v in text):
        return np.array([int(v) for v in text], dtype=np.int64)
    return None


def encode_column(values: np.ndarray, declared: tuple[str, ...] | None, what: str, table: Table, spec: DatasetSpec,
                  first_seen: bool = False) -> tuple[Tensor, list[str]]:
    """Integer codes and value names of one column.

    Declared values are coded by their position (any other value is an error naming the row; numeric
    arrays hold the codes themselves); whole numbers are their own codes; other strings are coded in
    sorted order (``first_seen``: in order of first appearance).
    """
    if declared is not None and values.dtype.kind in "iubf":
        codes = _integers(values)
        bad = np.flatnonzero((codes < 0) | (codes >= len(declared))) if codes is not None else [0]
        if len(bad):
            raise DataError(f"{table.row(int(bad[0]))}: {what} {values[bad[0]]} is not a code 0..{len(declared) - 1} of the "
                            f"values {list(declared)} declared in {spec.where}.")
        return torch.from_numpy(codes), list(declared)  # type: ignore[arg-type]
    if declared is not None:
        index = {name: i for i, name in enumerate(declared)}
        text = values.astype(str).tolist()
        codes = np.empty(len(text), dtype=np.int64)
        for i, value in enumerate(text):
            if value not in index:
                raise DataError(f"{table.row(i)}: {what} {value!r} is not one of the values {list(declared)} declared in {spec.where}.")
            codes[i] = index[value]
        return torch.from_numpy(codes), list(declared)
    ints = _integers(values)
    if ints is not None:
        if len(ints) and ints.min() < 0:
            i = int(np.argmin(ints))
            raise DataError(f"{table.row(i)}: {what} {ints[i]} is negative; integer values must be codes 0, 1, 2, ...")
        return torch.from_numpy(ints), [str(k) for k in range(int(ints.max()) + 1 if len(ints) else 0)]
    text = values.astype(str)
    blank = np.flatnonzero(np.char.strip(text) == "")
    if len(blank):
        raise DataError(f"{table.row(int(blank[0]))}: the {what} is empty.")
    names = list(dict.fromkeys(text.tolist())) if first_seen else sorted(set(text.tolist()))
    index = {name: i for i, name in enumerate(names)}
    return torch.tensor([index[v] for v in text.tolist()], dtype=torch.long), names


def _named_splits(table: Table) -> dict[str, Tensor]:
    text = np.char.lower(np.char.strip(table.split.astype(str)))  # type: ignore[union-attr]
    names = np.where(np.isin(text, list(VAL_NAMES)), "val", text)
    splits = {str(name): torch.from_numpy(np.flatnonzero(names == name)) for name in dict.fromkeys(names.tolist())}
    if "" in splits:
        raise DataError(f"{table.row(int(splits[''][0]))}: the split is empty; use train, val, test or another split name.")
    if "train" not in splits:
        raise DataError(f"{table.source}: no row has split 'train' (found {sorted(splits)}); the training split is required.")
    return splits


def _seeded_splits(n: int, env: Tensor | None, environments: list[str], c: UserDataConfig, source: Path) -> dict[str, Tensor]:
    rows = torch.arange(n)
    splits: dict[str, Tensor] = {}
    test_fraction = c.test_fraction
    if c.test_environments:
        unknown = [e for e in c.test_environments if e not in environments]
        if env is None or unknown:
            raise ConfigError(f"dataset.test_environments names {unknown or c.test_environments}, but {source} has "
                              f"environments {environments or '(none: no env column)'}.")
        held = torch.isin(env, torch.tensor([environments.index(e) for e in c.test_environments]))
        splits["test"], rows, test_fraction = rows[held], rows[~held], 0.0
    if c.val_fraction + test_fraction >= 1:
        raise ConfigError(f"dataset.val_fraction + dataset.test_fraction is {c.val_fraction + test_fraction:g}; it must be below 1.")
    train, val, test = split_indices(len(rows), (1 - c.val_fraction - test_fraction, c.val_fraction, test_fraction), c.split_seed)
    splits = {"train": rows[train], "val": rows[val], **splits}
    if test_fraction:
        splits["test"] = rows[test]
    return splits


def encode_table(table: Table, spec: DatasetSpec, c: UserDataConfig) -> EncodedTable:
    """Check every column against the spec and choose the splits (no inputs needed yet)."""
    spec.check_columns(list(table.attrs), table.source)
    y, classes = encode_column(table.label, spec.classes, "label", table, spec)
    env, environments = (None, [])
    if table.env is not None:
        env, environments = encode_column(table.env, spec.environments, "environment", table, spec, first_seen=True)
    attrs, attributes = {}, []
    for name, values in table.attrs.items():
        declared = spec.attributes[name]
        attrs[name], value_names = encode_column(values, declared.values, f"value of attribute {name!r}", table, spec)
        if declared.type != FACTOR:
            attributes.append(Attribute(name, declared.type, len(value_names)))  # type: ignore[arg-type]
    if table.split is not None:
        if c.test_environments:
            raise ConfigError(f"{table.source} has a split column, so dataset.test_environments cannot also choose the test split.")
        splits = _named_splits(table)
    else:
        splits = _seeded_splits(len(table), env, environments, c, table.source)
    if not len(splits["train"]):
        raise DataError(f"{table.source}: the training split is empty ({len(table)} rows in all).")
    return EncodedTable(y, classes, env, environments, attrs, attributes, splits, spec.factor_columns(), spec.edges, spec.selection)


def _normalise(x: Tensor, train_rows: Tensor, c: UserDataConfig) -> Tensor:
    if c.mean is None and c.normalize == "none":
        return x
    channels = x.shape[1]
    if c.mean is not None:
        mean, std = torch.tensor(c.mean), torch.tensor(c.std if c.std is not None else [1.0] * len(c.mean))
        if len(mean) != channels or len(std) != channels:
            raise ConfigError(f"dataset.mean and dataset.std need {channels} values (one per channel); got {len(mean)} and {len(std)}.")
    else:
        dims = [d for d in range(x.dim()) if d != 1]
        train = x[train_rows]
        mean, std = train.mean(dim=dims), train.std(dim=dims).clamp_min(1e-6)
    shape = (1, channels, *([1] * (x.dim() - 2)))
    return (x - mean.reshape(shape)) / std.reshape(shape)


def _stream(x: Tensor, t: EncodedTable) -> list[Environment]:
    """One environment per environment id (in order), ``y`` holding the ground-truth factors."""
    if not t.factor_names:
        return []
    factors = torch.stack([t.y if f == LABEL_FACTOR else t.attrs[f] for f in t.factor_names], dim=1)
    groups = [(name, t.env == i) for i, name in enumerate(t.environments)] if t.env is not None else [("all", None)]
    stream = []
    for name, mask in groups:
        rows = torch.arange(len(x)) if mask is None else torch.nonzero(mask).squeeze(1)
        if len(rows):
            f = factors[rows]
            varying = [n for k, n in enumerate(t.factor_names) if torch.unique(f[:, k]).numel() > 1]
            env = None if t.env is None else t.env[rows]
            stream.append(Environment(name, ArrayDataset(_rows(x, rows), f, env), list(t.factor_names), varying))
    return stream


def _rows(x: Tensor, rows: Tensor) -> Tensor:
    """``x[rows]``, as a view without a copy when the rows are contiguous (data sorted by environment)."""
    start, stop = int(rows[0]), int(rows[-1]) + 1
    return x[start:stop] if stop - start == len(rows) else x[rows]


def assemble(name: str, x: Tensor, t: EncodedTable, c: UserDataConfig) -> DataBundle:
    """The bundle: normalised inputs split as chosen, attributes, environments, the factor stream and the graph."""
    full = ArrayDataset(_normalise(x, t.splits["train"], c), t.y, t.env, t.attrs)
    parts = {k: full.subset(rows) for k, rows in t.splits.items()}
    extra = {k: v for k, v in parts.items() if k not in ("train", "val", "test") and len(v)}
    pick = lambda k: parts[k] if k in parts and len(parts[k]) else None  # noqa: E731
    return DataBundle(
        name=name, train=parts["train"], val=pick("val"), test=pick("test"),
        task=Task("categorical", len(t.classes), tuple(x.shape[1:])), attributes=t.attributes,
        environments=t.environments, extra_splits=extra, stream=_stream(x, t), graph=list(t.graph),
        selection=list(t.selection),
    )
