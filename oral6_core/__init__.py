"""oral6: a PyTorch framework in which research methods are installable, composable plugins."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("oral6-core")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
