"""NeRN: a small MLP that maps each convolution kernel's coordinate to the kernel itself."""

from .representation import NeRN, NeRNConfig

__all__ = ["NeRN", "NeRNConfig"]
