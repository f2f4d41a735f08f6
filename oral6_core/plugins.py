"""The plugin manager: the core's built-in plugin plus every installed ``oral6`` entry point.

Environment switches: ``ORAL6_LOAD_PLUGINS=a,b`` loads only the named entry points (empty: none);
``ORAL6_TRACE_PLUGINS=1`` prints every hook call.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy

from . import hookspecs
from .errors import Oral6Error

ENTRY_POINT_GROUP = "oral6"
DEFAULT_PLUGINS = ("oral6_core.builtin.plugin",)


@dataclass
class PluginSource:
    """Where a loaded plugin came from: its distribution name and version."""

    name: str
    distribution: str
    version: str
    module: str


@dataclass
class _State:
    manager: pluggy.PluginManager | None = None
    sources: dict[str, PluginSource] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


_state = _State()


def _selected_names() -> set[str] | None:
    raw = os.environ.get("ORAL6_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    selected = _selected_names()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist else "?"
        if selected is not None and ep.name not in selected and dist not in selected:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            module = ep.load()
        except Exception as exc:  # one broken plugin must not take the others down
            message = f"{exc.__class__.__name__}: {exc}"
            _state.failures[ep.name] = message
            _state.sources[ep.name] = PluginSource(ep.name, dist, ep.dist.version if ep.dist else "?", ep.value)
            warnings.warn(
                f"The oral6 plugin {ep.name!r} (distribution {dist}) failed to import and is skipped: {message}. "
                f"Fix or uninstall it; `oral6 list-plugins` lists plugins that failed.",
                stacklevel=2,
            )
            continue
        pm.register(module, name=ep.name)
        version = ep.dist.version if ep.dist else "?"
        _state.sources[ep.name] = PluginSource(ep.name, dist, version, ep.value)


def _check(pm: pluggy.PluginManager) -> None:
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise Oral6Error(f"Plugin {exc.plugin!r} is invalid: {exc}. Check the hook names against docs/hooks.md.") from None


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    from importlib.metadata import version

    core_version = version("oral6-core")
    for module_name in DEFAULT_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name="builtin")
        _state.sources["builtin"] = PluginSource("builtin", "oral6-core", core_version, module_name)
    _load_entry_points(pm)
    _check(pm)
    if os.environ.get("ORAL6_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda msg: sys.stderr.write(msg))
        pm.enable_tracing()
    return pm


def trace(message: str) -> None:
    """Print ``message`` to standard error when ``ORAL6_TRACE_PLUGINS`` is set."""
    if os.environ.get("ORAL6_TRACE_PLUGINS"):
        sys.stderr.write(f"  {message}\n")


def is_loaded() -> bool:
    """Whether this process has already loaded its plugins (``get_plugin_manager`` was called)."""
    return _state.manager is not None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created (and plugins loaded) on first use."""
    if _state.manager is None:
        _state.manager = _new_manager()
    return _state.manager


def register(plugin: object, name: str | None = None) -> str:
    """Register an in-process plugin object (a module or class with hookimpls); returns its name."""
    pm = get_plugin_manager()
    try:
        registered = pm.register(plugin, name=name)
    except (ValueError, pluggy.PluginValidationError) as exc:
        raise Oral6Error(f"Cannot register plugin {name!r}: {exc}") from None
    if registered is None:
        raise Oral6Error(f"Plugin {name!r} is already registered.")
    try:
        _check(pm)
    except Oral6Error:
        pm.unregister(name=registered)
        raise
    _state.sources.setdefault(registered, PluginSource(registered, "(in process)", "", repr(plugin)))
    return registered


def unregister(name: str) -> None:
    """Remove a plugin registered with ``register``."""
    get_plugin_manager().unregister(name=name)
    _state.sources.pop(name, None)


def plugin_source(name: str) -> PluginSource:
    """Distribution and version of a loaded plugin."""
    return _state.sources.get(name, PluginSource(name, "?", "?", "?"))


def failed_plugins() -> dict[str, str]:
    """Entry points that failed to import, with the error each raised."""
    get_plugin_manager()
    return dict(_state.failures)


def reset() -> None:
    """Forget the manager so the next use reloads plugins (tests, changed ORAL6_LOAD_PLUGINS)."""
    _state.manager = None
    _state.sources.clear()
    _state.failures.clear()
