"""A procedurally generated classification problem (Gaussian clusters on a hypercube)."""

from __future__ import annotations

import torch
from pydantic import Field

from ..components import DatasetSource, Task
from ..config import ComponentConfig
from . import ArrayDataset, DataBundle, split_indices


class SyntheticConfig(ComponentConfig):
    num_samples: int = Field(3000, ge=30, description="Number of points in all splits together.")
    num_features: int = Field(20, ge=2, description="Input dimension.")
    num_informative: int = Field(10, ge=1, description="Dimensions that carry class information.")
    num_classes: int = Field(4, ge=2, description="Number of classes.")
    class_sep: float = Field(1.0, gt=0, description="Distance between class clusters.")
    label_noise: float = Field(0.02, ge=0, lt=1, description="Share of labels flipped at random.")
    data_seed: int = Field(0, description="Seed that generates the data.")


class Synthetic(DatasetSource):
    """Procedural classification data (sklearn.make_classification): any size, no files."""

    name = "synthetic"
    Config = SyntheticConfig

    def load(self, seed: int = 0) -> DataBundle:
        from sklearn.datasets import make_classification

        c = self.config
        x, y = make_classification(
            n_samples=c.num_samples, n_features=c.num_features, n_informative=min(c.num_informative, c.num_features),
            n_redundant=0, n_classes=c.num_classes, n_clusters_per_class=2, class_sep=c.class_sep,
            flip_y=c.label_noise, random_state=c.data_seed,
        )
        full = ArrayDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long))
        train, val, test = split_indices(c.num_samples, (0.7, 0.1, 0.2), c.data_seed)
        return DataBundle(
            name=self.name, train=full.subset(train), val=full.subset(val), test=full.subset(test),
            task=Task("categorical", c.num_classes, (c.num_features,)),
        )
