"""Multi-environment splits: training environments (with a training-domain validation split) and a
shifted test domain (with a held-out test-domain validation split for oracle model selection)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from oral6_core.components import Attribute, Task
from oral6_core.data import ArrayDataset, DataBundle


@dataclass
class EnvironmentSplits:
    """``train``/``val``: training environments; ``test``/``test_val``: the unseen test domain."""

    name: str
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    test_val: ArrayDataset
    task: Task
    attributes: list[Attribute]
    environments: list[str]

    def bundle(self) -> DataBundle:
        """The ``DataBundle`` the training loop sees: ``val`` from the training domains, ``test`` shifted,
        and the test-domain validation split ``test_val`` for oracle selection."""
        return DataBundle(self.name, self.train, self.val, self.test, self.task, list(self.attributes), list(self.environments),
                          extra_splits={"test_val": self.test_val})


def concat(parts: list[ArrayDataset]) -> ArrayDataset:
    """Rows of every part, in order."""
    return ArrayDataset(
        torch.cat([p.x for p in parts]),
        torch.cat([p.y for p in parts]),
        torch.cat([p.env for p in parts]),  # type: ignore[misc]
        {k: torch.cat([p.attrs[k] for p in parts]) for k in parts[0].attrs},
    )


def hold_out(data: ArrayDataset, fraction: float, generator: torch.Generator) -> tuple[ArrayDataset, ArrayDataset]:
    """Split ``data`` at random into (kept, held out) with ``fraction`` of the rows held out."""
    order = torch.randperm(len(data), generator=generator)
    cut = int(round(fraction * len(data)))
    return data.subset(order[cut:]), data.subset(order[:cut])


def build_splits(
    name: str, train_envs: list[ArrayDataset], test_env: ArrayDataset, val_fraction: float, test_val_fraction: float,
    task: Task, attributes: list[Attribute], environments: list[str], generator: torch.Generator,
) -> EnvironmentSplits:
    """Hold out ``val_fraction`` of each training environment and ``test_val_fraction`` of the test domain."""
    kept, held = zip(*(hold_out(e, val_fraction, generator) for e in train_envs))
    test, test_val = hold_out(test_env, test_val_fraction, generator)
    return EnvironmentSplits(name, concat(list(kept)), concat(list(held)), test, test_val, task, attributes, environments)


def bernoulli(p: float, n: int, generator: torch.Generator) -> Tensor:
    """``n`` independent 0/1 draws with P(1) = p."""
    return (torch.rand(n, generator=generator) < p).long()
