"""The predictor's training loop: L = L_rec + w_kd·L_kd + w_fm·L_fmap, Ranger with cosine decay."""

from __future__ import annotations

import math
import random
from contextlib import nullcontext
from typing import TYPE_CHECKING, Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call

from oral6_core.data import BatchLoader, DataBundle
from oral6_core.errors import NonFiniteLossError, ShapeError

from .feedback import Monitor
from .layout import WeightLayout
from .losses import FeatureTap, attention_loss, attention_map, feature_modules, output_distillation_loss, reconstruction_loss
from .predictor import KernelPredictor
from .ranger import ranger

if TYPE_CHECKING:
    from .representation import NeRNConfig


class KernelSampler:
    """Magnitude-aware kernel batches: with probability p a uniform sample, else one drawn ∝ ‖W_k‖ (no repeats)."""

    def __init__(self, norms: Tensor, batch: int, uniform_prob: float, seed: int) -> None:
        self.norms = norms.clamp_min(1e-12)
        self.batch, self.uniform_prob = batch, uniform_prob
        self.coin = random.Random(seed)
        self.generator = torch.Generator(device=norms.device).manual_seed(seed)

    def sample(self) -> Tensor | None:
        """Row indices of the next batch, or None when the batch covers every kernel."""
        n = len(self.norms)
        if self.batch >= n:
            return None
        if self.coin.random() < self.uniform_prob:
            return torch.randperm(n, generator=self.generator, device=self.norms.device)[: self.batch]
        return torch.multinomial(self.norms, self.batch, replacement=False, generator=self.generator)


