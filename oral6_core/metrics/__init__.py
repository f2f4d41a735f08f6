"""Shared evaluation: loss and accuracy of a model on a dataset, and calibration error."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..components import Task
from ..data import BatchLoader


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, device: torch.device | str = "cpu", batch_size: int = 512) -> tuple[Tensor, Tensor]:
    """Model outputs and targets over a whole dataset, in order, on the CPU."""
    was_training = model.training
    model.eval()
    outputs, targets = [], []
    for batch in BatchLoader(dataset, batch_size):
        outputs.append(model(batch.x.to(device)).float().cpu())
        targets.append(batch.y)
    model.train(was_training)
    return torch.cat(outputs), torch.cat(targets)


def accuracy(logits: Tensor, targets: Tensor) -> float:
    """Share of rows whose arg-max equals the target."""
    return (logits.argmax(-1) == targets).float().mean().item()


def expected_calibration_error(logits: Tensor, targets: Tensor, bins: int = 15) -> float:
    """ECE: the confidence-weighted gap between confidence and accuracy over equal-width bins."""
    probs = logits.softmax(-1)
    confidence, prediction = probs.max(-1)
    correct = (prediction == targets).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.float().mean() * (confidence[in_bin].mean() - correct[in_bin].mean()).abs()
    return ece.item()


def evaluate(model: nn.Module, dataset: Dataset, task: Task, device: torch.device | str = "cpu", batch_size: int = 512) -> dict[str, float]:
    """Mean loss (the task's NLL) and, for classification, accuracy and ECE."""
    outputs, targets = predict(model, dataset, device, batch_size)
    result = {"loss": task.nll(outputs, targets).item()}
    if task.likelihood == "categorical":
        result["accuracy"] = accuracy(outputs, targets)
        result["ece"] = expected_calibration_error(outputs, targets)
    return result


__all__ = ["predict", "accuracy", "expected_calibration_error", "evaluate"]
