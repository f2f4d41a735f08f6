"""Shared fixtures: in-process test plugins and a CLI runner."""

from __future__ import annotations

import re
import runpy
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from typer.testing import CliRunner

from oral6_core import plugins

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain(text: str) -> str:
    """CLI output without colour codes and with line wrapping undone."""
    return " ".join(ANSI.sub("", text).split())


@pytest.fixture
def register_plugin() -> Iterator:
    """Register in-process plugin objects for one test; they are removed afterwards."""
    names: list[str] = []

    def register(obj: object, name: str) -> str:
        names.append(plugins.register(obj, name=name))
        return names[-1]

    yield register
    for name in names:
        plugins.unregister(name)


@pytest.fixture
def broken_plugin(monkeypatch) -> Iterator[str]:
    """The only installed entry point is a plugin whose import fails; yields the reason discovery reports."""

    class BrokenEntryPoint:
        name, value, dist = "broken", "oral6_broken.plugin", None

        def load(self):
            raise ImportError("No module named 'oral6_broken'")

    monkeypatch.setattr(plugins, "entry_points", lambda group: [BrokenEntryPoint()])
    plugins.reset()
    yield "ImportError: No module named 'oral6_broken'"
    monkeypatch.undo()
    plugins.reset()


@pytest.fixture
def cli():
    """Invoke the oral6 CLI in-process; returns (exit code, plain output)."""
    from oral6_core.cli import app

    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, [str(a) for a in args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        invoke.last_stderr = ANSI.sub("", result.stderr)  # type: ignore[attr-defined]  # line by line, as a log file holds it
        return result.exit_code, plain(result.output)

    return invoke


# --------------------------------------------------------------------------- user data (folder: and arrays:)

_SHIFT = runpy.run_path(str(Path(__file__).parents[1] / "examples" / "make_shift_folder.py"))


@pytest.fixture(scope="session")
def shift_folder(tmp_path_factory) -> Path:
    """The example two-attribute shift (manifest.csv, dataset.toml, 40 PNGs per environment), built once."""
    return _SHIFT["make_shift_folder"](tmp_path_factory.mktemp("userdata") / "shift", rows_per_environment=40)


@pytest.fixture
def image_folder():
    """Builds ImageFolder trees ``root[/split]/{square,circle}/NNN.png`` of one colour and size."""

    def build(root: Path, per_class: int = 12, colour: int = 0, large: int = 0, side: int = 16, seed: int = 0,
              splits: tuple[str, ...] = ()) -> Path:
        from PIL import Image

        rng = np.random.default_rng(seed)
        for split in splits or ("",):
            for label, name in enumerate(("square", "circle")):
                folder = root / split / name
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(per_class):
                    Image.fromarray(_SHIFT["render"](label, colour, large, side, rng)).save(folder / f"{i:03d}.png")
        return root

    return build


@pytest.fixture
def shift_arrays() -> dict[str, np.ndarray]:
    """Vectors whose label shows in the first features, string environments and a string attribute."""
    rng = np.random.default_rng(0)
    n = 120
    y = rng.integers(2, size=n)
    colour = np.where(rng.random(n) < 0.9, y, 1 - y)
    x = np.concatenate([(2 * y - 1)[:, None] + 0.3 * rng.standard_normal((n, 2)), colour[:, None] + 0.1 * rng.standard_normal((n, 2))], 1)
    return {"x": x.astype(np.float32), "y": y, "env": np.array(["a", "b", "c"])[np.arange(n) % 3],
            "attr_colour": np.array(["red", "green"])[colour]}
