"""Render a small two-attribute shift as an image folder: ``python examples/make_shift_folder.py my/shift``.

The label is the shape (square or circle). Colour is *causal* (Y → colour): it agrees with the label
with probability 0.9 and 0.8 in the two training environments and 0.1 in the test environment.
Size is *independent* (E → size): its share of large shapes changes with the environment only.
The folder gets ``manifest.csv`` (file, label, split, env, colour, size), ``dataset.toml`` (types,
factors and the causal graph) and one PNG per row.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

ENVIRONMENTS = (("e90", 0.9, 0.2), ("e80", 0.8, 0.8), ("test", 0.1, 0.5))
"""(name, P(colour agrees with label), P(size is large)) per environment; the last is the test domain."""

DATASET_TOML = """\
classes = ["square", "circle"]
environments = ["e90", "e80", "test"]
factors = ["label", "colour", "size"]

[attributes]
colour = { type = "causal", values = ["red", "green"] }
size = { type = "independent", values = ["small", "large"] }

[graph]
edges = ["Xc->Y", "Xc->X", "Y->colour", "E->colour", "colour->X", "E->size", "size->X"]
"""


def render(shape: int, colour: int, large: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """One RGB image: a red or green square or circle, small or large, jittered, on a noisy dark background."""
    radius = side * (0.38 if large else 0.2)
    cy, cx = side / 2 + rng.uniform(-1, 1, size=2) * (side / 2 - radius - 1)
    yy, xx = np.mgrid[0:side, 0:side] + 0.5
    inside = (np.abs(yy - cy) <= radius) & (np.abs(xx - cx) <= radius) if shape == 0 else (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    image = rng.uniform(0, 40, size=(side, side, 3))
    image[inside, colour] = 230
    return image.astype(np.uint8)


def make_shift_folder(root: str | Path, rows_per_environment: int = 200, side: int = 16, seed: int = 0) -> Path:
    """Write the folder (PNGs, manifest.csv, dataset.toml) and return its path."""
    from PIL import Image

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for env, agreement, p_large in ENVIRONMENTS:
        for i in range(rows_per_environment):
            label = int(rng.integers(2))
            colour = label if rng.random() < agreement else 1 - label
            large = int(rng.random() < p_large)
            file = f"images/{env}-{i:04d}.png"
            Image.fromarray(render(label, colour, large, side, rng)).save(root / file)
            held_out = i < rows_per_environment // 5
            split = ("test_val" if held_out else "test") if env == "test" else ("val" if held_out else "train")
            rows.append([file, ("square", "circle")[label], split, env, ("red", "green")[colour], ("small", "large")[large]])
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "split", "env", "colour", "size"])
        writer.writerows(rows)
    (root / "dataset.toml").write_text(DATASET_TOML)
    return root


if __name__ == "__main__":
    print(make_shift_folder(sys.argv[1] if len(sys.argv) > 1 else "my/shift"))
