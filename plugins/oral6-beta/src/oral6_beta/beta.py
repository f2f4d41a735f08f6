"""BETA (Yang et al., ICLR 2023): divide the target domain into easy and hard subdomains, then adapt.

Each epoch, for twin networks f₁, f₂ with hard black-box labels ŷ and teacher P:

1. every tenth of training, P ← ema·P + (1 − ema)·softmax((f₁ + f₂)/2);
2. a DINE distillation pass per network (KL(P ‖ p) + IM + mixup consistency);
3. division: per network, ℓ_i = CE(f(x_i), ŷ_i), min-max scaled; w_i = posterior of the low-loss
   component of a 2-GMM; easy = {w ≥ τ}, hard = the rest. A network learns from its peer's
   division (``division="peer"``, the paper) or from its own with the peer's weights (``"own"``,
   the reference code);
4. MixMatch on weak (shift) and strong (RandAugment) views: easy targets
   q = Sharpen(w·onehot(ŷ) + (1 − w)·p̄_self, T), hard targets q = Sharpen(p̄_both nets, T) over both
   views; mixup with λ ~ Beta(α, α), λ ← max(λ, 1 − λ), and

       L = CE_soft(mixed easy) + λ_u·MSE(mixed hard) + λ_p·Σ_c π_c log(π_c / p̄_c) + λ_t·L_adv,

   where L_adv is the binary cross-entropy of a discriminator telling easy from hard bottleneck
   features through a gradient-reversal layer (the discriminator is optimised, the features learn
   to fool it), aligning the two subdomains;
5. a second stage of information-maximisation fine-tuning of the returned network(s), as the
   reference runs after every adaptation (``finetune_epochs=0`` skips it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from oral6_core.components import Adapter, BlackBox
from oral6_core.progress import track

from .augment import Views
from .common import (TrainingConfig, black_box_teacher, build_optimizer, decay_learning_rate, minibatches,
                     predict_probs, unlabelled_inputs)
from .dine import distillation_step, information_maximisation_finetune
from .division import Division, divide
from .losses import mixmatch_lambda, mixup, prior_penalty, probability_mse, sharpen, soft_cross_entropy
from .networks import BottleneckClassifier, Discriminator, TwinNetworks, attach_bottleneck, reinitialised_copy, reverse_gradient


class BETAConfig(TrainingConfig):
    epochs: int = Field(10, ge=1, description="Passes over the target set (10 keeps `oral6 adapt` to minutes on a CPU; the paper: 50 Office, 10 VisDA).")
    tau: float = Field(0.8, gt=0, lt=1, description="τ: a sample is easy when its clean posterior w ≥ τ (0.8 Office, 0.5 VisDA).")
    division: Literal["peer", "own"] = Field("peer", description="Train each network on its peer's division (paper) or its own (reference code).")
    warmup_epochs: int = Field(0, ge=0, description="Epochs of plain cross-entropy on the black-box labels before dividing.")
    temperature: float = Field(0.5, gt=0, description="T of label sharpening.")
    alpha: float = Field(1.0, gt=0, description="MixMatch mixup λ ~ Beta(α, α).")
    lambda_u: float = Field(1.0, ge=0, description="λ_u, weight of the MSE on the hard subdomain (0 = the reference configs).")
    rampup_epochs: float = Field(5, ge=0, description="λ_u rises linearly from 0 over this many epochs after warm-up.")
    lambda_p: float = Field(1.0, ge=0, description="λ_p, weight of the uniform-prior penalty.")
    lambda_t: float = Field(0.1, ge=0, description="λ_t, weight of the easy-vs-hard adversarial alignment (0 = the reference configs).")
    ema: float = Field(0.6, ge=0, le=1, description="Teacher refresh P ← ema·P + (1 − ema)·p_twins every tenth of the epochs.")
    mix_weight: float = Field(1.0, ge=0, description="Weight of DINE's mixup-consistency KL in the distillation pass.")
    finetune_epochs: int = Field(5, ge=0, description="Epochs of information-maximisation fine-tuning of the returned network(s) at the end (0 = none).")
    ensemble: bool = Field(True, description="Predict with the average of both networks' logits (else the first network).")


@dataclass
class EpochDivision:
    """The divisions made in one epoch (one per network) and the black-box labels they judged."""

    epoch: int
    divisions: tuple[Division, Division]
    pseudo_labels: Tensor


class BETAAdapter(Adapter):
    """BETA: twin networks divide the target into easy/hard subdomains (GMM on losses), then MixMatch + alignment."""

    name = "beta"
    Config = BETAConfig
    citation = ("Yang, Peng, Wang, Zhu, Feng, Xie, You. Divide to Adapt: Mitigating Confirmation Bias for Domain "
                "Adaptation of Black-Box Predictors. ICLR 2023.")

    def __init__(self, config: BETAConfig | None = None) -> None:
        super().__init__(config)
        self.history: list[EpochDivision] = []

    def adapt(self, black_box: BlackBox, target_data: torch.utils.data.Dataset, student: nn.Module) -> nn.Module:
        """Run BETA; ``self.history`` keeps each epoch's divisions for inspection."""
        c: BETAConfig = self.config  # type: ignore[assignment]
        torch.manual_seed(c.seed)
        x = unlabelled_inputs(target_data).to(next(iter(student.parameters())).device)
        second = reinitialised_copy(student)
        nets = [attach_bottleneck(s, x, black_box.num_classes, c.bottleneck_dim) for s in (student, second)]
        twins = TwinNetworks(*nets)
        teacher = black_box_teacher(black_box, x, c)
        labels = teacher.argmax(1)
        trainer = _Trainer(c, nets, x, labels)
        self.history = []
        for epoch in track(range(1, c.epochs + 1), "beta"):
            for optimizer in trainer.optimizers:
                decay_learning_rate(optimizer, epoch / c.epochs, power=1.5)
            if epoch % max(c.epochs // 10, 1) == 0 and c.ema < 1:
                teacher = c.ema * teacher + (1 - c.ema) * predict_probs(twins, x)
            if epoch <= c.warmup_epochs:
                trainer.warm_up()
                continue
            trainer.distil(teacher)
            divisions = trainer.divide()
            self.history.append(EpochDivision(epoch, divisions, labels))
            trainer.semi_supervised(divisions, epoch)
        returned = nets if c.ensemble else nets[:1]
        if c.finetune_epochs:
            for net in returned:
                information_maximisation_finetune(net, x, c, c.finetune_epochs, trainer.views, trainer.generator)
        return (twins if c.ensemble else nets[0]).eval()


class _Trainer:
    """The state of one BETA run: both networks, their optimizers and discriminators, the target set."""

    def __init__(self, c: BETAConfig, nets: list[BottleneckClassifier], x: Tensor, labels: Tensor) -> None:
        self.c, self.nets, self.x, self.labels = c, nets, x, labels
        self.classes = nets[0].classifier.out_features
        self.optimizers = [build_optimizer(net, c) for net in nets]
        device = x.device
        self.discriminators = [Discriminator(c.bottleneck_dim, c.bottleneck_dim).to(device) for _ in nets]
        self.disc_optimizers = [torch.optim.SGD(d.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
                                for d in self.discriminators]
        self.views = Views(c.augment)
        self.generator = torch.Generator().manual_seed(c.seed)
        self.rng = np.random.default_rng(c.seed)

    def warm_up(self) -> None:
        """One epoch of cross-entropy on the black-box labels ŷ for each network."""
        for net, optimizer in zip(self.nets, self.optimizers):
            net.train()
            for index in minibatches(len(self.x), self.c.batch_size, self.generator, self.x.device):
                loss = F.cross_entropy(net(self.views.weak(self.x[index])), self.labels[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    def distil(self, teacher: Tensor) -> None:
        """One epoch of DINE distillation for each network."""
        for net, optimizer in zip(self.nets, self.optimizers):
            net.train()
            for index in minibatches(len(self.x), self.c.batch_size, self.generator, self.x.device):
                distillation_step(net, optimizer, self.views.weak(self.x[index]), teacher[index], self.c.mix_weight, self.rng)

    @torch.no_grad()
    def divide(self) -> tuple[Division, Division]:
        """Each network's GMM division of the target set by its per-sample CE against ŷ (eval mode, no augmentation)."""
        out = []
        for net in self.nets:
            net.eval()
            logits = torch.cat([net(chunk) for chunk in self.x.split(512)])
            out.append(divide(F.cross_entropy(logits, self.labels, reduction="none"), self.c.tau, self.c.seed))
            net.train()
        return out[0], out[1]

    def semi_supervised(self, divisions: tuple[Division, Division], epoch: int) -> None:
        """One MixMatch epoch per network on the division chosen by ``division``."""
        for k in (0, 1):
            peer = 1 - k
            chosen = divisions[peer] if self.c.division == "peer" else divisions[k]
            easy = chosen.easy.nonzero().squeeze(1)
            hard = chosen.hard.nonzero().squeeze(1)
            if len(easy) < 2 or len(hard) < 2:
                continue
            self._mixmatch_epoch(k, easy, divisions[peer].weights, hard, epoch)

    def _mixmatch_epoch(self, k: int, easy: Tensor, weights: Tensor, hard: Tensor, epoch: int) -> None:
        c, net, peer = self.c, self.nets[k], self.nets[1 - k]
        optimizer, disc, disc_opt = self.optimizers[k], self.discriminators[k], self.disc_optimizers[k]
        net.train()
        peer.eval()
        batches = list(minibatches(len(easy), c.batch_size, self.generator, self.x.device))
        hard_batches: list[Tensor] = []
        for i, batch in enumerate(batches):
            if not hard_batches:
                hard_batches = list(minibatches(len(hard), c.batch_size, self.generator, self.x.device))
            ex, hx = easy[batch], hard[hard_batches.pop()]
            elapsed = epoch - 1 + i / len(batches)
            ramp = (elapsed - c.warmup_epochs) / c.rampup_epochs if c.rampup_epochs else 1.0
            lambda_u = c.lambda_u * float(np.clip(ramp, 0.0, 1.0))
            loss = self._mixmatch_loss(net, peer, ex, weights[ex], hx, lambda_u)
            if c.lambda_t > 0:
                loss = loss + c.lambda_t * self._alignment_loss(net, disc, ex, hx, elapsed / c.epochs)
                disc_opt.zero_grad(set_to_none=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if c.lambda_t > 0:
                disc_opt.step()
        peer.train()

    def _mixmatch_loss(self, net: nn.Module, peer: nn.Module, ex: Tensor, w: Tensor, hx: Tensor, lambda_u: float) -> Tensor:
        """Soft CE on mixed easy samples + λ_u·MSE on mixed hard samples + λ_p·prior penalty."""
        c, views = self.c, self.views
        x1, x2 = views.weak(self.x[ex]), views.strong(self.x[ex])
        u1, u2 = views.weak(self.x[hx]), views.strong(self.x[hx])
        with torch.no_grad():
            own = (F.softmax(net(x1), 1) + F.softmax(net(x2), 1)) / 2
            onehot = F.one_hot(self.labels[ex], self.classes).float()
            w = w.unsqueeze(1)
            easy_targets = sharpen(w * onehot + (1 - w) * own, c.temperature)
            guess = sum(F.softmax(m(u), 1) for m in (net, peer) for u in (u1, u2)) / 4
            hard_targets = sharpen(guess, c.temperature)  # type: ignore[arg-type]
        lam = mixmatch_lambda(c.alpha, self.rng)
        n_easy = 2 * len(ex)
        inputs = torch.cat([x1, x2, u1, u2]) if lambda_u > 0 else torch.cat([x1, x2])
        targets = torch.cat([easy_targets, easy_targets, hard_targets, hard_targets]) if lambda_u > 0 else torch.cat([easy_targets, easy_targets])
        perm = torch.randperm(len(inputs), device=inputs.device)
        logits = net(mixup(inputs, inputs[perm], lam))
        mixed_targets = mixup(targets, targets[perm], lam)
        loss = soft_cross_entropy(logits[:n_easy], mixed_targets[:n_easy])
        if lambda_u > 0:
            loss = loss + lambda_u * probability_mse(logits[n_easy:], mixed_targets[n_easy:])
        if c.lambda_p > 0:
            loss = loss + c.lambda_p * prior_penalty(F.softmax(logits, 1))
        return loss

    def _alignment_loss(self, net: BottleneckClassifier, disc: Discriminator, ex: Tensor, hx: Tensor, progress: float) -> Tensor:
        """BCE of the discriminator on easy (1) vs hard (0) bottleneck features behind a gradient-reversal layer."""
        features = net.forward_head(net.forward_features(self.views.weak(self.x[torch.cat([ex, hx])])), pre_logits=True)
        coefficient = 2.0 / (1.0 + math.exp(-10 * progress)) - 1.0
        logits = disc(reverse_gradient(features, coefficient))
        domain = torch.cat([torch.ones(len(ex), device=logits.device), torch.zeros(len(hx), device=logits.device)])
        return F.binary_cross_entropy_with_logits(logits, domain)
