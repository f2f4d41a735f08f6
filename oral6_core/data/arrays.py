"""``arrays:FILE``: an ``.npz`` or ``.pt`` file of arrays ``x``, ``y`` and optionally ``env``, ``split``, ``attr_<name>``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..components import DatasetSource
from ..errors import DataError
from . import DataBundle
from .folder import SPEC, spec_path
from .spec import read_spec
from .tables import Table, UserDataConfig, assemble, encode_table

ATTR_PREFIX = "attr_"


def _read(path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # numpy and torch raise many types for foreign files
        raise DataError(f"Cannot read {path}: {exc}.") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} holds a {type(data).__name__}; it must hold a dict of arrays (x, y, ...).")
    return data


def _array(value: Any) -> np.ndarray:
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


class ArraysDataset(DatasetSource):
    """Your arrays: an .npz or .pt file with x, y and optional env, split, attr_<name> (+ dataset.toml)."""

    name = "arrays:*"
    Config = UserDataConfig

    def load(self, seed: int = 0) -> DataBundle:
        c = self.config
        path = Path(c.variant).expanduser()
        if path.suffix not in (".npz", ".pt") or not path.is_file():
            raise DataError(f"arrays:{c.variant}: {path} is not an existing .npz or .pt file.")
        beside = path.with_suffix(".toml")
        spec = read_spec(spec_path(c.spec, beside if beside.is_file() else path.parent / SPEC))
        data = {str(k): _array(v) for k, v in _read(path).items()}
        unknown = [k for k in data if k not in ("x", "y", "env", "split") and not k.startswith(ATTR_PREFIX)]
        missing = [k for k in ("x", "y") if k not in data]
        if unknown or missing:
            raise DataError(f"{path} must hold arrays x and y (missing: {missing or 'none'}) and optionally env, split and "
                            f"attr_<name>; it also holds {unknown or 'nothing else'}.")
        if data["x"].ndim < 2:
            raise DataError(f"{path}: array 'x' has shape {data['x'].shape}; it needs one row of features per sample, [N, ...].")
        n = len(data["x"])
        for key, value in data.items():
            if value.ndim == 0 or len(value) != n:
                raise DataError(f"{path}: array {key!r} has {len(value) if value.ndim else 0} rows but x has {n}.")
            if key != "x" and value.ndim != 1:
                raise DataError(f"{path}: array {key!r} must be one value per row (shape [{n}]), not {value.shape}.")
        table = Table(path, data["y"], lambda i: f"{path} row {i}", data.get("env"), data.get("split"),
                      {k[len(ATTR_PREFIX):]: v for k, v in data.items() if k.startswith(ATTR_PREFIX)})
        encoded = encode_table(table, spec, c)
        x = torch.from_numpy(np.ascontiguousarray(data["x"]))
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        return assemble(f"arrays:{c.variant}", x, encoded, c)
