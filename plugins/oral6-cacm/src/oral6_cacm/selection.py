"""Train one method on multi-environment splits and report test-domain accuracy under two model
selection rules: training-domain validation (DomainBed's default) and test-domain validation (oracle)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from oral6_core import registry
from oral6_core.components import TrainContext
from oral6_core.data import BatchLoader
from oral6_core.metrics import evaluate
from oral6_core.models import FeaturesAndLogits
from oral6_core.training import seed_everything

from .splits import EnvironmentSplits


@dataclass
class SelectedAccuracy:
    """Test-domain accuracy of the epoch picked by each rule, and of the last epoch."""

    train_domain_selection: float
    oracle_selection: float
    last_epoch: float


def train_and_select(
    splits: EnvironmentSplits, regularizer: str, options: dict[str, Any], seed: int, epochs: int,
    batch_size: int, lr: float, hidden: list[int],
) -> SelectedAccuracy:
    """The training step of ``oral6_core.training.fit`` (task NLL + penalty on features and logits, Adam),
    with the three accuracies evaluated after every epoch so both selection rules can be applied."""
    seed_everything(seed)
    bundle = splits.bundle()
    model = registry.create("model", "mlp", {"hidden": hidden}).build(bundle.input_shape, bundle.num_classes)
    opt = registry.create("optimizer", "adam", {"lr": lr}).build(model, bundle.task)
    reg = None if regularizer == "none" else registry.create("regularizer", regularizer, options)
    loader = BatchLoader(bundle.train, batch_size, shuffle=True, seed=seed)
    total = epochs * len(loader)
    net = FeaturesAndLogits(model)
    if reg is not None:
        ctx = TrainContext(model, opt, loader, bundle.task, torch.device("cpu"), total, lambda m, b: bundle.task.nll(m(b.x), b.y))
        reg.on_train_start(ctx, bundle)
    step, scores = 0, []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        model.train()
        for batch in loader:
            step += 1
            features, logits = net(batch.x)
            loss = bundle.task.nll(logits, batch.y)
            if reg is not None:
                reg.on_step_start(step, total)
                loss = loss + reg.penalty(features, logits, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        scores.append({split: evaluate(model, getattr(splits, split), bundle.task)["accuracy"] for split in ("val", "test_val", "test")})
    by_val = max(range(epochs), key=lambda e: scores[e]["val"])
    by_oracle = max(range(epochs), key=lambda e: scores[e]["test_val"])
    return SelectedAccuracy(scores[by_val]["test"], scores[by_oracle]["test"], scores[-1]["test"])


def escape_pipes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose text cells have ``|`` escaped, so constraints like ``g ⊥ A | Y`` fit in a markdown table."""
    return [{k: v.replace("|", "\\|") if isinstance(v, str) else v for k, v in row.items()} for row in rows]
