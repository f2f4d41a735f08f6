"""Built-in model builders: mlp, cnn, resnet20, and timm / torchvision pass-through."""

from __future__ import annotations

from pydantic import Field
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


class VariantConfig(ComponentConfig):
    variant: str = Field(..., description="The library's model name, e.g. resnet18.")


class TimmBuilder(ModelBuilder):
    """Any timm model, randomly initialised (``timm:<name>``; no pretrained download)."""

    name = "timm:*"
    Config = VariantConfig

    def build(self, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
        import timm

        if self.config.variant not in timm.list_models():
            raise ConfigError(f"timm has no model {self.config.variant!r}; see timm.list_models().")
        channels = _image_channels(input_shape, f"timm:{self.config.variant}")
        return timm.create_model(self.config.variant, pretrained=False, num_classes=num_outputs, in_chans=channels)


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
    """Any torchvision classification model, randomly initialised (``torchvision:<name>``)."""

    name = "torchvision:*"
    Config = VariantConfig

    def build(self, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
        from torchvision import models

        if self.config.variant not in models.list_models(module=models):
            raise ConfigError(f"torchvision has no classification model {self.config.variant!r}.")
        if _image_channels(input_shape, f"torchvision:{self.config.variant}") != 3:
            raise ShapeError(
                f"torchvision:{self.config.variant} expects 3-channel images; the dataset has {input_shape[0]}."
            )
        return TorchvisionModel(models.get_model(self.config.variant, weights=None), num_outputs)
