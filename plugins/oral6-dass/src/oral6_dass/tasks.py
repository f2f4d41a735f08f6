"""Offline tasks for the meta-dataset: digit class subsets and transforms, procedural shapes and textures.

Every task gives 1×8×8 grey images in [0, 1], so one teacher family serves them all. The
procedural families (shapes, textures, dot counting; 4 or 6 classes; two noise levels) draw
their images at 16×16 and pool them to 8×8. The
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


def _invert_noisy(x: Tensor, g: torch.Generator) -> Tensor:
    return _noisy(1 - x, g)


def _flip(x: Tensor, _: torch.Generator) -> Tensor:
    return torch.flip(x, (3,))


def _grid(n: int) -> tuple[Tensor, Tensor]:
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    return yy.expand(n, 16, 16), xx.expand(n, 16, 16)


def _shapes(labels: Tensor, g: torch.Generator) -> Tensor:
    """16×16 shapes of random size and position: square, disc, plus, triangle, ring, x (by label)."""
    n = len(labels)
    yy, xx = _grid(n)
    r = (3 + 3 * torch.rand(n, generator=g)).view(n, 1, 1)
    cy, cx = (4 + 8 * torch.rand(2, n, generator=g)).view(2, n, 1, 1)
    dy, dx = (yy - cy).abs(), (xx - cx).abs()
    masks = torch.stack([
        (dy <= r) & (dx <= r),
        (dy**2 + dx**2) <= r**2,
        ((dy <= 1) & (dx <= r)) | ((dx <= 1) & (dy <= r)),
        ((yy - cy) >= -r) & ((yy - cy) <= r) & (dx <= (yy - cy + r) / 2),
        ((dy**2 + dx**2) <= r**2) & ((dy**2 + dx**2) >= (r - 2) ** 2),
        ((yy - cy - (xx - cx)).abs() <= 1) & (dx <= r) | ((yy - cy + (xx - cx)).abs() <= 1) & (dx <= r),
    ])
    return masks[labels, torch.arange(n)].float()


def _textures(labels: Tensor, g: torch.Generator) -> Tensor:
    """16×16 textures: stripes at four angles, checkerboard, dots (by label); random frequency and phase."""
    n = len(labels)
    yy, xx = _grid(n)
    freq = (2 * math.pi / (3 + 3 * torch.rand(n, generator=g))).view(n, 1, 1)
    phase = (2 * math.pi * torch.rand(n, generator=g)).view(n, 1, 1)
    sx, sy = torch.sin(freq * xx + phase), torch.sin(freq * yy + phase)
    kinds = torch.stack([sx > 0, sy > 0, torch.sin(freq * (xx + yy) + phase) > 0, torch.sin(freq * (xx - yy) + phase) > 0,
                         (sx > 0) ^ (sy > 0), (sx > 0.6) & (sy > 0.6)])
    return kinds[labels, torch.arange(n)].float()


def _placed_shapes(labels: Tensor, g: torch.Generator) -> Tensor:
    """Small shapes (square, disc, plus, triangle) in one of four quadrants: label = 4 · shape + quadrant."""
    n = len(labels)
    yy, xx = _grid(n)
    quadrant, kind = labels % 4, labels // 4
    r = (1.5 + 1.5 * torch.rand(n, generator=g)).view(n, 1, 1)
    cy = (3 + 2 * torch.rand(n, generator=g) + 8 * (quadrant // 2)).view(n, 1, 1)
    cx = (3 + 2 * torch.rand(n, generator=g) + 8 * (quadrant % 2)).view(n, 1, 1)
    dy, dx = (yy - cy).abs(), (xx - cx).abs()
    masks = torch.stack([
        (dy <= r) & (dx <= r),
        (dy**2 + dx**2) <= r**2,
        ((dy <= 0.5) & (dx <= r)) | ((dx <= 0.5) & (dy <= r)),
        ((yy - cy) >= -r) & ((yy - cy) <= r) & (dx <= (yy - cy + r) / 2),
    ])
    return masks[kind, torch.arange(n)].float()


def _stripes(labels: Tensor, g: torch.Generator) -> Tensor:
    """Stripes at four angles and three periods (about 2.5, 4 and 6.5 pixels): label = 4 · period + angle."""
    n = len(labels)
    yy, xx = _grid(n)
    angle, period = labels % 4, labels // 4
    base = torch.tensor([2.5, 4.0, 6.5])[period] * (0.9 + 0.2 * torch.rand(n, generator=g))
    freq = (2 * math.pi / base).view(n, 1, 1)
    phase = (2 * math.pi * torch.rand(n, generator=g)).view(n, 1, 1)
    waves = torch.stack([xx, yy, (xx + yy) / math.sqrt(2), (xx - yy) / math.sqrt(2)])[angle, torch.arange(n)]
    return (torch.sin(freq * waves + phase) > 0).float()


def _dots(labels: Tensor, g: torch.Generator) -> Tensor:
    """16×16 images of ``label + 1`` 2×2 dots in distinct cells of a 5×5 grid, jittered (a counting task)."""
    n = len(labels)
    cells = torch.rand(n, 25, generator=g).argsort(1)
    keep = torch.arange(25).expand(n, 25) <= labels.view(n, 1)
    jitter = torch.randint(0, 2, (n, 25, 2), generator=g)
    img = torch.zeros(n, 16, 16)
    rows = (cells // 5) * 3 + jitter[..., 0]
    cols = (cells % 5) * 3 + jitter[..., 1]
    for dy in (0, 1):
        for dx in (0, 1):
            idx = torch.arange(n).view(n, 1).expand(n, 25)
            img.index_put_((idx[keep], (rows + dy)[keep], (cols + dx)[keep]), torch.ones(int(keep.sum())))
    return img


def _procedural(draw: Callable[[Tensor, torch.Generator], Tensor], classes: int, n: int, noise: float) -> Callable[[int], Arrays]:
    def make(seed: int) -> Arrays:
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % classes
        x = F.avg_pool2d(draw(y, g).unsqueeze(1), 2) + noise * torch.randn(n, 1, 8, 8, generator=g)
        return x.clamp(0, 1), y

    return make


# Procedural tasks: 2,000 training images, a large validation split (so a student's accuracy is
# measured to about ±0.8 points) and 1,000 test images; digit tasks split the 1,797 digits 60/20/20.
PROCEDURAL_SPLIT = (2000, 4000, 1000)
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
    **{f"shapes-{k}{suffix}": _procedural(_shapes, k, sum(PROCEDURAL_SPLIT), noise)
       for k in (4, 6) for suffix, noise in (("", 0.25), ("-noisy", 0.45))},
    **{f"textures-{k}{suffix}": _procedural(_textures, k, sum(PROCEDURAL_SPLIT), noise)
       for k in (4, 6) for suffix, noise in (("", 0.35), ("-noisy", 0.55))},
    **{f"placed-shapes{suffix}": _procedural(_placed_shapes, 16, sum(PROCEDURAL_SPLIT), noise)
       for suffix, noise in (("", 0.2), ("-noisy", 0.35))},
    **{f"stripes{suffix}": _procedural(_stripes, 12, sum(PROCEDURAL_SPLIT), noise)
       for suffix, noise in (("", 0.3), ("-noisy", 0.5))},
    **{f"dots-{k}{suffix}": _procedural(_dots, k, sum(PROCEDURAL_SPLIT), noise)
       for k in (4, 6) for suffix, noise in (("", 0.2), ("-noisy", 0.4))},
}


@functools.lru_cache(maxsize=32)
def task_arrays(name: str, seed: int) -> Arrays:
    """All images and labels of a task (generated once per process; callers must not modify them)."""
    if name not in TASKS:
        raise ConfigError(f"Unknown DaSS task {name!r}. Known tasks: {', '.join(TASKS)}.")
    return TASKS[name](seed)


def load_task(name: str, seed: int = 0) -> DataBundle:
    """The named task's splits (a fixed split from ``seed``); unknown names list the known ones."""
    x, y = task_arrays(name, seed)
    fractions = (0.6, 0.2, 0.2) if name.startswith("digits") else tuple(k / sum(PROCEDURAL_SPLIT) for k in PROCEDURAL_SPLIT)
    train, val, test = split_indices(len(y), fractions, seed)
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
