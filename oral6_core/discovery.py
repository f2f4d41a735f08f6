"""What ``oral6 --help`` and ``oral6 list-plugins`` show, without importing torch or the plugins' methods.

Knowing the components means importing every plugin, and through them torch: seconds per command.
So the first listing builds the report (plugins, components, plugin commands, plugins that failed
to import) and caches it as JSON; later listings read it. The cache is keyed by the installed
``oral6`` entry points (name, module, distribution, version), the modification times of the
``sys.path`` folders (installing or removing any distribution changes them), the newest source
file of the core and of each plugin package, and ``ORAL6_LOAD_PLUGINS``: any change rebuilds it.
It lives in ``$ORAL6_CACHE_DIR``, else ``$XDG_CACHE_HOME/oral6`` or ``~/.cache/oral6``; deleting
it is always safe. A process that has already loaded plugins (or registered its own) reports live.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from importlib.metadata import entry_points
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from . import __version__, plugins

FORMAT = 1


def cache_dir() -> Path:
    """Where the discovery cache is kept."""
    if os.environ.get("ORAL6_CACHE_DIR"):
        return Path(os.environ["ORAL6_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "oral6"


def cache_file() -> Path:
    """This Python environment's cache file (one per interpreter and import path)."""
    where = hashlib.sha256(json.dumps([sys.executable, sys.path]).encode()).hexdigest()[:16]
    return cache_dir() / f"discovery-{where}.json"


def _newest_source(package: str) -> list[Any]:
    """``[folder, newest mtime, number of .py files]`` of a top-level package (found without importing it)."""
    try:
        spec = find_spec(package)
    except (ImportError, ValueError):
        return [package, None, 0]
    if spec is None:
        return [package, None, 0]
    roots = list(spec.submodule_search_locations or []) or [os.path.dirname(spec.origin or "")]
    stamps = [entry.stat().st_mtime_ns for root in roots for entry in _py_files(Path(root))]
    return [roots, max(stamps, default=0), len(stamps)]


def _py_files(root: Path) -> list[os.DirEntry[str]]:
    found: list[os.DirEntry[str]] = []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir() and entry.name != "__pycache__" and not entry.name.startswith("."):
                found += _py_files(Path(entry.path))
            elif entry.name.endswith(".py"):
                found.append(entry)
    return found


def cache_key() -> str:
    """A digest of everything the report depends on (see the module docstring)."""
    points = sorted((ep.name, ep.value, ep.dist.name if ep.dist else "", ep.dist.version if ep.dist else "")
                    for ep in entry_points(group=plugins.ENTRY_POINT_GROUP))
    packages = sorted({"oral6_core", *(value.split(".")[0].split(":")[0] for _, value, _, _ in points)})
    folders = [(p, os.stat(p).st_mtime_ns) for p in sys.path if p and os.path.isdir(p)]
    parts = [FORMAT, __version__, points, [_newest_source(p) for p in packages], folders, os.environ.get("ORAL6_LOAD_PLUGINS")]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def plugin_report() -> dict[str, Any]:
    """Every loaded plugin with its distribution, version, hooks and what it registers per kind (imports them all)."""
    from . import registry

    pm = plugins.get_plugin_manager()
    registers: dict[str, dict[str, list[str]]] = {}
    components: dict[str, list[dict[str, str]]] = {}
    for kind in registry.KINDS:
        for name, entry in sorted(registry.entries(kind).items()):
            registers.setdefault(entry.plugin, {}).setdefault(kind, []).append(name)
            components.setdefault(kind, []).append({"name": name, "plugin": entry.plugin, "summary": entry.cls.summary()})
    found = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin) or "?"
        source = plugins.plugin_source(name)
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        found.append({"name": name, "distribution": source.distribution, "version": source.version, "hooks": hooks,
                      "registers": registers.get(name, {})})
    failed = plugins.failed_plugins()
    for name, error in failed.items():
        source = plugins.plugin_source(name)
        found.append({"name": name, "distribution": source.distribution, "version": source.version, "hooks": [],
                      "registers": {}, "error": error})
    return {"plugins": sorted(found, key=lambda p: (p["name"] != "builtin", p["name"])), "components": components,
            "failed": failed}


def plugin_commands() -> dict[str, Any]:
    """The click commands that plugins add to ``oral6`` (``oral6_register_commands``), by name."""
    import typer

    holder = typer.Typer()
    plugins.get_plugin_manager().hook.oral6_register_commands(app=holder)
    if not holder.registered_commands and not holder.registered_groups:
        return {}
    return dict(typer.main.get_group(holder).commands)  # type: ignore[attr-defined]


def _describe(commands: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, "help": cmd.short_help or cmd.help or "", "panel": getattr(cmd, "rich_help_panel", None),
             "hidden": bool(cmd.hidden)} for name, cmd in sorted(commands.items())]


def listing() -> dict[str, Any]:
    """``{"report": plugin_report(), "commands": [{name, help, panel, hidden}]}``, from the cache when it is current."""
    if plugins.is_loaded():
        return {"report": plugin_report(), "commands": _describe(plugin_commands())}
    key, path = cache_key(), cache_file()
    try:
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved["listing"]
    except (OSError, ValueError, KeyError):
        pass
    fresh = {"report": plugin_report(), "commands": _describe(plugin_commands())}
    _save(path, {"key": key, "listing": fresh})
    return fresh


def _save(path: Path, data: dict[str, Any]) -> None:
    """Write the cache atomically; a cache that cannot be written is simply not kept."""
    from .io import write_json

    try:
        write_json(data, path)
    except OSError:
        pass
