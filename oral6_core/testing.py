"""Conformance checks a plugin author calls on each component: ``check_component(kind, name, options)``,
and on every combination of the installed training components: ``check_compositions()``.

Each check builds the component from ``options`` (defaults for the rest), checks the strict config,
and exercises the kind's contract on a tiny model, raising ``AssertionError`` with the reason when it
does not hold. For optimizers, regularizers and pruners it then repeats the exercise with every other
choice of each ``Literal`` option and the flip of each boolean option, and checks what the training
loop relies on: learning-rate writes to ``param_groups``, resuming from ``state_dict()`` into a fresh
instance, and (regularizers) a penalty with a gradient with respect to the weights.
"""

from __future__ import annotations

import copy
import typing
from typing import Any, Callable, Literal

import torch
from torch import nn

from . import registry
from .components import Batch, Component, Task, TrainContext
from .compositions import check_compositions
from .testing_workflows import WORKFLOW_EXERCISES, WorkflowInputs, tiny_images, tiny_search_task, tiny_stream
from .config import ComponentConfig
from .data import BatchLoader, DataBundle
from .errors import ConfigError

__all__ = ["WorkflowInputs", "check_component", "check_compositions", "option_variants", "tiny_bundle", "tiny_images", "tiny_model",
           "tiny_search_task", "tiny_stream"]

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


def tiny_bundle(n: int = 64, features: int = 8, classes: int = 3, seed: int = 0, environments: bool = True) -> DataBundle:
    """A linearly separable toy problem with two environments and one attribute of each type.

    With ``environments=False`` it is ``tiny-plain``: the same inputs and labels, one environment, no attributes.
    """
    from .components import ATTRIBUTE_TYPES, Attribute
    from .data import ArrayDataset

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = (x[:, :classes].argmax(1)).long()
    task = Task("categorical", classes, (features,))
    if not environments:
        plain = ArrayDataset(x, y)
        return DataBundle("tiny-plain", plain, plain, plain, task)
    env = torch.arange(n) % 2
    attrs = {t: torch.randint(0, 2, (n,), generator=g) for t in ATTRIBUTE_TYPES}
    data = ArrayDataset(x, y, env, attrs)
    return DataBundle("tiny", data, data, data, task, attributes=[Attribute(t, t, 2) for t in ATTRIBUTE_TYPES],
                      environments=["e0", "e1"])


def tiny_model(features: int = 8, classes: int = 3) -> nn.Module:
    """A two-layer MLP with the timm-style split."""
    from .models.nets import MLP

    return MLP(features, classes, (16,))


def check_component(kind: str, name: str, options: dict[str, Any] | None = None, exercise: bool = True,
                    inputs: WorkflowInputs | None = None) -> Component:
    """Check a registered component's metadata, strict config and (if ``exercise``) its contract.

    ``inputs`` gives a predictor, representation or generative model what it runs on (see ``WorkflowInputs``).
    """
    cls = registry.get(kind, name)
    kind = kind.replace("_", "-")
    assert cls.summary(), f"{kind} {name!r} needs a docstring whose first line is its summary."
    assert issubclass(cls.Config, ComponentConfig), f"{kind} {name!r}: Config must subclass ComponentConfig."
    try:
        registry.create(kind, name, {**(options or {}), "definitely_not_an_option": 1})
    except ConfigError:
        pass
    else:
        raise AssertionError(f"{kind} {name!r} accepted an unknown option: its Config must forbid unknown keys.")
    for method in REQUIRED_METHODS[kind]:
        assert callable(getattr(cls, method, None)), f"{kind} {name!r} lacks {method}()."
    component = registry.create(kind, name, options)
    if exercise and kind in WORKFLOW_EXERCISES:
        WORKFLOW_EXERCISES[kind](component, inputs or WorkflowInputs())
    if exercise and kind in _EXERCISES:
        _EXERCISES[kind](component)
        if kind in _VARIED:
            for variant in option_variants(cls.Config, options or {}):
                _exercise_variant(kind, name, variant)
    return component


MAX_VARIANTS = 8
UNVARIED = ("device",)  # options whose other values need hardware the check cannot assume


def option_variants(config_cls: type[ComponentConfig], options: dict[str, Any]) -> list[dict[str, Any]]:
    """``options`` with one option changed: every other ``Literal`` choice, or the flip of a boolean (at most 8)."""
    base = config_cls(**options)
    variants = []
    for key, info in config_cls.model_fields.items():
        if key in UNVARIED:
            continue
        current = getattr(base, key)
        if info.annotation is bool:
            choices: tuple[Any, ...] = (not current,)
        elif typing.get_origin(info.annotation) is Literal:
            choices = tuple(c for c in typing.get_args(info.annotation) if c != current)
        else:
            continue
        variants += [{**options, key: choice} for choice in choices]
    return variants[:MAX_VARIANTS]


def _exercise_variant(kind: str, name: str, options: dict[str, Any]) -> None:
    try:
        component = registry.create(kind, name, options)
    except ConfigError:
        return  # a combination the config itself refuses (with a clear error) is fine
    try:
        _EXERCISES[kind](component)
    except AssertionError as exc:
        raise AssertionError(f"{kind} {name!r} with options {options}: {exc}") from exc
    except Exception as exc:
        raise AssertionError(f"{kind} {name!r} with options {options} crashed: {type(exc).__name__}: {exc}") from exc


