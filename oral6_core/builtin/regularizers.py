"""The empty regularizer: plain empirical risk minimisation."""

from __future__ import annotations

from torch import Tensor

from ..components import Batch, Regularizer


class NoRegularizer(Regularizer):
    """No penalty: empirical risk minimisation (ERM)."""

    name = "none"

    def penalty(self, features: Tensor, logits: Tensor, batch: Batch) -> Tensor:
        return logits.new_zeros(())
