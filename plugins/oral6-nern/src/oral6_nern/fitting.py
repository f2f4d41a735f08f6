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
from oral6_core.progress import report, track

from .layout import WeightLayout
from .losses import FeatureTap, attention_loss, feature_modules, output_distillation_loss, reconstruction_loss
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


def train_predictor(predictor: KernelPredictor, layout: WeightLayout, teacher: nn.Module, inputs: Iterator[Tensor],
                    config: NeRNConfig) -> list[dict[str, float]]:
    """Fit ``predictor`` so the network rebuilt from it matches ``teacher``; returns the logged loss history.

    Each step samples a batch of kernels for L_rec. After ``warmup_steps`` (reconstruction only), when a
    distillation weight is positive, every kernel is predicted, the network is run functionally with
    the predicted weights, and L_kd and L_fmap flow back through the weights into the predictor.
    """
    was_training = teacher.training
    teacher.eval()
    frozen = {name: p.detach() for name, p in teacher.named_parameters()}
    coords = layout.coordinates()
    target, mask = layout.targets(frozen)
    sampler = KernelSampler(target.flatten(1).norm(dim=1), config.kernel_batch, config.uniform_prob, config.seed)
    optimizer = ranger(predictor.parameters(), config.lr, config.lookahead_k, config.lookahead_alpha)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer.inner, T_max=config.steps, eta_min=config.final_lr)
    distills = config.distill_weight > 0 or config.attention_weight > 0
    tap = FeatureTap(teacher, feature_modules(teacher)) if config.attention_weight > 0 else None
    history: list[dict[str, float]] = []
    predictor.train()
    for step in track(range(1, config.steps + 1), "nern fit", "step", every=max(config.steps // 10, 1)):
        rows = sampler.sample()
        use_network = distills and step > config.warmup_steps
        if use_network:
            every = predictor(coords)
            predicted = every if rows is None else every[rows]
        else:
            predicted = predictor(coords if rows is None else coords[rows])
        rec = reconstruction_loss(predicted, target if rows is None else target[rows], mask if rows is None else mask[rows])
        terms = {"rec": rec}
        if use_network:
            x = next(inputs)
            with torch.no_grad(), (tap.recording() if tap else nullcontext([])) as teacher_maps:
                teacher_logits = teacher(x)
            weights = {**frozen, **layout.assemble(every)}
            with tap.recording() if tap else nullcontext([]) as student_maps:
                student_logits = functional_call(teacher, weights, (x,))
            terms["kd"] = output_distillation_loss(student_logits, teacher_logits)
            if tap is not None:
                terms["fmap"] = attention_loss(student_maps, teacher_maps)
        loss = rec + config.distill_weight * terms.get("kd", 0.0) + config.attention_weight * terms.get("fmap", 0.0)
        optimizer.zero_grad()
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(predictor.parameters(), config.grad_clip)
        optimizer.step()
        schedule.step()
        if step % config.log_every == 0 or step == config.steps:
            row = {"step": float(step), "loss": loss.item(), **{k: v.item() for k, v in terms.items()}}
            if not math.isfinite(row["loss"]):
                raise NonFiniteLossError(
                    f"The NeRN loss became {row['loss']} at step {step}. Lower representation.lr or the distillation weights."
                )
            history.append(row)
            report(loss=row["loss"])
    predictor.eval()
    teacher.train(was_training)
    return history
