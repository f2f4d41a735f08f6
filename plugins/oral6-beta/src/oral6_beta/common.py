"""What every adapter shares: reading unlabelled inputs, querying the black box, SGD with DINE's schedule."""

from __future__ import annotations

from typing import Iterator

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from oral6_core.components import BlackBox
from oral6_core.config import ComponentConfig
from oral6_core.data import BatchLoader
from oral6_core.errors import DataError

from .losses import adaptive_label_smoothing
from .networks import BottleneckClassifier


class TrainingConfig(ComponentConfig):
    """Options shared by the trained adapters (defaults follow DINE / BETA's reference settings)."""

    epochs: int = Field(20, ge=1, description="Passes over the target set.")
    batch_size: int = Field(64, ge=2, description="Minibatch size.")
    lr: float = Field(0.01, gt=0, description="Learning rate of the bottleneck and classifier.")
    backbone_lr_scale: float = Field(1.0, gt=0, description="Backbone learning rate as a multiple of lr (1: students start from random weights; the papers use 0.1 with ImageNet backbones).")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (Nesterov).")
    weight_decay: float = Field(1e-3, ge=0, description="SGD weight decay.")
    bottleneck_dim: int = Field(256, ge=1, description="Width of the bottleneck (Linear → BatchNorm) before the classifier.")
    topk: int = Field(1, ge=1, description="Black-box classes kept by adaptive label smoothing; the rest share 1 − Σ top-k.")
    augment: bool = Field(True, description="Train on randomly shifted (weak) views of the target images.")
    query_batch_size: int = Field(1024, ge=1, description="Samples per black-box query (one request each).")
    seed: int = Field(0, description="Seed of shuffling, augmentation, mixup and the twin network's initialisation.")


def unlabelled_inputs(target_data: Dataset) -> Tensor:
    """All target inputs, refusing any dataset that carries a label (every ``y`` must be −1)."""
    if len(target_data) == 0:  # type: ignore[arg-type]
        raise DataError("The target dataset is empty; an adapter needs unlabelled target samples to adapt on.")
    xs, ys = [], []
    for batch in BatchLoader(target_data, 1024):
        xs.append(batch.x)
        ys.append(torch.as_tensor(batch.y))
    labels = torch.cat(ys)
    if bool((labels != -1).any()):
        raise DataError(
            "The target data handed to an adapter carries labels; black-box adaptation must not see them. "
            "Pass dataset.without_labels() (every y = -1), as `oral6 adapt` does."
        )
    return torch.cat(xs)


def query(black_box: BlackBox, x: Tensor, batch_size: int) -> Tensor:
    """The black box's outputs over ``x``, batch by batch, on ``x``'s device."""
    return torch.cat([black_box(chunk) for chunk in x.split(batch_size)]).to(x.device)


def black_box_teacher(black_box: BlackBox, x: Tensor, config: TrainingConfig) -> Tensor:
    """DINE's initial teacher P: black-box outputs after adaptive label smoothing with ``topk``."""
    return adaptive_label_smoothing(query(black_box, x, config.query_batch_size).float(), config.topk)


def device_of(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (CPU for a parameterless module)."""
    return next(iter(module.parameters()), torch.empty(0)).device


def build_optimizer(net: BottleneckClassifier, config: TrainingConfig) -> torch.optim.SGD:
    """SGD (momentum, Nesterov, weight decay): head at ``lr``, backbone at ``lr · backbone_lr_scale``."""
    groups = [{"params": net.backbone_parameters(), "lr": config.lr * config.backbone_lr_scale},
              {"params": net.head_parameters(), "lr": config.lr}]
    optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                                nesterov=config.momentum > 0)
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    return optimizer


def decay_learning_rate(optimizer: torch.optim.Optimizer, progress: float, power: float, gamma: float = 10.0) -> None:
    """lr = lr₀ · (1 + γ·progress)^(−power), progress ∈ [0, 1] (DINE's and BETA's schedule)."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * (1 + gamma * progress) ** (-power)


@torch.no_grad()
def predict_probs(net: nn.Module, x: Tensor, batch_size: int = 512) -> Tensor:
    """Softmax predictions of ``net`` (in eval mode) over ``x``."""
    was_training = net.training
    net.eval()
    probs = torch.cat([F.softmax(net(chunk), dim=1) for chunk in x.split(batch_size)])
    net.train(was_training)
    return probs


def minibatches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[Tensor]:
    """Shuffled index batches over ``n`` samples, skipping a last batch of one (BatchNorm needs two)."""
    for index in torch.randperm(n, generator=generator).to(device).split(batch_size):
        if len(index) > 1:
            yield index


__all__ = ["TrainingConfig", "black_box_teacher", "build_optimizer", "decay_learning_rate",
           "device_of", "minibatches", "predict_probs", "query", "unlabelled_inputs"]
