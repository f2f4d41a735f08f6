"""Offline image domains: digits printed in the fonts matplotlib ships, and shapes drawn in two styles.

Everything is drawn with PIL on a 32×32 canvas and average-pooled down, so no file is downloaded.
The printed digits are pooled 4×4 to 8×8 — how scikit-learn's handwritten digits were made from
32×32 bitmaps — which makes printed → handwritten a SynDigits → MNIST-like shift at one resolution.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from oral6_core.errors import DataError

CANVAS = 32
DIGIT_FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "STIXGeneral.ttf",
    "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf",
)
SHAPES = ("circle", "square", "triangle", "cross", "star")


def font_directory() -> Path:
    """The folder of TrueType fonts bundled with matplotlib."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def available_fonts() -> list[Path]:
    """The digit fonts present in this installation (raises ``DataError`` when none is)."""
    fonts = [font_directory() / name for name in DIGIT_FONTS if (font_directory() / name).is_file()]
    if not fonts:
        raise DataError(
            f"No TrueType font was found in {font_directory()} to print digits with. Reinstall matplotlib "
            f"(pip install --force-reinstall matplotlib), which ships the DejaVu and STIX fonts."
        )
    return fonts


def _pool(canvas: np.ndarray, size: int) -> np.ndarray:
    """Average-pool a square ``CANVAS``-sized array down to ``size``×``size``."""
    f = CANVAS // size
    return canvas.reshape(size, f, size, f).mean(axis=(1, 3))


def _luminance(rgb: np.ndarray) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) / 255.0


def _random_colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A light ink and a dark background colour (luminance ≥ 0.55 and ≤ 0.3)."""
    while True:
        ink, paper = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        if _luminance(ink) >= 0.55 and _luminance(paper) <= 0.3:
            return tuple(int(v) for v in ink), tuple(int(v) for v in paper)


def _finish(image: Image.Image, size: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Grey levels of an RGB canvas plus Gaussian noise, pooled to ``size`` and stretched to [0, 1]."""
    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    grey = grey + noise * rng.standard_normal(grey.shape).astype(np.float32)
    small = _pool(np.clip(grey, 0, 1), size)
    small = small - small.min()
    return small / max(float(small.max()), 1e-6)


