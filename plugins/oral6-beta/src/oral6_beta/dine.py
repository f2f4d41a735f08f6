"""DINE (Liang et al., CVPR 2022): distil a black box into a target network, then fine-tune it.

Distillation, per minibatch with teacher P (adaptive label smoothing of the black box's top-k,
refreshed every tenth of training as P ← ema·P + (1 − ema)·p_net):

    L = KL(P ‖ p(x)) + E[H(p)] − H(E[p]) + β · KL(p̃ ‖ p(λx + (1 − λ)x_π)),
    p̃ = λ p(x) + (1 − λ) p(x_π) (no gradient), λ ~ Beta(0.3, 0.3).

Fine-tuning: the information-maximisation loss E[H(p)] − H(E[p]) alone, stopping early once the
network's predictions over the target set stop changing.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from oral6_core.components import Adapter, BlackBox

from .augment import Views
from .common import (TrainingConfig, black_box_teacher, build_optimizer, decay_learning_rate, minibatches,
                     predict_probs, unlabelled_inputs)
from .losses import information_maximisation, kl_to_teacher, mixup
from .networks import BottleneckClassifier, attach_bottleneck

DINE_CITATION = "Liang, Hu, Wang, He, Feng. DINE: Domain Adaptation from Single and Multiple Black-box Predictors. CVPR 2022."


def distillation_step(net: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, teacher: Tensor, mix_weight: float,
                      rng: np.random.Generator) -> float:
    """One DINE step: KL to the teacher + IM, then β·mixup-consistency KL; returns the first loss."""
    probs = F.softmax(net(x), dim=1)
    loss = kl_to_teacher(probs, teacher) + information_maximisation(probs)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if mix_weight > 0:
        lam = float(rng.beta(0.3, 0.3))
        perm = torch.randperm(x.shape[0], device=x.device)
        target = mixup(probs, probs[perm], lam).detach()
        mixed = F.softmax(net(mixup(x, x[perm], lam)), dim=1)
        (mix_weight * kl_to_teacher(mixed, target)).backward()
    optimizer.step()
    return float(loss.detach())


def information_maximisation_finetune(net: nn.Module, x: Tensor, config: TrainingConfig, epochs: int,
                                      views: Views, generator: torch.Generator) -> None:
    """DINE's second stage: minimise E[H(p)] − H(E[p]); stop when target predictions stop changing."""
    optimizer = build_optimizer(net, config)  # type: ignore[arg-type]
    steps_per_epoch = max(len(x) // config.batch_size, 1)
    total = epochs * steps_per_epoch
    check_every = max(total // 10, 1)
    step, previous = 0, None
    while step < total:
        for index in minibatches(len(x), config.batch_size, generator, x.device):
            step += 1
            decay_learning_rate(optimizer, step / total, power=0.75)
            loss = information_maximisation(F.softmax(net(views.weak(x[index])), dim=1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % check_every == 0:
                labels = predict_probs(net, x).argmax(1)
                if previous is not None and bool((labels == previous).all()):
                    return
                previous = labels
            if step >= total:
                return


class DINEConfig(TrainingConfig):
    ema: float = Field(0.6, ge=0, le=1, description="Teacher refresh P ← ema·P + (1 − ema)·p_net every tenth of training (1 = never).")
    mix_weight: float = Field(1.0, ge=0, description="β, weight of the mixup-consistency KL.")
    finetune_epochs: int = Field(10, ge=0, description="Epochs of information-maximisation fine-tuning after distillation (0 = none).")


class DINEAdapter(Adapter):
    """DINE: distil the black box (adaptive label smoothing, EMA teacher, IM, mixup), then fine-tune with IM."""

    name = "dine"
    Config = DINEConfig
    citation = DINE_CITATION

    def adapt(self, black_box: BlackBox, target_data: torch.utils.data.Dataset, student: nn.Module) -> nn.Module:
        """Distil then fine-tune; returns the student with DINE's bottleneck head."""
        c: DINEConfig = self.config  # type: ignore[assignment]
        torch.manual_seed(c.seed)
        x = unlabelled_inputs(target_data).to(next(iter(student.parameters())).device)
        net = attach_bottleneck(student, x, black_box.num_classes, c.bottleneck_dim)
        teacher = black_box_teacher(black_box, x, c)
        views, generator, rng = Views(c.augment), torch.Generator().manual_seed(c.seed), np.random.default_rng(c.seed)
        distil(net, x, teacher, c, views, generator, rng)
        if c.finetune_epochs:
            information_maximisation_finetune(net, x, c, c.finetune_epochs, views, generator)
        return net.eval()


def distil(net: BottleneckClassifier, x: Tensor, teacher: Tensor, c: DINEConfig, views: Views,
           generator: torch.Generator, rng: np.random.Generator) -> Tensor:
    """DINE's distillation stage (power-1.5 learning-rate decay); returns the final teacher."""
    optimizer = build_optimizer(net, c)
    steps_per_epoch = max(len(x) // c.batch_size, 1)
    total = c.epochs * steps_per_epoch
    refresh_every = max(total // 10, 1)
    step = 0
    net.train()
    while step < total:
        for index in minibatches(len(x), c.batch_size, generator, x.device):
            if c.ema < 1 and step > 0 and step % refresh_every == 0:
                teacher = c.ema * teacher + (1 - c.ema) * predict_probs(net, x)
            step += 1
            decay_learning_rate(optimizer, step / total, power=1.5)
            distillation_step(net, optimizer, views.weak(x[index]), teacher[index], c.mix_weight, rng)
            if step >= total:
                break
    return teacher
