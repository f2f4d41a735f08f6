"""The architecture reference saved with a representation: a registry model builder and its options."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from oral6_core import registry
from oral6_core.errors import CheckpointError, ConfigError
from oral6_core.models.nets import CifarResNet

from .fitting import first_conv_channels


def describe_architecture(model: nn.Module, builder: str | None, options: dict[str, Any], input_size: int) -> dict[str, Any]:
    """``{"builder", "options", "input_shape", "num_outputs"}`` for ``model``: as configured, or inferred for the core's resnet20."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not heads:
        raise ConfigError("NeRN needs a classifier with a final nn.Linear layer to record the number of outputs.")
    if builder is None:
        if isinstance(model, CifarResNet) and len(model.layer1) == 3:
            builder, options = "resnet20", {"width": model.conv1.out_channels}
        else:
            raise ConfigError(
                f"NeRN cannot tell which model builder made a {type(model).__name__}; set representation.model to its "
                f"name (see `oral6 list-plugins`) and representation.model_options to its options, so that a saved "
                f"representation can rebuild it."
            )
    return {"builder": builder, "options": dict(options), "num_outputs": heads[-1].out_features,
            "input_shape": [first_conv_channels(model), input_size, input_size]}


def build_architecture(arch: dict[str, Any]) -> nn.Module:
    """A freshly initialised network of the recorded architecture (weights are filled in by the caller).

    The initialisation runs on a forked random state, so building never changes the caller's random stream.
    """
    try:
        builder = registry.create("model", arch["builder"], arch["options"])
        shape, outputs = tuple(arch["input_shape"]), arch["num_outputs"]
    except KeyError as exc:
        raise CheckpointError(f"The saved architecture reference lacks {exc}; the file is not a NeRN representation.") from None
    with torch.random.fork_rng(devices=[]):
        return builder.build(shape, outputs)


def check_same_structure(rebuilt: nn.Module, model: nn.Module, arch: dict[str, Any]) -> None:
    """Raise ``ConfigError`` when the rebuilt network's state differs in names or shapes from ``model``'s."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:3]
        raise ConfigError(
            f"Model builder {arch['builder']!r} with options {arch['options']} does not rebuild this network "
            f"(first differences: {diff}); set representation.model and representation.model_options to the builder "
            f"that made it."
        )
