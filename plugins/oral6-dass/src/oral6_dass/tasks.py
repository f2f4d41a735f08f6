"""Offline tasks for the meta-dataset: digit class subsets and transforms, procedural image families.

Every task gives 1×8×8 grey images in [0, 1], so one teacher family serves them all. The
procedural families draw their images at 16×16 and pool them to 8×8: shapes, textures, stripes
and dot counting (several class counts and noise levels each), and single-task families: smooth
random patterns of four scales, Landolt rings, arrows, letters, pairs of discs, a bright
quadrant in noise and mirror symmetries. A task's family is its name up to the first hyphen
(``task_family``); the shipped meta-dataset holds out whole families. The dataset ``dass-task`` exposes each task to ``oral6 train``
(``--set dataset.task=NAME``).
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


def _rotated_coords(n: int, g: torch.Generator, angles: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel coordinates (u along ``angles``, v across) around a random centre in the middle 6×6 pixels."""
    yy, xx = _grid(n)
    cy, cx = (5 + 6 * torch.rand(2, n, generator=g)).view(2, n, 1, 1)
    c, s = torch.cos(angles).view(n, 1, 1), torch.sin(angles).view(n, 1, 1)
    return (xx - cx) * c + (yy - cy) * s, (yy - cy) * c - (xx - cx) * s


def _arrows(labels: Tensor, g: torch.Generator) -> Tensor:
    """An arrow pointing in one of 8 directions (label · 45°, ±5° jitter), random length and position."""
    n = len(labels)
    u, v = _rotated_coords(n, g, labels.float() * math.pi / 4 + 0.17 * (torch.rand(n, generator=g) - 0.5))
    half = (3 + 2 * torch.rand(n, generator=g)).view(n, 1, 1)
    shaft = (v.abs() <= 0.8) & (u >= -half) & (u <= half)
    head = (u <= half + 1) & (u >= half - 2.5) & (v.abs() <= half + 1 - u)
    return (shaft | head).float()


# A 3×5 pixel font of the glyph task's letters.
_FONT = {"C": "111100100100111", "E": "111100111100111", "H": "101101111101101", "L": "100100100100111",
         "T": "111010010010010", "U": "101101101101111", "Z": "111001010100111", "X": "101101010101101"}


def _glyphs(labels: Tensor, g: torch.Generator) -> Tensor:
    """A letter (C E H L T U Z X, by label) of a 3×5 font drawn at 2× (6×10 pixels) at a random position."""
    n = len(labels)
    font = torch.tensor([[int(b) for b in bits] for bits in _FONT.values()], dtype=torch.float).view(-1, 5, 3)
    big = font.repeat_interleave(2, 1).repeat_interleave(2, 2)
    img = torch.zeros(n, 16, 16)
    top, left = torch.randint(0, 7, (n,), generator=g), torch.randint(0, 11, (n,), generator=g)
    for i in range(n):
        img[i, top[i]:top[i] + 10, left[i]:left[i] + 6] = big[labels[i]]
    return img


def _pairs(labels: Tensor, g: torch.Generator) -> Tensor:
    """Two discs side by side, one above the other, or along either diagonal (by label); random spacing and position."""
    n = len(labels)
    yy, xx = _grid(n)
    half = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.71, 0.71], [0.71, -0.71]])[labels] * (3 + 2 * torch.rand(n, 1, generator=g))
    centre = 4 + 8 * torch.rand(n, 2, generator=g)
    centre = torch.maximum(torch.minimum(centre, 14 - half.abs()), 2 + half.abs())
    r2 = ((1.5 + torch.rand(n, generator=g)) ** 2).view(n, 1, 1)
    discs = [((yy - c[:, :1, None]) ** 2 + (xx - c[:, 1:, None]) ** 2) <= r2 for c in (centre - half, centre + half)]
    return (discs[0] | discs[1]).float()


def _landolt(labels: Tensor, g: torch.Generator) -> Tensor:
    """A ring (Landolt C) with its gap on one of 4 sides (by label), random radius and position."""
    n = len(labels)
    u, v = _rotated_coords(n, g, labels.float() * math.pi / 2)
    r = (3.5 + 2 * torch.rand(n, generator=g)).view(n, 1, 1)
    dist = (u**2 + v**2).sqrt()
    return ((dist <= r) & (dist >= r - 1.8) & ~((u > 0) & (v.abs() <= 1.3))).float()


def _scales(labels: Tensor, g: torch.Generator) -> Tensor:
    """Smooth random grey patterns: a random 8×8, 4×4, 3×3 or 2×2 grid (by label) bilinearly upsampled to 16×16."""
    n = len(labels)
    img = torch.zeros(n, 16, 16)
    for k, size in enumerate((8, 4, 3, 2)):
        rows = labels == k
        grid = torch.rand(int(rows.sum()), 1, size, size, generator=g)
        img[rows] = F.interpolate(grid, size=(16, 16), mode="bilinear", align_corners=True)[:, 0]
    return img


def _symmetry(labels: Tensor, g: torch.Generator) -> Tensor:
    """Random 2×2-pixel blocks mirrored left-right, mirrored top-bottom, turned 180° or left as they are (by label)."""
    n = len(labels)
    img = (torch.rand(n, 8, 8, generator=g) < 0.4).float().repeat_interleave(2, 1).repeat_interleave(2, 2)
    made = [torch.cat([img[:, :, :8], img[:, :, :8].flip(2)], 2), torch.cat([img[:, :8], img[:, :8].flip(1)], 1),
            torch.cat([img[:, :8], img[:, :8].flip(1, 2)], 1), img]
    return torch.stack(made)[labels, torch.arange(n)]


def _quadrants(labels: Tensor, g: torch.Generator) -> Tensor:
    """Grey noise whose brightest quadrant (by label) is raised by 0.15 to 0.3."""
    n = len(labels)
    img = 0.35 + 0.3 * torch.rand(n, 16, 16, generator=g)
    lift = (0.15 + 0.15 * torch.rand(n, 1, 1, generator=g))
    yy, xx = _grid(n)
    inside = ((yy >= 8) == (labels // 2).view(n, 1, 1).bool()) & ((xx >= 8) == (labels % 2).view(n, 1, 1).bool())
    return (img + lift * inside).clamp(0, 1)


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
    "scales": _procedural(_scales, 4, sum(PROCEDURAL_SPLIT), 0.15),
    "landolt": _procedural(_landolt, 4, sum(PROCEDURAL_SPLIT), 0.25),
    "arrows": _procedural(_arrows, 8, sum(PROCEDURAL_SPLIT), 0.2),
    "glyphs": _procedural(_glyphs, 8, sum(PROCEDURAL_SPLIT), 0.2),
    "pairs": _procedural(_pairs, 4, sum(PROCEDURAL_SPLIT), 0.45),
    "quadrants": _procedural(_quadrants, 4, sum(PROCEDURAL_SPLIT), 0.35),
    **{f"symmetry{suffix}": _procedural(_symmetry, 4, sum(PROCEDURAL_SPLIT), noise) for suffix, noise in (("", 0.2), ("-noisy", 0.35))},
}


def task_family(name: str) -> str:
    """The family of a task: tasks of one family differ only in class count, noise level or transform."""
    return name.split("-")[0]


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
