"""Name -> component lookup per kind, built from the plugin manager's registration hooks.

A name ending in ``:*`` (e.g. ``timm:*``) matches any ``prefix:variant``; the variant is passed
as the component's ``variant`` option.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .config import validate_config
from .errors import DuplicateComponentError, Oral6Error, UnknownComponentError
from .plugins import get_plugin_manager, trace

if TYPE_CHECKING:  # the registry itself never needs torch, so `oral6 --help` does not import it
    from .components import Component

KIND_HOOKS: dict[str, str] = {
    "optimizer": "oral6_optimizers",
    "pruner": "oral6_pruners",
    "regularizer": "oral6_regularizers",
    "predictor": "oral6_predictors",
    "adapter": "oral6_adapters",
    "generative-model": "oral6_generative_models",
    "representation": "oral6_representations",
    "dataset": "oral6_datasets",
    "model": "oral6_models",
    "benchmark": "oral6_benchmarks",
    "logger": "oral6_loggers",
}
KINDS = tuple(KIND_HOOKS)


@dataclass(frozen=True)
class Entry:
    """A registered component class and the plugin that registered it."""

    cls: type[Component]
    plugin: str


def _check_kind(kind: str) -> str:
    kind = kind.replace("_", "-")
    if kind not in KIND_HOOKS:
        raise UnknownComponentError(f"Unknown kind {kind!r}. The kinds are: {', '.join(KINDS)}.")
    return kind


def entries(kind: str) -> dict[str, Entry]:
    """Every component of ``kind`` by name; a name registered twice is an error naming both plugins."""
    kind = _check_kind(kind)
    pm = get_plugin_manager()
    hook = getattr(pm.hook, KIND_HOOKS[kind])
    found: dict[str, Entry] = {}
    for impl in hook.get_hookimpls():
        classes = impl.function() or []
        trace(f"{KIND_HOOKS[kind]} [plugin {impl.plugin_name}] -> {[c.name for c in classes]}")
        for cls in classes:
            if not cls.name:
                raise Oral6Error(f"Plugin {impl.plugin_name!r} registers a {kind} class {cls.__name__} without a name.")
            if cls.name in found:
                raise DuplicateComponentError(
                    f"The {kind} name {cls.name!r} is registered twice: by plugin {found[cls.name].plugin!r} "
                    f"({found[cls.name].cls.__module__}.{found[cls.name].cls.__name__}) and by plugin "
                    f"{impl.plugin_name!r} ({cls.__module__}.{cls.__name__}). Uninstall one, or load only one "
                    f"with ORAL6_LOAD_PLUGINS."
                )
            found[cls.name] = Entry(cls, impl.plugin_name)
    return found


def names(kind: str, pattern: str = "*") -> list[str]:
    """Sorted component names of ``kind`` matching a shell-style ``pattern``."""
    return sorted(n for n in entries(kind) if fnmatch.fnmatch(n, pattern))


def lookup(kind: str, name: str) -> tuple[Entry, str | None]:
    """The entry for ``name`` and, for a ``prefix:variant`` name, the variant."""
    kind = _check_kind(kind)
    table = entries(kind)
    if name in table:
        return table[name], None
    prefix, sep, variant = name.partition(":")
    if sep and f"{prefix}:*" in table and variant:
        return table[f"{prefix}:*"], variant
    known = ", ".join(sorted(table)) or "(none: is the plugin installed?)"
    raise UnknownComponentError(f"Unknown {kind} {name!r}. Known {kind}s: {known}.")


def get(kind: str, name: str) -> type[Component]:
    """The component class registered as ``name``."""
    return lookup(kind, name)[0].cls


def create(kind: str, name: str, options: dict[str, Any] | None = None) -> Any:
    """An instance of component ``name`` with validated ``options`` (errors name the option)."""
    entry, variant = lookup(kind, name)
    values = dict(options or {})
    if variant is not None:
        values.setdefault("variant", variant)
    section = kind.replace("generative-model", "model")
    config = validate_config(entry.cls.Config, values, section)
    return entry.cls(config)
