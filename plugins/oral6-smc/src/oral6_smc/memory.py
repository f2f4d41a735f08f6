"""Peak memory of a block of code: CUDA allocator peaks on a GPU, sampled resident memory on the CPU."""

from __future__ import annotations

import ctypes
import os
import threading
import time
from types import TracebackType

import torch


def release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``) so the next measurement starts clean."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def resident_bytes() -> int:
    """This process's resident set size (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


class PeakMemory:
    """Context manager: ``peak_bytes`` above the level at entry (CUDA allocator, or RSS sampled every 1 ms)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        release_freed_memory()
        self._base = resident_bytes()
        self._max = self._base
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, resident_bytes())
            time.sleep(0.001)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
            return
        self._stop.set()
        self._thread.join()  # type: ignore[union-attr]
        self.peak_bytes = max(self._max, resident_bytes()) - self._base
