"""torchvision datasets (MNIST, FashionMNIST, CIFAR10, CIFAR100) read from local files."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from pydantic import Field

from ..components import DatasetSource, Task
from ..config import ComponentConfig
from ..errors import ConfigError, DataError
from . import DataBundle, split_indices

SHAPES = {
    "MNIST": ((1, 28, 28), 10, (0.1307,), (0.3081,)),
    "FashionMNIST": ((1, 28, 28), 10, (0.2860,), (0.3530,)),
    "CIFAR10": ((3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "CIFAR100": ((3, 32, 32), 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def default_root() -> Path:
    """``$ORAL6_DATA`` or ``~/.cache/oral6/data``."""
    return Path(os.environ.get("ORAL6_DATA", Path.home() / ".cache" / "oral6" / "data"))


class TorchvisionConfig(ComponentConfig):
    variant: str = Field(..., description="Dataset class name: " + ", ".join(SHAPES) + ".")
    root: Path | None = Field(None, description="Folder holding the files (default $ORAL6_DATA or ~/.cache/oral6/data).")
    download: bool = Field(False, description="Download when absent (needs internet).")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Share of the training set held out for validation.")


class TorchvisionDataset(DatasetSource):
    """A torchvision dataset (``torchvision:MNIST`` ...) from local files; a clear error when absent."""

    name = "torchvision:*"
    Config = TorchvisionConfig

    def load(self, seed: int = 0) -> DataBundle:
        from torchvision import datasets, transforms

        c = self.config
        if c.variant not in SHAPES:
            raise ConfigError(f"Unknown torchvision dataset {c.variant!r}; supported: {', '.join(SHAPES)}.")
        shape, classes, mean, std = SHAPES[c.variant]
        root = c.root or default_root()
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
        cls = getattr(datasets, c.variant)
        try:
            train = cls(root, train=True, download=c.download, transform=transform)
            test = cls(root, train=False, download=c.download, transform=transform)
        except RuntimeError as exc:
            raise DataError(
                f"The {c.variant} files are not in {root} ({exc}). Put the torchvision files there, point "
                f"--set dataset.root=DIR (or $ORAL6_DATA) at them, or pass --set dataset.download=true on a "
                f"machine with internet access. Offline alternatives: --dataset digits or --dataset synthetic."
            ) from None
        train_idx, val_idx = split_indices(len(train), (1 - c.val_fraction, c.val_fraction), 0)
        sub = torch.utils.data.Subset
        return DataBundle(
            name=f"torchvision:{c.variant}", train=sub(train, train_idx.tolist()),
            val=sub(train, val_idx.tolist()) if len(val_idx) else None, test=test,
            task=Task("categorical", classes, shape),
        )
