"""Helpers shared by the regularizers: environment checks, representation choice, one-time warnings."""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import Tensor

from oral6_core.components import Batch
from oral6_core.data import DataBundle
from oral6_core.errors import DataError

Layer = Literal["logits", "features"]


def require_env(batch: Batch, who: str) -> Tensor:
    """``batch.env``, or a ``DataError`` saying which datasets carry environments."""
    if batch.env is None:
        raise DataError(
            f"The {who} regularizer needs environment labels, but the batches of this dataset have none. Use a "
            f"multi-environment dataset such as multiattr-digits or shift-synthetic."
        )
    return batch.env


def require_attr(batch: Batch, name: str) -> Tensor:
    """``batch.attrs[name]``, or a ``DataError`` naming the attributes the batch has."""
    if name not in batch.attrs:
        raise DataError(
            f"The batch has no attribute {name!r} (it has {sorted(batch.attrs)}). The dataset must give every row "
            f"a value for each attribute it declares."
        )
    return batch.attrs[name]


def pick(features: Tensor, logits: Tensor, layer: Layer) -> Tensor:
    """The representation the penalty constrains, flattened to rows."""
    rep = logits if layer == "logits" else features
    return rep.reshape(rep.shape[0], -1)


def training_environments(bundle: DataBundle) -> int:
    """Number of distinct environments in the training split (declared ones when it cannot be read)."""
    env = getattr(bundle.train, "env", None)
    if env is not None:
        return int(torch.unique(env).numel())
    return max(len(bundle.environments), 1)


def environment_cardinality(bundle: DataBundle) -> int:
    """One more than the largest training environment id: the radix of E in group codes."""
    env = getattr(bundle.train, "env", None)
    if env is not None and len(env):
        return int(env.max()) + 1
    return max(len(bundle.environments), 1)


def pair_normaliser(num_envs: int) -> float:
    """E(E−1)/2, the number of environment pairs (1 for a single environment)."""
    return num_envs * (num_envs - 1) / 2 if num_envs > 1 else 1.0


class OnceWarner:
    """Emits each distinct warning once per regularizer instance."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, key: str, message: str) -> None:
        if key not in self.seen:
            self.seen.add(key)
            warnings.warn(message, UserWarning, stacklevel=3)
