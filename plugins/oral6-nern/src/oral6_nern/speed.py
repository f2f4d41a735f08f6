"""Speed and peak memory of a distillation step: the step as first written against the current one, one process."""

from __future__ import annotations

import ctypes
import gc
import time
from itertools import repeat
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from oral6_core import registry

from .fitting import PredictorTrainer
from .layout import WeightLayout, select_layers
from .permutations import layer_permutation
from .predictor import KernelPredictor

STATUS = Path("/proc/self/status")


def literal_attention_map(features: Tensor) -> Tensor:
    """a(A) as written, on a copy of A scaled by its per-sample maximum: vec(mean_c A_c²) / ‖vec(mean_c A_c²)‖."""
    scale = features.detach().flatten(1).abs().amax(1).clamp_min(1e-30).view(-1, *[1] * (features.dim() - 1))
    a = (features / scale).pow(2).mean(1).flatten(1)
    return a / a.pow(2).sum(1, keepdim=True).add(1e-12).sqrt()


class DenseStepTrainer(PredictorTrainer):
    """The baseline step: γ materialised for every coordinate and fed to the first layer, one gather per layer,
    and attention maps computed literally on full-size copies of the feature maps."""

    attention_map = staticmethod(literal_attention_map)

    def predict(self, coords: Tensor) -> Tensor:
        return self.predictor.dense(coords)

    def assemble(self, predictions: Tensor) -> dict[str, Tensor]:
        weights = {}
        for layer, inv, start, end in zip(self.layout.layers, self.layout.inverses, self.layout.offsets[:-1], self.layout.offsets[1:]):
            kernels = predictions[start:end][inv]
            weights[layer.name] = (kernels[:, 1:2, 1:2] if layer.shape[2] == 1 else kernels).reshape(layer.shape)
        return weights


def _status_kib(field: str) -> float:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


def peak_extra_mib(fn: Callable[[], None]) -> float:
    """Peak resident memory above the starting level while ``fn`` runs (Linux: VmHWM reset via clear_refs), in MiB."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        fn()
        return float("nan")
    start = _status_kib("VmRSS")
    fn()
    return (_status_kib("VmHWM") - start) / 1024


def step_speed(width: int, hidden: int, steps: int, rounds: int, batch_size: int, seed: int = 0) -> list[dict[str, Any]]:
    """Distillation steps per second and peak extra memory, baseline vs current, on a random-init ResNet-20 of ``width``.

    The two trainers alternate for ``rounds`` rounds of ``steps`` timed steps (after one untimed step) so both see
    the same machine load; the best round counts.
    """
    torch.manual_seed(seed)
    net = registry.create("model", "resnet20", {"width": width}).build((3, 32, 32), 10).eval()
    params = dict(net.named_parameters())
    layers = select_layers(net, ["layer*.*.conv*"])
    layout = WeightLayout(layers, [layer_permutation(params[l.name].detach(), "none") for l in layers])
    config = registry.create("representation", "nern", {"hidden": hidden, "batch_size": batch_size, "steps": 10 * steps, "warmup_steps": 0}).config
    images = torch.randn(batch_size, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    results: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        for name, cls in (("baseline (dense encoding, per-layer gathers)", DenseStepTrainer), ("current", PredictorTrainer)):
            torch.manual_seed(seed)
            trainer = cls(KernelPredictor(hidden), layout, net, repeat(images), config)  # type: ignore[arg-type]
            trainer.step(1)
            elapsed: list[float] = []

            def run() -> None:
                started = time.perf_counter()
                for step in range(2, steps + 2):
                    trainer.step(step)
                elapsed.append(time.perf_counter() - started)

            peak = peak_extra_mib(run)
            best = results.setdefault(name, {"steps_per_s": 0.0, "peak_extra_mib": peak})
            best["steps_per_s"] = max(best["steps_per_s"], steps / elapsed[0])
            best["peak_extra_mib"] = min(best["peak_extra_mib"], peak)
            del trainer
    kernels = layout.num_kernels
    return [{"width": width, "hidden": hidden, "kernels": kernels, "step": name, **r} for name, r in results.items()]
