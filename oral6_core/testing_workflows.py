"""Conformance exercises of the workflow kinds: predictors, adapters, representations and generative models.

``oral6_core.testing.check_component`` runs them; ``WorkflowInputs`` holds what a component of a
kind may need beyond its options (a search task and meta-dataset for a predictor, the network a
representation represents, the stream a generative model learns), each with a tiny default.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from . import registry
from .blackbox import InProcessBlackBox
from .components import Adapter, Candidate, Environment, GenerativeModel, Predictor, Representation, SearchTask, Task
from .data import ArrayDataset, DataBundle

QUERIES_PER_SAMPLE = 10  # the adapter kit's query budget, per target sample


@dataclass
class WorkflowInputs:
    """What the workflow kinds' checks run on; ``None`` picks the tiny default named in each field.

    ``task``: a predictor's ``SearchTask`` (``tiny_search_task()``, a cnn teacher); ``meta_data``: what the
    predictor's ``fit`` reads (training-free predictors take ``None``); ``network``: the model builder and
    options of the network a representation represents (``("resnet20", {"width": 2})`` on 3×8×8 images);
    ``stream``: a generative model's environments (``tiny_stream()``, two environments of 1×32×32 squares).
    """

    task: SearchTask | None = None
    meta_data: Any = None
    network: tuple[str, dict[str, Any]] | None = None
    stream: Sequence[Environment] | None = None


def tiny_images(n: int = 48, shape: tuple[int, ...] = (1, 8, 8), classes: int = 3, shift: float = 0.0, seed: int = 0) -> DataBundle:
    """Images whose class is the brightest of ``classes`` horizontal bands, plus noise; ``shift`` adds a constant (a domain shift)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = 0.3 * torch.randn(n, *shape, generator=g) + shift
    bands = torch.arange(shape[-2]) * classes // shape[-2]
    x += (bands[None, :, None] == y[:, None, None]).float()[:, None]
    data = ArrayDataset(x, y)
    return DataBundle("tiny-images", data, data, data, Task("categorical", classes, shape))


def tiny_search_task(model: str = "cnn", options: dict[str, Any] | None = None, classes: int = 3) -> SearchTask:
    """A ``SearchTask`` on ``tiny_images`` with an untrained teacher from a model builder (seeded)."""
    from .metrics import evaluate

    bundle = tiny_images(classes=classes)
    torch.manual_seed(0)
    teacher = registry.create("model", model, options).build(bundle.input_shape, classes).eval()
    accuracy = evaluate(teacher, bundle.val, bundle.task, torch.device("cpu"))["accuracy"]  # type: ignore[arg-type]
    return SearchTask(bundle, teacher, accuracy)


def tiny_stream(n: int = 64, side: int = 32, seed: int = 0) -> list[Environment]:
    """Two environments of white squares on black: position varies in the first, size in the second (factors in ``y``)."""
    g = torch.Generator().manual_seed(seed)
    environments = []
    for name, varying in (("position", ["x"]), ("size", ["size"])):
        pos = torch.randint(0, 4, (n,), generator=g) if varying == ["x"] else torch.full((n,), 2)
        size = torch.randint(0, 4, (n,), generator=g) if varying == ["size"] else torch.full((n,), 1)
        x = torch.zeros(n, 1, side, side)
        for i in range(n):
            width, left = 4 + 2 * int(size[i]), 4 + 5 * int(pos[i])
            x[i, 0, 10 : 10 + width, left : left + width] = 1.0
        environments.append(Environment(name, ArrayDataset(x, torch.stack([pos, size], 1)), ["x", "size"], varying))
    return environments


def _fresh(component: Any, kind: str) -> Any:
    return registry.create(kind, component.name, component.config.model_dump())


def check_predictor(predictor: Predictor, inputs: WorkflowInputs) -> None:
    """Fit on the meta-data; one finite score per candidate; a saved and reloaded predictor scores the same."""
    task = inputs.task or tiny_search_task()
    predictor.fit(inputs.meta_data)
    candidates = predictor.candidates(task)[:6]
    assert candidates and all(isinstance(c, Candidate) for c in candidates), "candidates(task) must return Candidate objects."
    assert all(c.num_params > 0 and c.describe() for c in candidates), "Each candidate needs num_params > 0 and a describe() text."
    scores = predictor.predict(candidates, task)
    assert isinstance(scores, torch.Tensor) and tuple(scores.shape) == (len(candidates),), (
        f"predict() must return one score per candidate (shape ({len(candidates)},)), not {getattr(scores, 'shape', type(scores))}.")
    assert bool(torch.isfinite(scores).all()), "predict() returned a non-finite score."
    for candidate in candidates:
        _check_model_spec(candidate, task)
    with tempfile.TemporaryDirectory() as tmp:
        predictor.save(Path(tmp) / "predictor")
        reloaded = _fresh(predictor, "predictor")
        reloaded.load(Path(tmp) / "predictor")
    again = reloaded.predict(candidates, task)
    assert torch.allclose(again.float(), scores.float(), rtol=1e-5, atol=1e-6), (
        "A fresh predictor given load() of what save() wrote scores the candidates differently: save() must hold all it predicts with.")


