"""Speed and peak memory of a distillation step: the previous one-pass step against the current two-pass one, one process."""

from __future__ import annotations

import ctypes
import gc
import time
from contextlib import nullcontext
from itertools import repeat
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor
from torch.func import functional_call

from oral6_core import registry

from .fitting import PredictorTrainer
from .layout import WeightLayout, select_layers
from .losses import attention_loss, output_distillation_loss
from .permutations import layer_permutation
from .predictor import KernelPredictor
from .representation import width_for_ratio

STATUS = Path("/proc/self/status")


def square_attention_map(features: Tensor) -> Tensor:
    """a(A) as the previous step computed it: channel sums of squares by ``square()`` (a pow and its backward)."""
    q = features.square().sum(1).flatten(1)
    q = q / q.detach().amax(1, keepdim=True).clamp_min(1e-30)
    return q / q.square().sum(1, keepdim=True).add(1e-12).sqrt()


class OnePassTrainer(PredictorTrainer):
    """The previous distillation step, the baseline: one predictor pass over every coordinate whose graph is held
    while the network runs (contiguous images), L_rec rows taken from it, one backward through both."""

    def step(self, step: int) -> dict[str, Tensor]:
        c = self.config
        rows = self.sampler.sample()
        if not (self.distills and step > c.warmup_steps):
            return super().step(step)
        every = self.predict(self.coords)
        terms = {"rec": self._rec(every if rows is None else every[rows], rows)}
        x = next(self.inputs)
        with torch.no_grad(), (self.tap.recording() if self.tap else nullcontext([])) as teacher_maps:
            teacher_logits = self.teacher(x)
        with self.tap.recording() if self.tap else nullcontext([]) as student_maps:
            student_logits = functional_call(self.teacher, {**self.frozen, **self.layout.assemble(every)}, (x,))
        terms["kd"] = output_distillation_loss(student_logits, teacher_logits)
        if self.tap is not None:
            terms["fmap"] = attention_loss([square_attention_map(s) for s in student_maps], [square_attention_map(t) for t in teacher_maps])
        loss = terms["rec"] + c.distill_weight * terms["kd"] + c.attention_weight * terms.get("fmap", 0.0)
        self.optimizer.zero_grad()
        loss.backward()
        if c.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.predictor.parameters(), c.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}}


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


STEPS: tuple[tuple[str, type[PredictorTrainer], int | None], ...] = (
    ("before: one pass", OnePassTrainer, None), ("two passes (exact)", PredictorTrainer, None),
    ("two passes, 4096 sampled", PredictorTrainer, 4096),
)


def step_speed(width: int, hidden: int | None, steps: int, rounds: int, batch_size: int, seed: int = 0) -> list[dict[str, Any]]:
    """Distillation steps per second and peak extra memory of each of ``STEPS`` on a random-init ResNet-20 of ``width``
    (``hidden`` None: the default predictor width for that network).

    The steps alternate for ``rounds`` rounds of ``steps`` timed steps (after one untimed step) so all see the same
    machine load; the best round counts, and the smallest peak.
    """
    torch.manual_seed(seed)
    net = registry.create("model", "resnet20", {"width": width}).build((3, 32, 32), 10).eval()
    params = dict(net.named_parameters())
    layers = select_layers(net, ["layer*.*.conv*"])
    layout = WeightLayout(layers, [layer_permutation(params[l.name].detach(), "none") for l in layers])
    images = torch.randn(batch_size, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    results: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        for name, cls, sampled in STEPS:
            config = registry.create("representation", "nern", {"hidden": hidden, "batch_size": batch_size, "steps": 10 * steps, "kernel_batch": 4096,
                                                                "warmup_steps": 0, "distill_kernels": sampled}).config
            config.hidden = config.hidden or width_for_ratio(config.ratio * layout.represented_parameters(), config.levels, config.depth)
            torch.manual_seed(seed)
            trainer = cls(KernelPredictor(config.hidden), layout, net, repeat(images), config)
            trainer.step(1)
            elapsed: list[float] = []

            def run() -> None:
                started = time.perf_counter()
                for step in range(2, steps + 2):
                    trainer.step(step)
                elapsed.append(time.perf_counter() - started)

            peak = peak_extra_mib(run)
            best = results.setdefault(name, {"hidden": config.hidden, "steps_per_s": 0.0, "peak_extra_mib": peak})
            best["steps_per_s"] = max(best["steps_per_s"], steps / elapsed[0])
            best["peak_extra_mib"] = min(best["peak_extra_mib"], peak)
            del trainer
    before = results[STEPS[0][0]]
    return [{"width": width, "kernels": layout.num_kernels, "step": name, **r,
             "speedup": r["steps_per_s"] / before["steps_per_s"], "memory_ratio": r["peak_extra_mib"] / before["peak_extra_mib"]}
            for name, r in results.items()]
