"""Atomic file writes: a crash mid-write leaves the previous file intact, never half a file."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from .errors import CheckpointError, WriteError


def _umask() -> int:
    """The process's umask: from /proc on Linux, else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"Cannot write the file {path}: it is a folder.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # a file where a folder should be, no permission, read-only disk
        ancestor = next(p for p in path.parents if p.exists())
        reason = f"{ancestor} is a file, not a folder" if not ancestor.is_dir() else exc.strerror or str(exc)
        raise WriteError(f"Cannot write {path}: {reason}.") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_torch(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` atomically."""
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


def load_torch(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """``torch.load`` with a clear error when the file is missing or unreadable."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}: the file does not exist.")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # corrupt or foreign file
        raise CheckpointError(f"Could not read checkpoint {path}: {exc}") from exc


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_open(path, "w") as handle:
        json.dump(obj, handle, indent=2, default=str)
        handle.write("\n")


def write_text(text: str, path: str | os.PathLike[str]) -> None:
    """Write a text file atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_jsonl(rows: list[Any], path: str | os.PathLike[str]) -> None:
    """Write ``rows`` as JSON lines, atomically (replacing the file)."""
    write_text("".join(json.dumps(row, default=str) + "\n" for row in rows), path)


def append_jsonl(obj: Any, path: str | os.PathLike[str]) -> None:
    """Append one JSON line (a line is written whole or not at all for small records)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(obj, default=str) + "\n")
