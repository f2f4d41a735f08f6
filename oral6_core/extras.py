"""Optional dependencies: import one on first use, or say which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import Oral6Error


class MissingExtraError(Oral6Error, ImportError):
    """A feature whose optional library is not installed."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module``; when it is absent, a clear error naming ``pip install oral6-core[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{feature} needs the Python package {module.split('.')[0]!r}, which is not installed ({exc}). "
            f"Install it with `pip install oral6-core[{extra}]`."
        ) from None
