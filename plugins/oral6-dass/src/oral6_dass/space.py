"""The student search space: ResNet-style students derived from a teacher, with exact sizes.

A student keeps the teacher's stem, stage widths and head; per stage it keeps the first ``d``
blocks (1 <= d <= the teacher's depth) and shrinks each block's inner width to ``m · w`` with a
multiplier ``m`` in {0.5, 0.5 + 1/16, ..., 1}.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from oral6_core.errors import ConfigError

WIDTH_MULTIPLIERS: tuple[float, ...] = tuple(0.5 + i / 16 for i in range(9))
ARCH_KEYS = ("depths", "multipliers")


@dataclass(frozen=True)
class Architecture:
    """A student: blocks per stage and the inner-width multiplier of every kept block."""

    depths: tuple[int, ...]
    multipliers: tuple[tuple[float, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (the compact config)."""
        return {"depths": list(self.depths), "multipliers": [list(m) for m in self.multipliers]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Architecture":
        """Read the compact config ``{"depths": [...], "multipliers": [[...], ...]}``; bad keys are errors."""
        if not isinstance(data, dict):
            raise ConfigError(f"An architecture must be a mapping with keys {', '.join(ARCH_KEYS)}, not {data!r}.")
        unknown = sorted(set(data) - set(ARCH_KEYS))
        if unknown:
            raise ConfigError(
                f"Unknown architecture key(s) {', '.join(map(repr, unknown))}. An architecture has exactly the keys "
                f"'depths' (blocks per stage) and 'multipliers' (one list of inner-width multipliers per stage)."
            )
        missing = [k for k in ARCH_KEYS if k not in data]
        if missing:
            raise ConfigError(f"The architecture lacks key(s) {', '.join(map(repr, missing))}; give both 'depths' and 'multipliers'.")
        try:
            depths = tuple(int(d) for d in data["depths"])
            mults = tuple(tuple(float(m) for m in stage) for stage in data["multipliers"])
        except (TypeError, ValueError):
            raise ConfigError("'depths' must be a list of integers and 'multipliers' a list of lists of numbers.") from None
        return cls(depths, mults)


@dataclass(frozen=True)
class SearchSpace:
    """Students of one teacher: input channels, stage widths and the teacher's depth per stage."""

    in_channels: int
    widths: tuple[int, ...]
    max_depths: tuple[int, ...]

    @property
    def teacher(self) -> Architecture:
        """The teacher itself: every block, full width."""
        return Architecture(self.max_depths, tuple((1.0,) * d for d in self.max_depths))

    def validate(self, arch: Architecture) -> Architecture:
        """Raise ``ConfigError`` when ``arch`` is not a student of this space."""
        stages = len(self.widths)
        if len(arch.depths) != stages or len(arch.multipliers) != stages:
            raise ConfigError(
                f"The architecture has {len(arch.depths)} depths and {len(arch.multipliers)} multiplier lists, "
                f"but the teacher has {stages} stages; give one entry per stage."
            )
        for s, (d, mults) in enumerate(zip(arch.depths, arch.multipliers)):
            if not 1 <= d <= self.max_depths[s]:
                raise ConfigError(f"Stage {s} depth {d} is outside 1..{self.max_depths[s]} (the teacher's depth).")
            if len(mults) != d:
                raise ConfigError(f"Stage {s} has depth {d} but {len(mults)} multipliers; give one per block.")
            for m in mults:
                if not any(abs(m - c) < 1e-9 for c in WIDTH_MULTIPLIERS):
                    raise ConfigError(f"Width multiplier {m} in stage {s} is not one of 0.5, 0.5625, ..., 1 (steps of 1/16).")
        return arch

    def inner_width(self, stage: int, multiplier: float) -> int:
        """Inner channels of a block: ``round(m · w)`` (at least 1)."""
        return max(1, int(round(multiplier * self.widths[stage])))

    def sample(self, rng: random.Random) -> Architecture:
        """A uniformly random student (depths, then one multiplier per block)."""
        depths = tuple(rng.randint(1, d) for d in self.max_depths)
        return Architecture(depths, tuple(tuple(rng.choice(WIDTH_MULTIPLIERS) for _ in range(d)) for d in depths))

    def sample_many(self, n: int, seed: int) -> list[Architecture]:
        """``n`` distinct random students (fewer if the space is smaller), reproducible from ``seed``."""
        rng, seen, out = random.Random(seed), set(), []
        for _ in range(50 * n):
            arch = self.sample(rng)
            if arch not in seen:
                seen.add(arch)
                out.append(arch)
                if len(out) == n:
                    break
        return out

    def encode(self, arch: Architecture) -> torch.Tensor:
        """Fixed-length architecture vector: per stage a one-hot depth, then per block slot a one-hot multiplier."""
        parts: list[float] = []
        for s, max_d in enumerate(self.max_depths):
            depth = [0.0] * max_d
            depth[arch.depths[s] - 1] = 1.0
            parts += depth
            for b in range(max_d):
                slot = [0.0] * len(WIDTH_MULTIPLIERS)
                if b < arch.depths[s]:
                    slot[min(range(len(WIDTH_MULTIPLIERS)), key=lambda i: abs(WIDTH_MULTIPLIERS[i] - arch.multipliers[s][b]))] = 1.0
                parts += slot
        return torch.tensor(parts)

    @property
    def encoding_size(self) -> int:
        """Length of ``encode``'s vector."""
        return sum(d + d * len(WIDTH_MULTIPLIERS) for d in self.max_depths)

    def describe(self, arch: Architecture) -> str:
        """Readable form: depths, then inner widths per stage, e.g. ``d=2-1 inner=16,12|32``."""
        inner = "|".join(",".join(str(self.inner_width(s, m)) for m in arch.multipliers[s]) for s in range(len(self.widths)))
        return f"d={'-'.join(map(str, arch.depths))} inner={inner}"

    def blocks(self, arch: Architecture) -> list[tuple[int, int, int, int, int]]:
        """Each kept block as ``(stage, in_channels, inner, out_channels, stride)``."""
        out, c_prev = [], self.widths[0]
        for s, w in enumerate(self.widths):
            for b in range(arch.depths[s]):
                stride = 2 if s > 0 and b == 0 else 1
                out.append((s, c_prev if b == 0 else w, self.inner_width(s, arch.multipliers[s][b]), w, stride))
            c_prev = w
        return out

    def num_params(self, arch: Architecture, num_classes: int) -> int:
        """Exact parameter count: 3×3 convs without bias, BN weight+bias, 1×1 projection shortcuts, linear head."""
        w0 = self.widths[0]
        total = 9 * self.in_channels * w0 + 2 * w0
        for _, c_in, mid, c_out, stride in self.blocks(arch):
            total += 9 * c_in * mid + 2 * mid + 9 * mid * c_out + 2 * c_out
            if stride != 1 or c_in != c_out:
                total += c_in * c_out + 2 * c_out
        return total + self.widths[-1] * num_classes + num_classes

    def flops(self, arch: Architecture, input_hw: tuple[int, int], num_classes: int) -> int:
        """Exact multiply-accumulates of the convolutions and the head for one input of size ``input_hw``."""
        h, w = input_hw
        w0 = self.widths[0]
        total = 9 * self.in_channels * w0 * h * w
        for _, c_in, mid, c_out, stride in self.blocks(arch):
            ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
            total += 9 * c_in * mid * ho * wo + 9 * mid * c_out * ho * wo
            if stride != 1 or c_in != c_out:
                total += c_in * c_out * ho * wo
            h, w = ho, wo
        return total + self.widths[-1] * num_classes
