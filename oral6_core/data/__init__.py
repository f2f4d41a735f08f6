"""The dataset protocol: a ``DataBundle`` of splits, in-memory ``ArrayDataset`` and a fast batch loader."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..components import Attribute, Batch, Environment, Task
from ..errors import ShapeError


class ArrayDataset(Dataset):
    """Tensors held in memory: ``x``, ``y``, optional ``env`` and named attribute tensors.

    Indexing with a list or tensor of indices returns a whole ``Batch`` at once, which is what
    makes in-memory training as fast as a hand-written loop.
    """

    def __init__(self, x: Tensor, y: Tensor, env: Tensor | None = None, attrs: dict[str, Tensor] | None = None):
        n = x.shape[0]
        for name, t in [("y", y), ("env", env), *((attrs or {}).items())]:
            if t is not None and t.shape[0] != n:
                raise ShapeError(f"ArrayDataset field {name!r} has {t.shape[0]} rows but x has {n}.")
        self.x, self.y, self.env, self.attrs = x, y, env, dict(attrs or {})

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: Any) -> Batch:
        return Batch(
            self.x[index],
            self.y[index],
            None if self.env is None else self.env[index],
            {k: v[index] for k, v in self.attrs.items()},
        )

    def subset(self, index: Tensor) -> "ArrayDataset":
        """A new dataset with the rows in ``index``."""
        b = self[index]
        return ArrayDataset(b.x, b.y, b.env, b.attrs)

    def without_labels(self) -> "ArrayDataset":
        """The same inputs with every label replaced by -1 (for unsupervised adaptation)."""
        y = torch.full((len(self),), -1, dtype=torch.long)
        return ArrayDataset(self.x, y, self.env, {})


@dataclass
class DataBundle:
    """A dataset's splits and what methods need to know about it.

    ``attributes`` and ``environments`` describe multi-environment data (CACM); ``extra_splits`` are
    further evaluation sets (e.g. a test-domain validation set for oracle model selection) that the
    training loop scores every epoch and selects by; ``stream`` holds a continual sequence of
    environments for generative models; ``factor_names`` names the columns of ``y`` when ``y`` holds
    ground-truth generative factors. ``graph`` is a causal graph the dataset declares (edges ``"U->V"``
    over ``Y``, ``Xc``, ``X``, ``E``, its attributes and latent nodes) and ``selection`` the graph nodes
    its rows were selected on; methods that reason about causal structure (CACM) use them.
    """

    name: str
    train: Dataset
    val: Dataset | None
    test: Dataset | None
    task: Task
    attributes: list[Attribute] = field(default_factory=list)
    environments: list[str] = field(default_factory=list)
    extra_splits: dict[str, Dataset] = field(default_factory=dict)
    stream: list[Environment] = field(default_factory=list)
    factor_names: list[str] = field(default_factory=list)
    graph: list[str] = field(default_factory=list)
    selection: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.task.input_shape

    @property
    def num_classes(self) -> int:
        return self.task.num_classes


def collate_batches(items: list[Any]) -> Batch:
    """Collate per-item ``Batch`` objects or ``(x, y)`` tuples (torchvision) into one ``Batch``."""
    first = items[0]
    if isinstance(first, Batch):
        return Batch(
            torch.stack([torch.as_tensor(b.x) for b in items]),
            torch.stack([torch.as_tensor(b.y) for b in items]),
            None if first.env is None else torch.stack([torch.as_tensor(b.env) for b in items]),
            {k: torch.stack([torch.as_tensor(b.attrs[k]) for b in items]) for k in first.attrs},
        )
    xs, ys = zip(*items)
    return Batch(torch.stack(list(xs)), torch.as_tensor(ys))


class BatchLoader:
    """Iterates ``Batch`` objects over any dataset, by index slicing when it is an ``ArrayDataset``.

    Shuffling is seeded per epoch (``set_epoch``), so a resumed run sees exactly the batches it
    would have seen; ``set_epoch(epoch, start)`` skips the epoch's first ``start`` batches (a
    resume mid-epoch). With ``world_size > 1`` each global batch is split
    into equal contiguous shards, one per rank: averaging the ranks' gradients then gives exactly
    the gradient of the single-process batch (a ``DistributedSampler`` would give other batches).
    ``batch_size`` is the global batch size.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        if batch_size % world_size:
            raise ShapeError(f"The batch size {batch_size} does not split evenly over {world_size} processes.")
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.seed, self.drop_last, self.num_workers = seed, drop_last, num_workers
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Choose the shuffle of ``epoch``; iteration begins at its batch ``start``."""
        self.epoch, self.start = epoch, start

    def _order(self) -> Tensor:
        n = len(self.dataset)  # type: ignore[arg-type]
        if not self.shuffle:
            return torch.arange(n)
        generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return torch.randperm(n, generator=generator)

    def _drops_last(self) -> bool:
        return (self.drop_last or self.world_size > 1) and len(self.dataset) >= self.batch_size  # type: ignore[arg-type]

    def __len__(self) -> int:
        n = len(self.dataset)  # type: ignore[arg-type]
        return n // self.batch_size if self._drops_last() else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = self._order()
        chunks = list(order.split(self.batch_size))
        if self._drops_last() and chunks and len(chunks[-1]) < self.batch_size:
            chunks.pop()
        if self.world_size > 1:
            shard = len(chunks[0]) // self.world_size
            chunks = [c[self.rank * shard : (self.rank + 1) * shard] for c in chunks]
        chunks = chunks[self.start :]
        if isinstance(self.dataset, ArrayDataset):
            for idx in chunks:
                yield self.dataset[idx]
            return
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=[c.tolist() for c in chunks],
            collate_fn=collate_batches,
            num_workers=self.num_workers,
        )
        yield from loader


def split_indices(n: int, fractions: tuple[float, ...], seed: int) -> list[Tensor]:
    """Random disjoint index sets with the given fractions (the last takes the remainder)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    sizes = [int(round(f * n)) for f in fractions[:-1]]
    sizes.append(n - sum(sizes))
    return list(perm.split(sizes))


__all__ = ["ArrayDataset", "BatchLoader", "DataBundle", "collate_batches", "split_indices"]
