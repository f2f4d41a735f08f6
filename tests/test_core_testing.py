import pytest
import torch

from oral6_core.components import OptimizerFactory, Pruner
from oral6_core.hookspecs import hookimpl
from oral6_core.testing import check_component


class FrozenOptimizer(OptimizerFactory):
    """An optimizer that never moves the weights."""

    name = "frozen"

    def build(self, model, task):
        return torch.optim.SGD(model.parameters(), lr=0.0)


class LeakyPruner(Pruner):
    """Claims a mask but never applies it."""

    name = "leaky"

    def on_train_start(self, ctx):
        self.weight = ctx.model.body[1].weight
        self.mask = torch.rand_like(self.weight) > 0.5

    def masks(self):
        return {"body.1.weight": self.mask}

    def sparsity(self):
        return {"overall": 0.5}

    def load_state_dict(self, state):
        self.mask = state["masks"]["body.1.weight"]


class Broken:
    @hookimpl
    def oral6_optimizers(self):
        return [FrozenOptimizer]

    @hookimpl
    def oral6_pruners(self):
        return [LeakyPruner]


@pytest.mark.parametrize("kind, name", [("optimizer", "sgd"), ("optimizer", "adamw"), ("regularizer", "none"), ("dataset", "digits"),
                                        ("dataset", "synthetic"), ("model", "mlp"), ("model", "cnn"), ("model", "resnet20"),
                                        ("model", "timm:resnet10t"), ("model", "torchvision:resnet18")])
def test_builtin_components_conform(kind, name):
    check_component(kind, name)


def test_checks_catch_broken_components(register_plugin):
    register_plugin(Broken(), "broken")
    with pytest.raises(AssertionError, match="did not change the weights"):
        check_component("optimizer", "frozen")
    with pytest.raises(AssertionError, match="not exactly zero"):
        check_component("pruner", "leaky")
