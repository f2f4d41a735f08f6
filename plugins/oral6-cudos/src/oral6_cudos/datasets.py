"""Datasets of rendered factor grids (``shapes3d``, ``dsprites``) and their continual streams of environments."""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field

from oral6_core.components import DatasetSource, Environment, Task
from oral6_core.config import ComponentConfig
from oral6_core.data import ArrayDataset, DataBundle
from oral6_core.errors import ConfigError

from .rendering import DSPRITES_FACTORS, SHAPES3D_FACTORS, render_dsprites, render_shapes3d

RENDERERS = {"shapes3d": (SHAPES3D_FACTORS, render_shapes3d), "dsprites": (DSPRITES_FACTORS, render_dsprites)}

# The 3DShapes split of the reference: floor and wall share the first hue, then floor hue, then wall hue vary.
SHAPES3D_STREAM = (
    ("objects", ["object_hue", "scale", "shape", "orientation"]),
    ("floor", ["object_hue", "scale", "shape", "orientation", "floor_hue"]),
    ("wall", ["object_hue", "scale", "shape", "orientation", "floor_hue", "wall_hue"]),
)
DSPRITES_STREAM = (
    ("horizontal", ["shape", "scale", "pos_x"]),
    ("vertical", ["shape", "scale", "pos_x", "pos_y"]),
    ("rotating", ["shape", "scale", "pos_x", "pos_y", "orientation"]),
)
# A stream in which environments vary different factors, so that what a model forgets of an earlier
# environment shows on that environment's own data: position, then shape and scale, then rotation
# and scale (scale is shared by the last two, so reuse of its dim can be seen). Factors an
# environment does not vary are held at the values given here (index into each factor's grid).
DSPRITES_SPLIT = (
    ("position", ["pos_x", "pos_y"], {"shape": 0, "scale": 3}),
    ("form", ["shape", "scale"], {}),
    ("rotation", ["orientation", "scale"], {"shape": 2}),
)
# Held-out data of an environment are the same environment drawn with data seed + this.
HELD_OUT_SEED = 10_000
# Values of the factors held fixed in an environment unless its spec says otherwise.
FIXED_VALUES = {"pos_y": 15, "pos_x": 15, "orientation": 0}


def sample_factors(sizes: dict[str, int], varying: list[str], n: int, seed: int,
                   fixed: dict[str, int] | None = None) -> np.ndarray:
    """``n`` factor tuples: uniform over the grid of the ``varying`` factors, the others at their fixed value."""
    rng = np.random.default_rng(seed)
    held = {**FIXED_VALUES, **(fixed or {})}
    columns = [rng.integers(size, size=n) if name in varying else np.full(n, held.get(name, 0))
               for name, size in sizes.items()]
    return np.stack(columns, axis=1)


@lru_cache(maxsize=16)
def rendered_environment(kind: str, varying: tuple[str, ...], n: int, size: int, seed: int,
                         fixed: tuple[tuple[str, int], ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [n, C, size, size] and factor values [n, F] of one environment (cached per process)."""
    sizes, render = RENDERERS[kind]
    factors = sample_factors(sizes, list(varying), n, seed, dict(fixed))
    return torch.from_numpy(render(factors, size)), torch.from_numpy(factors).long()


class FactorDataConfig(ComponentConfig):
    samples_per_environment: int = Field(3000, ge=64, description="Images rendered per environment (the whole set for non-stream datasets).")
    image_size: int = Field(32, ge=16, le=128, description="Side of the square images (a multiple of 8).")
    data_seed: int | None = Field(None, description="Seed of the factor draws (default: the run's seed; rendering is deterministic).")
    held_out_samples: int = Field(2000, ge=0, description="Held-out images per environment (drawn with data seed + 10,000; 0: none).")


class FactorGridDataset(DatasetSource):
    """Base of the rendered factor-grid datasets: one or several environments of (image, factors) pairs."""

    kind: ClassVar[str] = ""
    environments_spec: ClassVar[tuple[tuple, ...]] = ()  # (name, varying factors[, fixed values])
    Config = FactorDataConfig

    def environments(self, seed: int = 0) -> list[Environment]:
        """The environments of this dataset, each an ``ArrayDataset`` of images and integer factors.

        Factors are drawn with ``data_seed``, or with ``seed`` (the run's) when it is unset.
        """
        c = self.config
        if c.image_size % 8:
            raise ConfigError(f"dataset.image_size must be a multiple of 8 (got {c.image_size}); try 32 or 64.")
        sizes = RENDERERS[self.kind][0]
        draw_seed = seed if c.data_seed is None else c.data_seed
        envs = []
        for index, (name, varying, *fixed) in enumerate(self.environments_spec):
            held = tuple(sorted(fixed[0].items())) if fixed else ()

            def draw(n: int, data_seed: int) -> ArrayDataset:
                x, y = rendered_environment(self.kind, tuple(varying), n, c.image_size, data_seed * 1009 + index, held)
                return ArrayDataset(x, y, env=torch.full((len(x),), index, dtype=torch.long))

            held_out = draw(c.held_out_samples, draw_seed + HELD_OUT_SEED) if c.held_out_samples else None
            envs.append(Environment(name, draw(c.samples_per_environment, draw_seed), list(sizes), list(varying), held_out))
        return envs

    def load(self, seed: int = 0) -> DataBundle:
        envs = self.environments(seed)
        x = torch.cat([e.data.x for e in envs])
        y = torch.cat([e.data.y for e in envs])
        env = torch.cat([e.data.env for e in envs])
        factor_names = list(RENDERERS[self.kind][0])
        full = ArrayDataset(x, y, env)
        task = Task("bernoulli", len(factor_names), tuple(x.shape[1:]))
        stream = envs if len(envs) > 1 else []
        return DataBundle(self.name, full, None, None, task, environments=[e.name for e in envs], stream=stream,
                          factor_names=factor_names)


class Shapes3D(FactorGridDataset):
    """3DShapes-like scenes rendered procedurally (floor/wall/object hue, scale, shape, orientation); y = factor values."""

    name = "shapes3d"
    kind = "shapes3d"
    environments_spec = (("all", list(SHAPES3D_FACTORS)),)


class Shapes3DStream(FactorGridDataset):
    """3DShapes-like stream of three environments: object factors, then + floor hue, then + wall hue (CUDOS's split)."""

    name = "shapes3d-stream"
    kind = "shapes3d"
    environments_spec = SHAPES3D_STREAM


class DSprites(FactorGridDataset):
    """dSprites-like sprites rendered procedurally (shape, scale, orientation, x, y); y = factor values."""

    name = "dsprites"
    kind = "dsprites"
    environments_spec = (("all", list(DSPRITES_FACTORS)),)


class DSpritesStream(FactorGridDataset):
    """dSprites-like stream of three environments: shape/scale/x, then + y, then + orientation."""

    name = "dsprites-stream"
    kind = "dsprites"
    environments_spec = DSPRITES_STREAM


class DSpritesSplit(FactorGridDataset):
    """dSprites-like stream whose environments vary different factors: position, then shape/scale, then rotation/scale."""

    name = "dsprites-split"
    kind = "dsprites"
    environments_spec = DSPRITES_SPLIT
