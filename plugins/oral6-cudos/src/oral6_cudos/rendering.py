"""Procedural renderers of the 3DShapes and dSprites factor grids: deterministic images from factor tuples."""

from __future__ import annotations

import numpy as np

from oral6_core.errors import ShapeError

SHAPES3D_FACTORS = {"floor_hue": 10, "wall_hue": 10, "object_hue": 10, "scale": 8, "shape": 4, "orientation": 15}
DSPRITES_FACTORS = {"shape": 3, "scale": 6, "orientation": 40, "pos_x": 32, "pos_y": 32}
SUPERSAMPLE = 2


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel centre coordinates in [0, 1] (``SUPERSAMPLE``² per pixel), shape [S·size, S·size]."""
    n = size * SUPERSAMPLE
    t = (np.arange(n) + 0.5) / n
    return np.meshgrid(t, t, indexing="xy")


def _downsample(img: np.ndarray) -> np.ndarray:
    """Average ``SUPERSAMPLE``×``SUPERSAMPLE`` blocks of [N, H·S, W·S, ...] (anti-aliasing)."""
    n, h, w = img.shape[:3]
    s = SUPERSAMPLE
    return img.reshape(n, h // s, s, w // s, s, *img.shape[3:]).mean(axis=(2, 4))


def hsv_to_rgb(h: np.ndarray, s: float, v: np.ndarray | float) -> np.ndarray:
    """Vectorised HSV → RGB; ``h`` in [0, 1), returns [..., 3]."""
    h = np.asarray(h, dtype=np.float64)
    v = np.broadcast_to(np.asarray(v, dtype=np.float64), h.shape)
    k = lambda n: (n + h * 6) % 6  # noqa: E731
    channel = lambda n: v - v * s * np.clip(np.minimum(k(n), 4 - k(n)), 0, 1)  # noqa: E731
    return np.stack([channel(5), channel(3), channel(1)], axis=-1)


def _check(factors: np.ndarray, sizes: dict[str, int]) -> np.ndarray:
    factors = np.asarray(factors, dtype=np.int64)
    if factors.ndim != 2 or factors.shape[1] != len(sizes):
        raise ShapeError(f"Factor tuples must have shape [N, {len(sizes)}] ({', '.join(sizes)}); got {factors.shape}.")
    limits = np.array(list(sizes.values()))
    if (factors < 0).any() or (factors >= limits).any():
        raise ShapeError(f"Factor values out of range: each column must lie in [0, size) with sizes {sizes}.")
    return factors


def _shape_mask(shape: np.ndarray, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """3DShapes object silhouettes in object coordinates: cube, cylinder, sphere, capsule."""
    square = np.maximum(np.abs(u), np.abs(v)) <= r
    cylinder = (np.abs(u) <= 0.7 * r) & (np.abs(v) <= 1.1 * r)
    sphere = u**2 + v**2 <= r**2
    capsule = (u / (1.35 * r)) ** 2 + (v / (0.65 * r)) ** 2 <= 1
    return np.select([shape == 0, shape == 1, shape == 2], [square, cylinder, sphere], capsule)


def render_shapes3d(factors: np.ndarray, size: int = 32, chunk: int = 512) -> np.ndarray:
    """3DShapes-like scenes [N, 3, size, size] in [0, 1]: wall above a (tilted) horizon, floor below, a shaded object.

    Factors: floor/wall/object hue (10 each), scale (8, 0.75–1.25), shape (4), orientation (15, −30°…30°);
    the orientation tilts the horizon and turns the object, as a camera azimuth would.
    """
    factors = _check(factors, SHAPES3D_FACTORS)
    xs, ys = _pixel_grid(size)
    out = np.empty((len(factors), 3, size, size), dtype=np.float32)
    for start in range(0, len(factors), chunk):
        f = factors[start : start + chunk]
        n = len(f)
        rgb = lambda col: hsv_to_rgb(f[:, col] / 10.0, 0.8, 1.0)[:, None, None, :]  # noqa: E731
        scale = (0.75 + 0.5 * f[:, 3] / 7)[:, None, None]
        shape = f[:, 4][:, None, None]
        angle = np.deg2rad(-30 + 60 * f[:, 5] / 14)[:, None, None]
        horizon = 0.55 + 0.35 * np.tan(angle) * (xs[None] - 0.5)
        is_floor = (ys[None] > horizon)[..., None]
        floor_light = 0.55 + 0.45 * np.clip((ys[None] - horizon) / 0.45, 0, 1)
        wall_light = 0.85 - 0.25 * ys[None]
        scene = np.where(is_floor, rgb(0) * floor_light[..., None], rgb(1) * wall_light[..., None])
        dx, dy = xs[None] - 0.5, ys[None] - 0.68
        u = np.cos(angle) * dx + np.sin(angle) * dy
        v = -np.sin(angle) * dx + np.cos(angle) * dy
        radius = 0.15 * scale
        inside = _shape_mask(shape, u, v, radius)[..., None]
        light = np.clip(0.95 - 0.35 * (u + v) / radius, 0.45, 1.0)[..., None]
        scene = np.where(inside, rgb(2) * light, scene)
        out[start : start + n] = _downsample(scene).transpose(0, 3, 1, 2)
    return out


def _sprite_mask(shape: np.ndarray, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """dSprites silhouettes: square, ellipse, heart (implicit curve ``(x²+y²−1)³ − x²y³ ≤ 0``)."""
    square = np.maximum(np.abs(u), np.abs(v)) <= 0.8 * r
    ellipse = (u / r) ** 2 + (v / (0.5 * r)) ** 2 <= 1
    hx, hy = u / (0.85 * r), -v / (0.85 * r) + 0.15
    heart = (hx**2 + hy**2 - 1) ** 3 - hx**2 * hy**3 <= 0
    return np.select([shape == 0, shape == 1], [square, ellipse], heart)


def render_dsprites(factors: np.ndarray, size: int = 32, chunk: int = 512) -> np.ndarray:
    """dSprites-like sprites [N, 1, size, size] in [0, 1]: shape (3), scale (6), orientation (40 over 2π), x and y (32 each)."""
    factors = _check(factors, DSPRITES_FACTORS)
    xs, ys = _pixel_grid(size)
    out = np.empty((len(factors), 1, size, size), dtype=np.float32)
    for start in range(0, len(factors), chunk):
        f = factors[start : start + chunk]
        col = lambda i: f[:, i][:, None, None].astype(np.float64)  # noqa: E731
        r = 0.09 + 0.09 * col(1) / 5
        angle = 2 * np.pi * col(2) / 40
        cx, cy = 0.2 + 0.6 * col(3) / 31, 0.2 + 0.6 * col(4) / 31
        dx, dy = xs[None] - cx, ys[None] - cy
        u = np.cos(angle) * dx + np.sin(angle) * dy
        v = -np.sin(angle) * dx + np.cos(angle) * dy
        mask = _sprite_mask(f[:, 0][:, None, None], u, v, r).astype(np.float64)
        out[start : start + len(f), 0] = _downsample(mask)
    return out
