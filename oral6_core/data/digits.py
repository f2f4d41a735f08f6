"""sklearn's bundled handwritten digits (1,797 8×8 images): the offline default dataset."""

from __future__ import annotations

import torch
from pydantic import Field

from ..components import DatasetSource, Task
from ..config import ComponentConfig
from . import ArrayDataset, DataBundle, split_indices


def load_digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """All digits as float images in [0, 1] shaped (N, 1, 8, 8) and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(data.target, dtype=torch.long)


class DigitsConfig(ComponentConfig):
    val_fraction: float = Field(0.15, ge=0, lt=1, description="Share of images held out for validation.")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of images held out for testing.")
    split_seed: int = Field(0, description="Seed of the fixed train/val/test split.")


class Digits(DatasetSource):
    """Handwritten digits 0-9, 8×8 grey images bundled with scikit-learn (no download)."""

    name = "digits"
    Config = DigitsConfig

    def load(self, seed: int = 0) -> DataBundle:
        c = self.config
        x, y = load_digits_arrays()
        train, val, test = split_indices(len(y), (1 - c.val_fraction - c.test_fraction, c.val_fraction, c.test_fraction), c.split_seed)
        full = ArrayDataset(x, y)
        return DataBundle(
            name=self.name,
            train=full.subset(train),
            val=full.subset(val) if len(val) else None,
            test=full.subset(test),
            task=Task("categorical", 10, (1, 8, 8)),
        )
