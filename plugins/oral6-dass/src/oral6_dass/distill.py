"""Knowledge distillation of a student from its teacher: L = (1−α)·T²·KL(p_T^τ ‖ p_S^τ) + α·CE(y, p_S).

Adam with a cosine-decayed learning rate by default: the last epochs settle, so two distillations
of one student agree far better than with a constant rate (the noise ceiling of the meta-dataset).
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.nn import functional as F

from oral6_core.data import ArrayDataset, BatchLoader, DataBundle
from oral6_core.errors import DataError
from oral6_core.metrics import accuracy, predict


class DistilSettings(BaseModel):
    """How students are distilled (the paper's α=0.5, T=6; epochs and lr sized for CPU)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(4, ge=1, description="Distillation epochs per student.")
    lr: float = Field(3e-3, gt=0, description="Adam learning rate of the student.")
    batch_size: int = Field(64, ge=1, description="Minibatch size.")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the cross-entropy term (α).")
    temperature: float = Field(6.0, gt=0, description="Softmax temperature of the KL term (T).")
    val_epochs: int = Field(2, ge=1, description="Validate in the last N epochs only; the best of them is kept.")
    schedule: Literal["cosine", "constant"] = Field("cosine", description="Learning rate over the steps: cosine decay to 0, or constant.")


@dataclass
class DistilResult:
    """Best validation accuracy over the validated (last) epochs and the test accuracy at that epoch."""

    val_accuracy: float
    test_accuracy: float
    history: list[float]


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, target: Tensor, alpha: float = 0.5, temperature: float = 6.0) -> Tensor:
    """(1−α)·T²·KL(softmax(t/T) ‖ softmax(s/T)) + α·CE(s, y), KL averaged over the batch."""
    t = temperature
    kl = F.kl_div(F.log_softmax(student_logits / t, -1), F.log_softmax(teacher_logits / t, -1), reduction="batchmean", log_target=True)
    return (1 - alpha) * t * t * kl + alpha * F.cross_entropy(student_logits, target)


def _in_memory(bundle: DataBundle) -> tuple[ArrayDataset, ArrayDataset, ArrayDataset]:
    splits = (bundle.train, bundle.val if bundle.val is not None else bundle.test, bundle.test if bundle.test is not None else bundle.val)
    if not all(isinstance(s, ArrayDataset) for s in splits):
        raise DataError(f"Distillation needs an in-memory dataset (ArrayDataset splits); {bundle.name!r} is not one.")
    return splits  # type: ignore[return-value]


def distil(student: nn.Module, teacher: nn.Module, bundle: DataBundle, settings: DistilSettings, seed: int = 0) -> DistilResult:
    """Train ``student`` on ``bundle.train`` against the teacher's soft labels; keep the best-validation epoch's weights
    among the last ``val_epochs`` epochs."""
    train, val, test = _in_memory(bundle)
    device = next(teacher.parameters()).device
    student.to(device)
    teacher.eval()
    teacher_logits = predict(teacher, train, device)[0].to(device)
    opt = torch.optim.Adam(student.parameters(), lr=settings.lr)
    index = ArrayDataset(train.x, train.y, attrs={"row": torch.arange(len(train))})
    loader = BatchLoader(index, settings.batch_size, shuffle=True, seed=seed)
    steps = settings.epochs * len(loader)
    decay = (lambda step: 0.5 * (1 + math.cos(math.pi * step / steps))) if settings.schedule == "cosine" else (lambda step: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, decay)
    best: tuple[float, float] = (-1.0, 0.0)
    best_state: dict[str, Tensor] = {}
    history: list[float] = []
    for epoch in range(settings.epochs):
        loader.set_epoch(epoch)
        student.train()
        for batch in loader:
            batch = batch.to(device)
            loss = kd_loss(student(batch.x), teacher_logits[batch.attrs["row"]], batch.y, settings.alpha, settings.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            scheduler.step()
        if epoch < settings.epochs - settings.val_epochs:
            continue
        val_acc = accuracy(*predict(student, val, device))
        history.append(val_acc)
        if val_acc > best[0]:
            best = (val_acc, accuracy(*predict(student, test, device)))
            best_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
    student.load_state_dict(best_state)
    return DistilResult(best[0], best[1], history)
