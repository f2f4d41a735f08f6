"""Train one method on multi-environment splits and report test-domain accuracy under two model
selection rules: training-domain validation (DomainBed's default) and test-domain validation (oracle)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oral6_core import registry
from oral6_core.config import TrainConfig
from oral6_core.training import fit, seed_everything

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
    """Train an MLP with Adam through the core loop, then pick epochs by training-domain and test-domain validation."""
    seed_everything(seed)
    bundle = splits.bundle()
    model = registry.create("model", "mlp", {"hidden": hidden}).build(bundle.input_shape, bundle.num_classes)
    reg = None if regularizer == "none" else registry.create("regularizer", regularizer, options)
    train = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, device="cpu", progress=False, checkpoint=False)
    summary = fit(model, bundle, registry.create("optimizer", "adam", {"lr": lr}), train, reg).summary
    return SelectedAccuracy(summary["selected_by_val"]["test_accuracy"], summary["selected_by_test_val"]["test_accuracy"],
                            summary["final"]["test_accuracy"])


def escape_pipes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose text cells have ``|`` escaped, so constraints like ``g ⊥ A | Y`` fit in a markdown table."""
    return [{k: v.replace("|", "\\|") if isinstance(v, str) else v for k, v in row.items()} for row in rows]