def render_digit(digit: int, font: Path, rng: np.random.Generator) -> np.ndarray:
    """One printed digit: random font size, rotation, offset, colours and noise; an 8×8 array in [0, 1]."""
    ink, paper = _random_colours(rng)
    glyph = Image.new("RGBA", (2 * CANVAS, 2 * CANVAS), (0, 0, 0, 0))
    draw = ImageDraw.Draw(glyph)
    typeface = ImageFont.truetype(str(font), int(rng.integers(22, 34)))
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=typeface)
    origin = ((2 * CANVAS - (right - left)) / 2 - left, (2 * CANVAS - (bottom - top)) / 2 - top)
    draw.text(origin, str(digit), font=typeface, fill=ink + (255,), stroke_width=int(rng.integers(0, 2)), stroke_fill=ink + (255,))
    glyph = glyph.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR)
    canvas = Image.new("RGB", (CANVAS, CANVAS), paper)
    shift = rng.integers(-3, 4, 2)
    canvas.paste(glyph, (int(shift[0]) - CANVAS // 2, int(shift[1]) - CANVAS // 2), glyph)
    return _finish(canvas, 8, float(rng.uniform(0, 0.15)), rng)


def _shape_points(shape: str, centre: tuple[float, float], radius: float, angle: float) -> list[tuple[float, float]]:
    """Polygon vertices of ``shape`` (circles use 24 vertices)."""
    if shape == "circle":
        corners = [(1.0, 2 * math.pi * i / 24) for i in range(24)]
    elif shape == "square":
        corners = [(1.0, math.pi / 4 + math.pi / 2 * i) for i in range(4)]
    elif shape == "triangle":
        corners = [(1.0, -math.pi / 2 + 2 * math.pi / 3 * i) for i in range(3)]
    elif shape == "star":
        corners = [(1.0 if i % 2 == 0 else 0.42, -math.pi / 2 + math.pi / 5 * i) for i in range(10)]
    else:  # cross: a plus sign of arm half-width 0.3
        w = 0.3
        xy = [(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1), (-w, -1), (-w, -w), (-1, -w), (-1, w), (-w, w), (-w, 1)]
        corners = [(math.hypot(a, b), math.atan2(b, a)) for a, b in xy]
    return [(centre[0] + radius * r * math.cos(t + angle), centre[1] + radius * r * math.sin(t + angle)) for r, t in corners]


def render_shape(label: int, style: str, rng: np.random.Generator) -> np.ndarray:
    """One shape as a 16×16 array in [0, 1].

    Style ``a``: solid fill, near upright and centred, little noise. Style ``b``: outlined with a
    half-tone diagonal-stripe fill, rotated, rescaled and shifted, on clutter lines and noise.
    """
    shape = SHAPES[label]
    ink, paper = _random_colours(rng)
    canvas = Image.new("RGB", (CANVAS, CANVAS), paper)
    draw = ImageDraw.Draw(canvas)
    if style == "a":
        centre = (16 + rng.uniform(-2, 2), 16 + rng.uniform(-2, 2))
        points = _shape_points(shape, centre, rng.uniform(8, 12), rng.uniform(-math.pi / 18, math.pi / 18))
        draw.polygon(points, fill=ink)
        return _finish(canvas, 16, 0.03, rng)
    for _ in range(int(rng.integers(0, 3))):
        start, end = rng.uniform(0, CANVAS, 2), rng.uniform(0, CANVAS, 2)
        clutter = tuple(int(c * 0.6 + p * 0.4) for c, p in zip(ink, paper))
        draw.line([tuple(start), tuple(end)], fill=clutter, width=2)
    centre = (16 + rng.uniform(-3, 3), 16 + rng.uniform(-3, 3))
    points = _shape_points(shape, centre, rng.uniform(8, 13), rng.uniform(-math.pi / 8, math.pi / 8))
    mask = Image.new("L", (CANVAS, CANVAS), 0)
    ImageDraw.Draw(mask).polygon(points, fill=255)
    stripes = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
    period = int(rng.integers(2, 4))
    stripes[(np.add.outer(np.arange(CANVAS), np.arange(CANVAS)) // period) % 2 == 0] = 255
    stripes = np.maximum(stripes, int(rng.integers(100, 200)))
    canvas.paste(Image.new("RGB", (CANVAS, CANVAS), ink), (0, 0), Image.fromarray(np.minimum(stripes, np.asarray(mask))))
    draw.line(points + [points[0]], fill=ink, width=2, joint="curve")
    return _finish(canvas, 16, float(rng.uniform(0.03, 0.1)), rng)


@lru_cache(maxsize=8)
def printed_digits(per_class: int, seed: int) -> tuple[Tensor, Tensor]:
    """``per_class`` printed images of each digit, shaped (N, 1, 8, 8), and their labels."""
    rng = np.random.default_rng(seed)
    fonts = available_fonts()
    images, labels = [], []
    for digit in range(10):
        for _ in range(per_class):
            images.append(render_digit(digit, fonts[int(rng.integers(len(fonts)))], rng))
            labels.append(digit)
    return torch.from_numpy(np.stack(images)).float().unsqueeze(1), torch.tensor(labels, dtype=torch.long)


@lru_cache(maxsize=8)
def drawn_shapes(style: str, per_class: int, seed: int) -> tuple[Tensor, Tensor]:
    """``per_class`` images of each shape in ``style``, shaped (N, 1, 16, 16), and their labels."""
    rng = np.random.default_rng(seed)
    images = [render_shape(label, style, rng) for label in range(len(SHAPES)) for _ in range(per_class)]
    labels = [label for label in range(len(SHAPES)) for _ in range(per_class)]
    return torch.from_numpy(np.stack(images)).float().unsqueeze(1), torch.tensor(labels, dtype=torch.long)
