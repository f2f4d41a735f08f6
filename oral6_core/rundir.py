"""Run folders and records: one writer per folder (a lock), no silent overwrite, and what ran.

``RunFolder`` claims a folder for one run. A second process that tries to write the same folder
gets a ``RunFolderError``; a folder that already holds a run must be resumed or overwritten
explicitly. ``versions`` and ``record`` give every workflow the same record of what ran.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .errors import RunFolderError

LOCK = ".oral6.lock"
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", "best.pt")


def is_main_process() -> bool:
    """True except on the non-zero ranks of a ``torchrun`` job (which neither lock nor write)."""
    return os.environ.get("RANK", "0") == "0"


class RunFolder:
    """Claims ``path`` for one run while used as a context manager (on the main process only).

    ``resume`` continues the run already there, ``overwrite`` deletes its files first; without
    either, a folder holding any of ``files`` (a training run's ``RUN_FILES`` by default; a workflow
    names its own outputs and ``resumable=False``) is an error rather than silently mixed or replaced.
    """

    def __init__(self, path: Path, resume: bool = False, overwrite: bool = False, files: tuple[str, ...] = RUN_FILES,
                 resumable: bool = True) -> None:
        if resume and overwrite:
            raise RunFolderError("--resume and --overwrite exclude each other: resume continues a run, overwrite replaces it.")
        self.path, self.resume, self.overwrite = Path(path), resume, overwrite
        self.files, self.resumable = files, resumable
        self._created = False
        self.active = is_main_process()
        self._lock: FileLock | None = None

    def check(self) -> None:
        """Explain, before any work is done, why this folder cannot take the run (no-op on other ranks)."""
        if not self.active:
            return
        check_writable(self.path)
        if self.path.is_dir():
            probe = FileLock(self.path / LOCK, timeout=0)
            try:
                probe.acquire()
            except Timeout:
                raise self._busy() from None
            probe.release()
        self._refuse_existing()

    def _refuse_existing(self) -> list[str]:
        """The run files already in the folder; an error when there are some and neither flag was given."""
        found = [name for name in self.files if (self.path / name).exists()]
        if found and not (self.resume or self.overwrite):
            fixes = (f"Continue it with --resume {self.path}, replace it with --overwrite," if self.resumable
                     else "Replace them with --overwrite")
            raise RunFolderError(f"{self.path} already holds a run ({', '.join(found)}). {fixes} or pick another --out.")
        return found

    def __enter__(self) -> "RunFolder":
        if not self.active:
            return self
        check_writable(self.path)
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"Cannot create the run folder {self.path}: {exc.strerror or exc}.") from None
        self._lock = FileLock(self.path / LOCK, timeout=0)
        try:
            self._lock.acquire()
        except Timeout:
            self._lock = None
            raise self._busy() from None
        try:
            found = self._refuse_existing()  # again, now that no other process can change the folder
        except BaseException:
            self.__exit__(RunFolderError)
            raise
        if self.overwrite:
            for name in found:
                (self.path / name).unlink()
        return self

    def __exit__(self, exc_type: Any = None, *exc: Any) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if exc_type is not None and self._created and self.active:
            self._remove_if_empty()

    def _remove_if_empty(self) -> None:
        """A run that failed before writing anything leaves no folder behind (only the one this run created)."""
        if [p.name for p in self.path.iterdir()] in ([], [LOCK]):
            (self.path / LOCK).unlink(missing_ok=True)
            self.path.rmdir()

    def _busy(self) -> RunFolderError:
        return RunFolderError(
            f"Another process is writing to {self.path} (it holds {self.path / LOCK}). Wait until it finishes, "
            f"or pick another --out. (On a file system without file locks a crashed run leaves the lock behind: "
            f"if no process uses the folder, delete that file.)"
        )


def check_writable(path: Path) -> None:
    """An error unless ``path`` is, or can be created as, a folder this user can write to."""
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"--out {path} is an existing file, not a folder; pick a folder path.")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RunFolderError(f"Cannot create the run folder {path}: {ancestor} is a file, not a folder.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise RunFolderError(f"Cannot write the run folder {path}: {ancestor} is not writable by this user.")


def versions() -> dict[str, Any]:
    """Versions of Python, torch, oral6-core and every loaded plugin (its distribution and version)."""
    import torch

    from . import __version__
    from .plugins import get_plugin_manager, plugin_source

    pm = get_plugin_manager()
    plugins = {}
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin) or "?"
        source = plugin_source(name)
        plugins[name] = {"distribution": source.distribution, "version": source.version}
    return {"python": platform.python_version(), "torch": torch.__version__, "oral6-core": __version__,
            "plugins": dict(sorted(plugins.items()))}


def resolved(component: Any) -> dict[str, Any]:
    """A component's full options, defaults included, as JSON values."""
    return component.config.model_dump(mode="json")


def record(path: Path, workflow: str, metrics: dict[str, Any], options: dict[str, Any], seed: int,
           outputs: dict[str, str]) -> None:
    """Write a workflow's record atomically: its metrics (top-level keys), options, seed, versions and output files."""
    from .io import write_json

    write_json({"workflow": workflow, **metrics, "options": options, "seed": seed, "versions": versions(), "outputs": outputs}, path)