def _check_model_spec(candidate: Candidate, task: SearchTask) -> None:
    """A candidate's ``model_spec`` (when it has one) must build a network of its size."""
    spec = candidate.model_spec()
    if spec is None:
        return
    net = registry.create("model", spec[0], spec[1]).build(task.bundle.input_shape, task.bundle.num_classes)
    size = sum(p.numel() for p in net.parameters())
    assert size == candidate.num_params, (
        f"Candidate {candidate.describe()!r}: model_spec() {spec} builds {size} parameters, but num_params says {candidate.num_params}.")


def check_adapter(adapter: Adapter, inputs: WorkflowInputs) -> None:
    """Adapt a student to a shifted target through an in-process black box, within 10 queries per target sample."""
    from .training import fit

    source, target = tiny_images(), tiny_images(shift=0.5, seed=1)
    torch.manual_seed(0)
    teacher = registry.create("model", "mlp").build(source.input_shape, source.num_classes)
    fit(teacher, source, registry.create("optimizer", "adam", {"lr": 1e-2}), _quiet_train(epochs=5))
    box = InProcessBlackBox(teacher, source.num_classes, source.input_shape, mode="topk", k=1)
    student = registry.create("model", "mlp").build(target.input_shape, target.num_classes)
    unlabelled = target.train.without_labels()  # type: ignore[union-attr]
    adapted = adapter.adapt(box, unlabelled, student)
    assert isinstance(adapted, nn.Module), "adapt() must return the adapted student (an nn.Module)."
    with torch.no_grad():
        out = adapted.eval()(target.test.x)  # type: ignore[union-attr]
    assert tuple(out.shape) == (len(target.test), target.num_classes), f"The adapted student outputs shape {tuple(out.shape)}."  # type: ignore[arg-type]
    assert bool(torch.isfinite(out).all()), "The adapted student outputs non-finite values."
    budget = QUERIES_PER_SAMPLE * len(unlabelled)
    assert 0 < box.queries <= budget, (
        f"The adapter sent {box.queries} samples to the black box; adapting (and predicting) {len(unlabelled)} target samples "
        f"must query it, and within {budget} ({QUERIES_PER_SAMPLE} per sample).")


def _quiet_train(epochs: int) -> Any:
    from .config import TrainConfig

    return TrainConfig(epochs=epochs, batch_size=16, device="cpu", progress=False)


def check_representation(rep: Representation, inputs: WorkflowInputs) -> None:
    """Fit a tiny network; the rebuilt network has its outputs' shape; save then load rebuilds identical outputs."""
    builder, options = inputs.network or ("resnet20", {"width": 2})
    bundle = tiny_images(shape=(3, 8, 8), classes=4)
    torch.manual_seed(0)
    net = registry.create("model", builder, options).build(bundle.input_shape, bundle.num_classes).eval()
    rep.set_source(builder, dict(options), bundle.input_shape)
    rep.fit(copy.deepcopy(net), bundle)
    x = bundle.test.x  # type: ignore[union-attr]
    with torch.no_grad():
        rebuilt = rep.reconstruct().eval()(x)
    assert tuple(rebuilt.shape) == (len(x), bundle.num_classes) and bool(torch.isfinite(rebuilt).all()), (
        f"The reconstructed network outputs shape {tuple(rebuilt.shape)} (or non-finite values) for {bundle.num_classes} classes.")
    represented, size = rep.represented_parameters(), rep.num_parameters()
    assert 0 < represented <= sum(p.numel() for p in net.parameters()), (
        f"represented_parameters() is {represented}: it counts the network's parameters the representation stands for.")
    assert size > 0, "num_parameters() must count the representation's own parameters."
    with tempfile.TemporaryDirectory() as tmp:
        rep.save(Path(tmp) / "representation.pt")
        reloaded = _fresh(rep, "representation")
        reloaded.load(Path(tmp) / "representation.pt")
    with torch.no_grad():
        again = reloaded.reconstruct().eval()(x)
    assert torch.equal(again, rebuilt), "A fresh representation given load() of what save() wrote rebuilds another network."


def check_generative(model: GenerativeModel, inputs: WorkflowInputs) -> None:
    """Fit a two-environment stream (a callback after each); encode, decode and sample have consistent shapes."""
    stream = list(inputs.stream or tiny_stream())
    seen: list[tuple[int, str]] = []
    model.fit(stream, lambda index, env: seen.append((index, env.name)))
    assert seen == [(k, env.name) for k, env in enumerate(stream)], (
        f"fit() must call on_environment_end(index, environment) once per environment in order; it called {seen}.")
    x = stream[0].data.x[:5]  # type: ignore[attr-defined]
    with torch.no_grad():
        z = model.encode(x)
        assert z.dim() == 2 and z.shape[0] == len(x) and bool(torch.isfinite(z).all()), (
            f"encode() must return one finite code vector per input ([N, D]), not shape {tuple(z.shape)}.")
        decoded, samples = model.decode(z), model.sample(3)
    assert tuple(decoded.shape) == tuple(x.shape), f"decode(encode(x)) has shape {tuple(decoded.shape)}, the inputs {tuple(x.shape)}."
    assert tuple(samples.shape) == (3, *x.shape[1:]) and bool(torch.isfinite(samples).all()), (
        f"sample(3) must return 3 finite inputs shaped {tuple(x.shape[1:])}, not {tuple(samples.shape)}.")


WORKFLOW_EXERCISES = {
    "predictor": check_predictor,
    "adapter": check_adapter,
    "representation": check_representation,
    "generative-model": check_generative,
}
