"""Offline tasks for the meta-dataset: digit class subsets and transforms, procedural shapes and textures.

Every task gives 1×8×8 grey images in [0, 1], so one teacher family serves them all. The
dataset ``dass-task`` exposes each task to ``oral6 train`` (``--set dataset.task=NAME``).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
from pydantic import Field
from torch import Tensor
from torch.nn import functional as F

from oral6_core.components import DatasetSource, Task
from oral6_core.config import ComponentConfig
from oral6_core.data import ArrayDataset, DataBundle, split_indices
from oral6_core.data.digits import load_digits_arrays
from oral6_core.errors import ConfigError

Arrays = tuple[Tensor, Tensor]
TASK_INPUT_SHAPE = (1, 8, 8)


def _digits(classes: tuple[int, ...], transform: Callable[[Tensor, torch.Generator], Tensor] | None = None) -> Callable[[int], Arrays]:
    def make(seed: int) -> Arrays:
        x, y = load_digits_arrays()
        keep = torch.isin(y, torch.tensor(classes))
        x, y = x[keep], y[keep]
        relabel = torch.full((10,), -1, dtype=torch.long)
        relabel[torch.tensor(classes)] = torch.arange(len(classes))
        if transform is not None:
            x = transform(x, torch.Generator().manual_seed(seed))
        return x.clamp(0, 1), relabel[y]

    return make


def _rot90(x: Tensor, _: torch.Generator) -> Tensor:
    return torch.rot90(x, 1, (2, 3))


def _invert(x: Tensor, _: torch.Generator) -> Tensor:
    return 1 - x


def _noisy(x: Tensor, g: torch.Generator) -> Tensor:
    return x + 0.35 * torch.randn(x.shape, generator=g)


def _flip(x: Tensor, _: torch.Generator) -> Tensor:
    return torch.flip(x, (3,))


def _shape_image(kind: int, g: torch.Generator) -> Tensor:
    """One 16×16 shape (random size and position), later pooled to 8×8."""
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    r = 3 + 3 * torch.rand((), generator=g).item()
    cy, cx = (4 + 8 * torch.rand(2, generator=g)).tolist()
    dy, dx = (yy - cy).abs(), (xx - cx).abs()
    masks = [
        (dy <= r) & (dx <= r),  # square
        (dy**2 + dx**2) <= r**2,  # disc
        ((dy <= 1) & (dx <= r)) | ((dx <= 1) & (dy <= r)),  # plus
        ((yy - cy) >= -r) & ((yy - cy) <= r) & (dx <= (yy - cy + r) / 2),  # triangle
        ((dy**2 + dx**2) <= r**2) & ((dy**2 + dx**2) >= (r - 2) ** 2),  # ring
        ((yy - cy - (xx - cx)).abs() <= 1) & (dx <= r) | ((yy - cy + (xx - cx)).abs() <= 1) & (dx <= r),  # x
    ]
    return masks[kind].float()


def _texture_image(kind: int, g: torch.Generator) -> Tensor:
    """One 16×16 texture: stripes at four angles, checkerboard or dots, random frequency and phase."""
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    freq = 2 * math.pi / (3 + 3 * torch.rand((), generator=g).item())
    phase = 2 * math.pi * torch.rand((), generator=g).item()
    waves = [xx, yy, xx + yy, xx - yy]
    if kind < 4:
        return (torch.sin(freq * waves[kind] + phase) > 0).float()
    if kind == 4:
        return ((torch.sin(freq * xx + phase) > 0) ^ (torch.sin(freq * yy + phase) > 0)).float()
    return ((torch.sin(freq * xx + phase) > 0.6) & (torch.sin(freq * yy + phase) > 0.6)).float()


def _procedural(draw: Callable[[int, torch.Generator], Tensor], classes: tuple[int, ...], n: int, noise: float) -> Callable[[int], Arrays]:
    def make(seed: int) -> Arrays:
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % len(classes)
        big = torch.stack([draw(classes[int(label)], g) for label in y]).unsqueeze(1)
        x = F.avg_pool2d(big, 2) + noise * torch.randn(n, 1, 8, 8, generator=g)
        return x.clamp(0, 1), y

    return make


TASKS: dict[str, Callable[[int], Arrays]] = {
    "digits-all": _digits(tuple(range(10))),
    "digits-0to4": _digits((0, 1, 2, 3, 4)),
    "digits-5to9": _digits((5, 6, 7, 8, 9)),
    "digits-even": _digits((0, 2, 4, 6, 8)),
    "digits-odd": _digits((1, 3, 5, 7, 9)),
    "digits-1478": _digits((1, 4, 7, 8)),
    "digits-rot90": _digits(tuple(range(10)), _rot90),
    "digits-flip-0to4": _digits((0, 1, 2, 3, 4), _flip),
    "digits-invert": _digits(tuple(range(10)), _invert),
    "digits-noisy": _digits(tuple(range(10)), _noisy),
    "shapes-4": _procedural(_shape_image, (0, 1, 2, 3), 1000, 0.15),
    "shapes-6": _procedural(_shape_image, (0, 1, 2, 3, 4, 5), 1200, 0.25),
    "textures-4": _procedural(_texture_image, (0, 1, 2, 3), 1000, 0.2),
    "textures-6": _procedural(_texture_image, (0, 1, 2, 3, 4, 5), 1200, 0.35),
}


@functools.lru_cache(maxsize=32)
def task_arrays(name: str, seed: int) -> Arrays:
    """All images and labels of a task (generated once per process; callers must not modify them)."""
    if name not in TASKS:
        raise ConfigError(f"Unknown DaSS task {name!r}. Known tasks: {', '.join(TASKS)}.")
    return TASKS[name](seed)


def load_task(name: str, seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2) -> DataBundle:
    """The named task's splits (a fixed split from ``seed``); unknown names list the known ones."""
    x, y = task_arrays(name, seed)
    train, val, test = split_indices(len(y), (1 - val_fraction - test_fraction, val_fraction, test_fraction), seed)
    full = ArrayDataset(x.float().contiguous(), y.long())
    num_classes = int(y.max()) + 1
    return DataBundle(f"dass-task:{name}", full.subset(train), full.subset(val), full.subset(test),
                      Task("categorical", num_classes, TASK_INPUT_SHAPE))


class DaSSTaskConfig(ComponentConfig):
    task: str = Field("shapes-4", description=f"Which task: {', '.join(TASKS)}.")
    split_seed: int = Field(0, description="Seed of the data generation and the train/val/test split.")


class DaSSTaskDataset(DatasetSource):
    """Small offline 8×8 tasks of DaSS's meta-dataset: digit subsets/transforms, shapes, textures."""

    name = "dass-task"
    Config = DaSSTaskConfig

    def load(self, seed: int = 0) -> DataBundle:
        return load_task(self.config.task, self.config.split_seed)
