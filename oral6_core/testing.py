"""Conformance checks a plugin author calls on each component: ``check_component(kind, name)``.

Each check builds the component from its defaults, checks the strict config, and exercises the
kind's contract on a tiny model, raising ``AssertionError`` with the reason when it does not hold.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import registry
from .components import Batch, Component, Task, TrainContext
from .config import ComponentConfig
from .data import BatchLoader, DataBundle
from .errors import ConfigError

REQUIRED_METHODS = {
    "optimizer": ("build",),
    "pruner": ("on_train_start", "on_step_end", "masks", "sparsity", "load_state_dict"),
    "regularizer": ("penalty",),
    "predictor": ("candidates", "predict", "fit", "save", "load"),
    "adapter": ("adapt",),
    "generative-model": ("fit", "encode", "decode", "sample"),
    "representation": ("fit", "reconstruct", "num_parameters", "represented_parameters", "save", "load"),
    "dataset": ("load",),
    "model": ("build",),
    "benchmark": ("run",),
}


def tiny_bundle(n: int = 64, features: int = 8, classes: int = 3, seed: int = 0) -> DataBundle:
    """A linearly separable toy problem with two environments and one attribute of each type."""
    from .components import Attribute
    from .data import ArrayDataset

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = (x[:, :classes].argmax(1)).long()
    env = torch.arange(n) % 2
    attrs = {t: torch.randint(0, 2, (n,), generator=g) for t in ("independent", "causal", "confounded", "selected")}
    data = ArrayDataset(x, y, env, attrs)
    return DataBundle("tiny", data, data, data, Task("categorical", classes, (features,)),
                      attributes=[Attribute(t, t, 2) for t in attrs], environments=["e0", "e1"])  # type: ignore[arg-type]


def tiny_model(features: int = 8, classes: int = 3) -> nn.Module:
    """A two-layer MLP with the timm-style split."""
    from .models.nets import MLP

    return MLP(features, classes, (16,))


def check_component(kind: str, name: str, options: dict[str, Any] | None = None, exercise: bool = True) -> Component:
    """Check a registered component's metadata, strict config and (if ``exercise``) its contract."""
    cls = registry.get(kind, name)
    kind = kind.replace("_", "-")
    assert cls.summary(), f"{kind} {name!r} needs a docstring whose first line is its summary."
    assert issubclass(cls.Config, ComponentConfig), f"{kind} {name!r}: Config must subclass ComponentConfig."
    assert cls.Config.model_config.get("extra") == "forbid", f"{kind} {name!r}: Config must forbid unknown keys."
    try:
        registry.create(kind, name, {**(options or {}), "definitely_not_an_option": 1})
    except ConfigError:
        pass
    else:
        raise AssertionError(f"{kind} {name!r} accepted an unknown option.")
    for method in REQUIRED_METHODS[kind]:
        assert callable(getattr(cls, method, None)), f"{kind} {name!r} lacks {method}()."
    component = registry.create(kind, name, options)
    if exercise and kind in _EXERCISES:
        _EXERCISES[kind](component)
    return component


def _check_optimizer(factory: Any) -> None:
    torch.manual_seed(0)
    bundle, model = tiny_bundle(), tiny_model()
    opt = factory.build(model, bundle.task)
    assert isinstance(opt, torch.optim.Optimizer), "build() must return a torch.optim.Optimizer."
    before = [p.detach().clone() for p in model.parameters()]
    for batch in BatchLoader(bundle.train, 16):
        if hasattr(opt, "observe"):
            opt.observe(batch)
        loss = bundle.task.nll(model(batch.x), batch.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), "The optimizer did not change the weights."
    assert all(torch.isfinite(p).all() for p in model.parameters()), "The optimizer produced non-finite weights."
    state = opt.state_dict()
    opt.load_state_dict(state)


def _check_regularizer(reg: Any) -> None:
    bundle, model = tiny_bundle(), tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ctx = TrainContext(model, opt, BatchLoader(bundle.train, 32), bundle.task, torch.device("cpu"), 2, lambda m, b: bundle.task.nll(m(b.x), b.y))
    reg.on_train_start(ctx, bundle)
    reg.on_step_start(1, 2)
    batch: Batch = bundle.train[torch.arange(32)]  # type: ignore[index]
    features = model.forward_head(model.forward_features(batch.x), pre_logits=True)
    logits = model.get_classifier()(features)
    penalty = reg.penalty(features, logits, batch)
    assert isinstance(penalty, torch.Tensor) and penalty.dim() == 0, "penalty() must return a scalar tensor."
    assert torch.isfinite(penalty), "penalty() returned a non-finite value."
    if penalty.requires_grad:
        penalty.backward()


def _check_pruner(pruner: Any) -> None:
    torch.manual_seed(0)
    bundle, model = tiny_bundle(), tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = BatchLoader(bundle.train, 16, shuffle=True)
    total = 3 * len(loader)
    ctx = TrainContext(model, opt, loader, bundle.task, torch.device("cpu"), total, lambda m, b: bundle.task.nll(m(b.x), b.y))
    pruner.on_train_start(ctx)
    step = 0
    for _ in range(3):
        for batch in loader:
            step += 1
            bundle.task.nll(model(batch.x), batch.y).backward()
            pruner.on_after_backward(step)
            opt.step()
            pruner.on_step_end(step, total)
            opt.zero_grad()
    pruner.on_train_end()
    params = dict(model.named_parameters())
    for name, mask in pruner.masks().items():
        assert name in params, f"masks() names {name!r}, which is not a parameter."
        assert bool((params[name][~mask.bool()] == 0).all()), f"Pruned weights of {name!r} are not exactly zero."
    report = pruner.sparsity()
    assert "overall" in report and 0 <= report["overall"] <= 1, "sparsity() must report an 'overall' value in [0, 1]."
    pruner.load_state_dict(pruner.state_dict())


def _check_dataset(source: Any) -> None:
    bundle = source.load(seed=0)
    assert isinstance(bundle, DataBundle), "load() must return a DataBundle."
    assert len(bundle.train) > 0, "The training split is empty."  # type: ignore[arg-type]
    batch = next(iter(BatchLoader(bundle.train, 4)))
    assert tuple(batch.x.shape[1:]) == tuple(bundle.input_shape), (
        f"Inputs have shape {tuple(batch.x.shape[1:])}, but the task says {bundle.input_shape}."
    )


def _check_model(builder: Any) -> None:
    from .models import features_and_logits

    model = builder.build((3, 32, 32), 10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        _, logits = features_and_logits(model, x)
    assert out.shape == (2, 10), f"The model outputs {tuple(out.shape)} for 10 classes."
    assert torch.allclose(logits, out, atol=1e-4), "The model's forward_head(forward_features(x)) must equal forward(x)."


_EXERCISES = {
    "optimizer": _check_optimizer,
    "regularizer": _check_regularizer,
    "pruner": _check_pruner,
    "dataset": _check_dataset,
    "model": _check_model,
}
