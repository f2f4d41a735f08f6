"""Built-in model builders: mlp, cnn, resnet20, and timm / torchvision pass-through."""

from __future__ import annotations

import inspect
from typing import Any, Callable, ClassVar

import torch
from pydantic import ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError
from torch import Tensor, nn

from ..components import ModelBuilder
from ..config import ComponentConfig
from ..errors import ConfigError, ShapeError
from .nets import MLP, SmallCNN, flat_size, resnet20


def _image_channels(input_shape: tuple[int, ...], model: str) -> int:
    if len(input_shape) != 3:
        raise ShapeError(
            f"Model {model!r} needs image inputs shaped (channels, height, width), but the dataset gives "
            f"inputs of shape {tuple(input_shape)}. Use --model mlp, or a dataset of images."
        )
    return input_shape[0]


class MLPConfig(ComponentConfig):
    hidden: list[int] = Field([128, 128], description="Widths of the hidden layers.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout after each hidden layer.")


class MLPBuilder(ModelBuilder):
    """Multi-layer perceptron with ReLU on flattened inputs."""

    name = "mlp"
    Config = MLPConfig

    def build(self, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
        return MLP(flat_size(input_shape), num_outputs, tuple(self.config.hidden), self.config.dropout)


class CNNConfig(ComponentConfig):
    channels: list[int] = Field([32, 64], description="Channels of each conv block (max-pool between blocks).")


class CNNBuilder(ModelBuilder):
    """Small convolutional network: conv-BN-ReLU blocks, global pooling, linear head."""

    name = "cnn"
    Config = CNNConfig

    def build(self, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
        return SmallCNN(_image_channels(input_shape, self.name), num_outputs, tuple(self.config.channels))


class ResNet20Config(ComponentConfig):
    width: int = Field(16, ge=1, description="Channels of the first stage (stages use w, 2w, 4w).")


class ResNet20Builder(ModelBuilder):
    """CIFAR-style ResNet-20 (He et al., 2016) with configurable width."""

    name = "resnet20"
    Config = ResNet20Config
    citation = "He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016."

    def build(self, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
        return resnet20(_image_channels(input_shape, self.name), num_outputs, self.config.width)


def _timm_factory(variant: str) -> Callable[..., nn.Module] | None:
    import timm

    if variant not in timm.list_models():
        return None
    return lambda **kwargs: timm.create_model(variant, pretrained=False, **kwargs)


def _torchvision_factory(variant: str) -> Callable[..., nn.Module] | None:
    from torchvision import models

    if variant not in models.list_models(module=models):
        return None
    return lambda **kwargs: models.get_model(variant, weights=None, **kwargs)


def constructor_options(factory: Callable[..., nn.Module]) -> tuple[str, list[str] | None]:
    """The model class ``factory`` builds and its constructor's keyword options (None: it takes any).

    The class is found by building the default model on the meta device (no memory, no weights).
    """
    with torch.device("meta"):
        cls = type(factory())
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return cls.__name__, None
    return cls.__name__, [p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL and p.name not in ("device", "dtype")]


class PassThroughConfig(ComponentConfig):
    """``variant`` plus any keyword argument of the library model's constructor, e.g. ``img_size``."""

    model_config = ConfigDict(extra="allow")
    library: ClassVar[str] = ""
    reserved: ClassVar[tuple[str, ...]] = ()
    variant: str = Field(..., description="The library's model name, e.g. resnet18. Other options go to its constructor.")

    @model_validator(mode="after")
    def _check_constructor_options(self) -> "PassThroughConfig":
        given = self.passed_options()
        if not given:
            return self
        name = f"{self.library}:{self.variant}"
        taken = sorted(set(given) & set(self.reserved))
        if taken:
            raise PydanticCustomError("reserved_option", "{name} sets {taken} itself from the dataset; leave it out",
                                      {"name": name, "taken": ", ".join(taken)})
        factory = _FACTORIES[self.library](self.variant)
        if factory is None:  # an unknown variant: build() explains it
            return self
        cls_name, accepted = constructor_options(factory)
        unknown = sorted(set(given) - set(accepted)) if accepted is not None else []
        if unknown:
            raise PydanticCustomError(
                "unknown_constructor_option", "{name} has no option {unknown}; its constructor ({cls}) accepts: {accepted}",
                {"name": name, "unknown": ", ".join(unknown), "cls": cls_name,
                 "accepted": ", ".join(a for a in accepted if a not in self.reserved)},  # type: ignore[union-attr]
            )
        return self

    def passed_options(self) -> dict[str, Any]:
        """The options handed to the library's constructor."""
        return dict(self.model_extra or {})


class TimmConfig(PassThroughConfig):
    library = "timm"
    reserved = ("num_classes", "in_chans", "pretrained")


class TorchvisionConfig(PassThroughConfig):
    library = "torchvision"
    reserved = ("num_classes", "weights")


_FACTORIES = {"timm": _timm_factory, "torchvision": _torchvision_factory}


def _construct(factory: Callable[..., nn.Module], name: str, kwargs: dict[str, Any]) -> nn.Module:
    try:
        return factory(**kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"{name} cannot be built with options {kwargs}: {exc}") from None


class TimmBuilder(ModelBuilder):
    """Any timm model, randomly initialised (``timm:<name>``; no pretrained download); other options go to its constructor."""

    name = "timm:*"
    Config = TimmConfig

    def build(self, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
        name = f"timm:{self.config.variant}"
        factory = _timm_factory(self.config.variant)
        if factory is None:
            raise ConfigError(f"timm has no model {self.config.variant!r}; see timm.list_models().")
        channels = _image_channels(input_shape, name)
        return _construct(factory, name, {**self.config.passed_options(), "num_classes": num_outputs, "in_chans": channels})


class TorchvisionModel(nn.Module):
    """A torchvision classifier split timm-style: the last linear layer is the head."""

    def __init__(self, net: nn.Module, num_outputs: int) -> None:
        super().__init__()
        parent, attr = net, "fc"
        if not isinstance(getattr(net, "fc", None), nn.Linear):
            parent, attr = net.classifier, str(len(net.classifier) - 1)  # type: ignore[union-attr]
        old = getattr(parent, attr) if attr == "fc" else parent[int(attr)]
        self.head = nn.Linear(old.in_features, num_outputs)
        if attr == "fc":
            setattr(parent, attr, nn.Identity())
        else:
            parent[int(attr)] = nn.Identity()
        self.net = net

    def forward_features(self, x: Tensor) -> Tensor:
        return self.net(x)

    def forward_head(self, f: Tensor, pre_logits: bool = False) -> Tensor:
        return f if pre_logits else self.head(f)

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.net(x))


class TorchvisionBuilder(ModelBuilder):
    """Any torchvision classification model, randomly initialised (``torchvision:<name>``); other options go to its constructor."""

    name = "torchvision:*"
    Config = TorchvisionConfig

    def build(self, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
        name = f"torchvision:{self.config.variant}"
        factory = _torchvision_factory(self.config.variant)
        if factory is None:
            raise ConfigError(f"torchvision has no classification model {self.config.variant!r}.")
        if _image_channels(input_shape, name) != 3:
            raise ShapeError(f"{name} expects 3-channel images; the dataset has {input_shape[0]}.")
        return TorchvisionModel(_construct(factory, name, self.config.passed_options()), num_outputs)
