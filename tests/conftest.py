"""Shared fixtures: in-process test plugins and a CLI runner."""

from __future__ import annotations

import re
from typing import Iterator

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