def first_conv_channels(model: nn.Module) -> int:
    """Input channels of the model's first convolution (the shape of noise inputs)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise ShapeError("The model has no Conv2d layer, so NeRN has nothing to represent.")


def distillation_inputs(model: nn.Module, data: DataBundle | None, batch_size: int, noise_size: int, seed: int,
                        device: torch.device) -> Iterator[Tensor]:
    """Endless input batches: shuffled training images, or N(0, 1) noise images for the data-free application."""
    if data is None:
        channels = first_conv_channels(model)
        generator = torch.Generator(device=device).manual_seed(seed)
        while True:
            yield torch.randn(batch_size, channels, noise_size, noise_size, generator=generator, device=device)
    loader = BatchLoader(data.train, batch_size, shuffle=True, seed=seed, drop_last=True)
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        for batch in loader:
            yield batch.x.to(device, non_blocking=True)
        epoch += 1


class PredictorTrainer:
    """Fits ``predictor`` so the network rebuilt from it matches ``teacher`` (kept in eval mode, never changed).

    Each step draws a batch of kernels for L_rec. After ``warmup_steps`` (reconstruction only), when a
    distillation weight is positive, the distillation gradient is computed in two passes that never hold the
    predictor's graph and the network's at once: a predictor pass without a graph gives every weight; the
    network runs on them (channels-last images, weights as views of that pass) and one backward gives
    G = ∂(w_kd·L_kd + w_fm·L_fmap)/∂Ŵ; then the predictor is run again with a graph in chunks of
    ``chunk`` kernels and Σ_k ⟨G_k, Ŵ_k⟩ is back-propagated, which is the same gradient as one pass through
    both. With ``distill_kernels`` = m < N the second pass covers a uniform sample of m kernels scaled by N/m,
    an unbiased estimate of it.
    """

    chunk = 65536

    def __init__(self, predictor: KernelPredictor, layout: WeightLayout, teacher: nn.Module, inputs: Iterator[Tensor],
                 config: NeRNConfig) -> None:
        self.predictor, self.layout, self.teacher, self.inputs, self.config = predictor, layout, teacher, inputs, config
        self.frozen = {name: p.detach() for name, p in teacher.named_parameters()}
        self.coords = layout.coordinates()
        target, mask = layout.targets(self.frozen)
        self.target, self.mask = target, (None if bool(mask.all()) else mask)
        self.sampler = KernelSampler(target.flatten(1).norm(dim=1), config.kernel_batch, config.uniform_prob, config.seed)
        self.generator = torch.Generator(device=target.device).manual_seed(config.seed + 1)
        self.optimizer = ranger(predictor.parameters(), config.lr, config.lookahead_k, config.lookahead_alpha)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer.inner, T_max=config.steps, eta_min=config.final_lr)
        self.distills = config.distill_weight > 0 or config.attention_weight > 0
        self.tap = FeatureTap(teacher, feature_modules(teacher)) if config.attention_weight > 0 else None

    def predict(self, coords: Tensor) -> Tensor:
        """Kernels at ``coords``."""
        return self.predictor(coords)

    def _rec(self, predicted: Tensor, rows: Tensor | None) -> Tensor:
        target = self.target if rows is None else self.target[rows]
        mask = None if self.mask is None else (self.mask if rows is None else self.mask[rows])
        return reconstruction_loss(predicted, target, mask)

    def _distillation_terms(self, every: Tensor) -> dict[str, Tensor]:
        """L_kd and L_fmap of the network run on the weights assembled from ``every`` row's prediction."""
        x = next(self.inputs)
        with torch.no_grad(), (self.tap.recording() if self.tap else nullcontext([])) as teacher_maps:
            teacher_logits = self.teacher(x)
            teacher_maps = [attention_map(t) for t in teacher_maps]
        with self.tap.recording() if self.tap else nullcontext([]) as student_maps:
            student_logits = functional_call(self.teacher, {**self.frozen, **self.layout.assemble(every)}, (x,))
        terms = {"kd": output_distillation_loss(student_logits, teacher_logits)}
        if self.tap is not None:
            terms["fmap"] = attention_loss([attention_map(s) for s in student_maps], teacher_maps)
        return terms

    def _distill(self) -> dict[str, Tensor]:
        """Accumulate the distillation gradient in the predictor (two passes, see the class); returns L_kd, L_fmap."""
        c = self.config
        with torch.no_grad():
            every = self.predict(self.coords)
        every.requires_grad_(True)
        terms = self._distillation_terms(every)
        (c.distill_weight * terms["kd"] + c.attention_weight * terms.get("fmap", 0.0)).backward()
        self.backpropagate(every.grad)
        return {k: v.detach() for k, v in terms.items()}

    def backpropagate(self, grad: Tensor) -> None:
        """Add ∂/∂θ Σ_k ⟨G_k, Ŵ_k⟩ for G = ``grad`` (N, 3, 3) to the predictor's gradients: exactly, one chunk of kernels at
        a time, or with ``distill_kernels`` = m < N its unbiased estimate (N/m)·Σ over m uniformly sampled kernels."""
        m, n = self.config.distill_kernels, len(self.coords)
        if m is not None and m < n:
            rows = torch.randperm(n, generator=self.generator, device=grad.device)[:m]
            (self.predict(self.coords[rows]) * grad[rows]).sum().mul(n / m).backward()
            return
        for start in range(0, n, self.chunk):
            part = slice(start, start + self.chunk)
            (self.predict(self.coords[part]) * grad[part]).sum().backward()

    def step(self, step: int) -> dict[str, Tensor]:
        """One optimisation step (1-based ``step``); returns the loss terms."""
        c = self.config
        rows = self.sampler.sample()
        self.optimizer.zero_grad()
        terms = self._distill() if self.distills and step > c.warmup_steps else {}
        rec = self._rec(self.predict(self.coords if rows is None else self.coords[rows]), rows)
        rec.backward()
        if c.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.predictor.parameters(), c.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        loss = rec.detach() + c.distill_weight * terms.get("kd", 0.0) + c.attention_weight * terms.get("fmap", 0.0)
        return {"loss": loss, "rec": rec.detach(), **terms}

    @torch.no_grad()
    def predicted_weights(self) -> dict[str, Tensor]:
        """Every represented weight as the predictor gives it now."""
        return self.layout.assemble(self.predict(self.coords))

    @torch.no_grad()
    def relative_error(self) -> float:
        """sqrt(mean (W − Ŵ)²) / sqrt(mean W²) over every represented weight (1 = no better than zeros)."""
        return relative_rmse(self.frozen, self.predicted_weights())

    @torch.no_grad()
    def accuracy(self, x: Tensor, y: Tensor) -> float:
        """Accuracy on (x, y) of the network rebuilt from the predictor as it is now."""
        logits = functional_call(self.teacher, {**self.frozen, **self.predicted_weights()}, (x,))
        return (logits.argmax(-1) == y).float().mean().item()

    def run(self, monitor: Monitor | None = None, probe: tuple[Tensor, Tensor] | None = None) -> list[dict[str, float]]:
        """Train for ``config.steps`` steps; every ``log_every`` steps log the losses, the relative weight error
        and (with ``probe`` images and labels) the rebuilt network's accuracy, and pass the row to ``monitor``."""
        c = self.config
        was_training = self.teacher.training
        self.teacher.eval()
        self.predictor.train()
        history: list[dict[str, float]] = []
        try:
            for step in range(1, c.steps + 1):
                terms = self.step(step)
                if step % c.log_every and step != c.steps:
                    if monitor is not None:
                        monitor(step, None)
                    continue
                row = {"step": float(step), **{k: v.item() for k, v in terms.items()}}
                if not math.isfinite(row["loss"]):
                    raise NonFiniteLossError(
                        f"The NeRN loss became {row['loss']} at step {step}. Lower representation.lr or the distillation weights."
                    )
                row["rel_error"] = self.relative_error()
                if probe is not None:
                    row["accuracy"] = self.accuracy(*probe)
                history.append(row)
                if monitor is not None:
                    monitor(step, row)
        finally:
            self.predictor.eval()
            self.teacher.train(was_training)
        return history


def relative_rmse(original: dict[str, Tensor], predicted: dict[str, Tensor]) -> float:
    """sqrt(mean (W − Ŵ)²) / sqrt(mean W²) over the weights named in ``predicted``."""
    error = sum((original[k] - w).pow(2).sum() for k, w in predicted.items())
    total = sum(original[k].pow(2).sum() for k in predicted)
    return (error / total).sqrt().item()  # type: ignore[union-attr]
