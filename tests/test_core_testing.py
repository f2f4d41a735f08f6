from typing import Literal

import pytest
import torch
from pydantic import Field

from oral6_core.components import OptimizerFactory, Pruner, Regularizer
from oral6_core.config import ComponentConfig
from oral6_core.hookspecs import hookimpl
from oral6_core.testing import check_component, option_variants


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


class Averaging(torch.optim.Optimizer):
    """Wraps an inner optimizer and keeps a running average of the weights; assumes the inner one has momentum."""

    def __init__(self, inner: torch.optim.Optimizer) -> None:
        super().__init__(inner.param_groups, inner.defaults)  # shares the inner optimizer's group dicts
        self.inner, self.state = inner, inner.state

    def step(self, closure=None):
        self.inner.step()
        for group in self.param_groups:
            group["momentum"] * 1.0  # fine for SGD, a KeyError for Adam

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


class WrapperConfig(ComponentConfig):
    inner: Literal["sgd", "adam"] = Field("sgd", description="The wrapped optimizer.")
    lr: float = Field(0.1, gt=0, description="Learning rate.")


class WrapperOptimizer(OptimizerFactory):
    """A wrapper optimizer that crashes when it wraps Adam."""

    name = "test-wrapper"
    Config = WrapperConfig

    def build(self, model, task):
        c = self.config
        inner = torch.optim.SGD(model.parameters(), lr=c.lr, momentum=0.9) if c.inner == "sgd" else torch.optim.Adam(model.parameters(), lr=c.lr)
        return Averaging(inner)


class WarmupSGD(torch.optim.SGD):
    """Counts its steps in an attribute that state_dict() leaves out."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.t = 0

    def step(self, closure=None):
        self.t += 1
        for group in self.param_groups:
            for p in group["params"]:
                p.data.add_(p.grad, alpha=-group["lr"] * min(1.0, self.t / 10))


class ForgetfulOptimizer(OptimizerFactory):
    """Warm-up SGD whose step count is lost on resume."""

    name = "test-forgetful"

    def build(self, model, task):
        return WarmupSGD(model.parameters(), lr=0.1)


class IgnoresLr(torch.optim.SGD):
    """Reads its learning rate from a copy taken at construction, so schedule writes do nothing."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.fixed_lr = lr

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.data.add_(p.grad, alpha=-self.fixed_lr)


class FixedLrOptimizer(OptimizerFactory):
    """SGD that ignores the loop's learning-rate schedule."""

    name = "test-fixed-lr"

    def build(self, model, task):
        return IgnoresLr(model.parameters(), lr=0.1)


class DetachedPenalty(Regularizer):
    """An L2 penalty on the features computed through .item(): a number, not a loss."""

    name = "test-detached"

    def penalty(self, features, logits, batch):
        return torch.tensor(0.1 * features.pow(2).mean().item())


class Broken:
    @hookimpl
    def oral6_optimizers(self):
        return [FrozenOptimizer, WrapperOptimizer, ForgetfulOptimizer, FixedLrOptimizer]

    @hookimpl
    def oral6_regularizers(self):
        return [DetachedPenalty]

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
    with pytest.raises(AssertionError, match=r"with options \{'inner': 'adam'\} crashed: KeyError"):
        check_component("optimizer", "test-wrapper")
    with pytest.raises(AssertionError, match=r"options \{'lr': 0.01, 'inner': 'adam'\} crashed"):
        check_component("optimizer", "test-wrapper", {"lr": 0.01})  # given options are kept in every variant
    with pytest.raises(AssertionError, match="fresh optimizer, the next step differs"):
        check_component("optimizer", "test-forgetful")
    with pytest.raises(AssertionError, match=r'param_groups\[i\]\["lr"\] set to 0'):
        check_component("optimizer", "test-fixed-lr")
    with pytest.raises(AssertionError, match="detached from the weights"):
        check_component("regularizer", "test-detached")


def test_option_variants_try_every_other_choice_and_flip_booleans():
    class Options(ComponentConfig):
        mode: Literal["a", "b", "c"] = "a"
        flag: bool = False
        device: Literal["cpu", "cuda"] = "cpu"
        size: int = 3

    assert option_variants(Options, {"size": 4}) == [{"size": 4, "mode": "b"}, {"size": 4, "mode": "c"}, {"size": 4, "flag": True}]
    assert option_variants(Options, {"mode": "c"})[:2] == [{"mode": "a"}, {"mode": "b"}]