def _optimizer_steps(opt: torch.optim.Optimizer, model: nn.Module, bundle: DataBundle, batches: list[Batch], seed: int = 0) -> None:
    """Training steps as the loop takes them: ``observe``, backward, ``step``, ``zero_grad`` (seeded, for exact repeats)."""
    torch.manual_seed(seed)
    for batch in batches:
        if hasattr(opt, "observe"):
            opt.observe(batch)
        loss = bundle.task.nll(model(batch.x), batch.y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _check_optimizer(factory: Any) -> None:
    torch.manual_seed(0)
    bundle, model = tiny_bundle(), tiny_model()
    opt = factory.build(model, bundle.task)
    assert isinstance(opt, torch.optim.Optimizer), "build() must return a torch.optim.Optimizer."
    before = [p.detach().clone() for p in model.parameters()]
    batches = list(BatchLoader(bundle.train, 16))
    _optimizer_steps(opt, model, bundle, batches)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), "The optimizer did not change the weights."
    assert all(torch.isfinite(p).all() for p in model.parameters()), "The optimizer produced non-finite weights."
    params = {id(p) for p in model.parameters()}
    assert all(id(p) in params for p in opt.state), (
        "optimizer.state must be keyed by the model's parameters (pruners zero the state of pruned weights there).")

    # resume: a fresh instance loads state_dict() and takes exactly the step the original takes
    resumed_model = copy.deepcopy(model)
    resumed = registry.create("optimizer", factory.name, factory.config.model_dump()).build(resumed_model, bundle.task)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
    _optimizer_steps(opt, model, bundle, batches[:1], seed=1)
    _optimizer_steps(resumed, resumed_model, bundle, batches[:1], seed=1)
    for (key, a), b in zip(model.named_parameters(), resumed_model.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), (
            f"After load_state_dict() into a fresh optimizer, the next step differs ({key}): state_dict() must hold "
            "everything step() uses, so that `oral6 train --resume` continues exactly.")

    # the loop's learning-rate schedule writes param_groups[i]["lr"]; with 0 a step must leave the weights alone
    for group in opt.param_groups:
        group["lr"] = 0.0
    frozen = [p.detach().clone() for p in model.parameters()]
    _optimizer_steps(opt, model, bundle, batches[:1], seed=2)
    assert all(torch.equal(a, b) for a, b in zip(frozen, model.parameters())), (
        'With every param_groups[i]["lr"] set to 0 a step still changed the weights: the training loop schedules the '
        "learning rate by writing param_groups, which step() must read.")


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
    if not penalty.requires_grad and float(penalty) == 0:
        return  # no penalty on this batch (or the 'none' regularizer)
    assert penalty.requires_grad, "penalty() is detached from the weights (computed with .item(), .detach() or numpy?)."
    penalty.backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters()), (
        "penalty() has no gradient with respect to the model's weights, so it cannot change training.")


def _check_pruner(pruner: Any) -> None:
    torch.manual_seed(0)
    bundle, model = tiny_bundle(), tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = BatchLoader(bundle.train, 16, shuffle=True)
    total = 3 * len(loader)
    ctx = TrainContext(model, opt, loader, bundle.task, torch.device("cpu"), total, lambda m, b: bundle.task.nll(m(b.x), b.y))
    pruner.on_train_start(ctx)
    step = 0
    for epoch in range(3):
        for batch in loader:
            step += 1
            bundle.task.nll(model(batch.x), batch.y).backward()
            pruner.on_after_backward(step)
            opt.step()
            pruner.on_step_end(step, total)
            opt.zero_grad()
        if epoch == 0:
            _check_pruner_resume(pruner, model, opt, loader, total, step, ctx.loss_fn)
    pruner.on_train_end()
    params = dict(model.named_parameters())
    for name, mask in pruner.masks().items():
        assert name in params, f"masks() names {name!r}, which is not a parameter."
        assert bool((params[name][~mask.bool()] == 0).all()), f"Pruned weights of {name!r} are not exactly zero."
    report = pruner.sparsity()
    assert "overall" in report and 0 <= report["overall"] <= 1, "sparsity() must report an 'overall' value in [0, 1]."
    pruner.load_state_dict(pruner.state_dict())


def _check_pruner_resume(pruner: Any, model: nn.Module, opt: torch.optim.Optimizer, loader: BatchLoader, total: int, step: int,
                         loss_fn: Callable[..., torch.Tensor]) -> None:
    """As ``--resume`` does: a fresh pruner gets ``on_train_start`` then ``load_state_dict``; the next step must match."""
    bundle = tiny_bundle()
    twin = copy.deepcopy(model)
    twin_opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    fresh = registry.create("pruner", pruner.name, pruner.config.model_dump())
    fresh.on_train_start(TrainContext(twin, twin_opt, loader, bundle.task, torch.device("cpu"), total, loss_fn))
    fresh.load_state_dict(copy.deepcopy(pruner.state_dict()))
    batch = next(iter(loader))
    for p, net, optimizer in ((pruner, model, opt), (fresh, twin, twin_opt)):
        torch.manual_seed(3)
        bundle.task.nll(net(batch.x), batch.y).backward()
        p.on_after_backward(step + 1)
        optimizer.step()
        p.on_step_end(step + 1, total)
        optimizer.zero_grad()
    for (key, a), b in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), (
            f"A fresh pruner given load_state_dict(state_dict()) takes a different next step ({key}): the state must "
            "hold the masks and everything the schedule needs, so that `oral6 train --resume` continues exactly.")


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


_VARIED = ("optimizer", "regularizer", "pruner")
_EXERCISES = {
    "optimizer": _check_optimizer,
    "regularizer": _check_regularizer,
    "pruner": _check_pruner,
    "dataset": _check_dataset,
    "model": _check_model,
}
