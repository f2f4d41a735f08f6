"""Hook implementations of the core's built-in plugin."""

from __future__ import annotations

from ..data.arrays import ArraysDataset
from ..data.digits import Digits
from ..data.folder import FolderDataset
from ..data.synthetic import Synthetic
from ..data.torchvision_sets import TorchvisionDataset
from ..hookspecs import hookimpl
from ..loggers import JsonlLogger, MlflowLogger, TensorBoardLogger
from ..models.builders import CNNBuilder, MLPBuilder, ResNet20Builder, TimmBuilder, TorchvisionBuilder
from .optimizers import SGD, Adam, AdamW
from .overhead import CoreOverhead
from .regularizers import NoRegularizer


@hookimpl
def oral6_optimizers():
    return [SGD, Adam, AdamW]


@hookimpl
def oral6_regularizers():
    return [NoRegularizer]


@hookimpl
def oral6_datasets():
    return [Digits, Synthetic, TorchvisionDataset, FolderDataset, ArraysDataset]


@hookimpl
def oral6_models():
    return [MLPBuilder, CNNBuilder, ResNet20Builder, TimmBuilder, TorchvisionBuilder]


@hookimpl
def oral6_benchmarks():
    return [CoreOverhead]


@hookimpl
def oral6_loggers():
    return [JsonlLogger, TensorBoardLogger, MlflowLogger]
