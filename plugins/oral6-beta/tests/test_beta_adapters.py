"""Adapters: they see no target labels, reach the source model only through the BlackBox, and improve on it.

Algorithm tests use an in-process box on a toy pair; every adapter also runs through a real server.
"""

from __future__ import annotations

import pytest
import torch

from oral6_core import registry
from oral6_core.blackbox import BlackBoxServer, InProcessBlackBox, SourceSpec
from oral6_core.components import Task
from oral6_core.config import TrainConfig
from oral6_core.data import ArrayDataset, DataBundle
from oral6_core.errors import BlackBoxAccessError, DataError
from oral6_core.metrics import evaluate
from oral6_core.models.nets import MLP
from oral6_core.training import fit, seed_everything

from oral6_beta.beta import BETAAdapter
from oral6_beta.networks import TwinNetworks

ADAPTERS = ("source-only", "distill", "dine", "beta")
FAST = {"source-only": {}, "distill": {"epochs": 1}, "dine": {"epochs": 1, "finetune_epochs": 1},
        "beta": {"epochs": 2, "bottleneck_dim": 16, "finetune_epochs": 1}}


def toy_pair(n: int = 300, seed: int = 0) -> tuple[DataBundle, DataBundle]:
    """Three Gaussian classes in 8-D; the target is the source shifted and rotated (a source model gets ~60%)."""
    g = torch.Generator().manual_seed(seed)
    means = 2.5 * torch.eye(3, 8)
    skew = torch.randn(8, 8, generator=g)
    rotation = torch.linalg.matrix_exp(0.35 * (skew - skew.T))

    def draw(shift: float, rot: torch.Tensor) -> ArrayDataset:
        y = torch.arange(n) % 3
        return ArrayDataset((means[y] + torch.randn(n, 8, generator=g)) @ rot + shift, y)

    task = Task("categorical", 3, (8,))
    source = draw(0.0, torch.eye(8))
    return (DataBundle("toy-source", source, None, source, task),
            DataBundle("toy-target", draw(0.4, rotation), None, draw(0.4, rotation), task))


@pytest.fixture(scope="module")
def trained_pair() -> tuple[DataBundle, torch.nn.Module, float]:
    torch.set_num_threads(1)
    source, target = toy_pair()
    seed_everything(0)
    model = MLP(8, 3, (32,))
    fit(model, source, registry.create("optimizer", "adam", {"lr": 1e-2}),
        TrainConfig(epochs=5, progress=False, checkpoint=False, device="cpu"))
    return target, model, evaluate(model, target.test, target.task)["accuracy"]


def test_black_box_refuses_parameter_and_gradient_access_and_counts_queries(trained_pair) -> None:
    _, model, _ = trained_pair
    box = InProcessBlackBox(model, 3, (8,))
    with pytest.raises(BlackBoxAccessError):
        box.parameters()
    with pytest.raises(BlackBoxAccessError):
        box.weight  # noqa: B018
    with pytest.raises(AttributeError):
        box._queries = 0  # type: ignore[misdef]
    x = torch.randn(7, 8, requires_grad=True)
    out = box(x)
    assert not out.requires_grad and box.queries == 7
    assert ((out > 0).sum(1) == 1).all(), "top-1 mode reveals one class per row"


@pytest.mark.parametrize("name", ADAPTERS)
def test_adapters_refuse_labelled_target_data(trained_pair, name: str) -> None:
    target, model, _ = trained_pair
    adapter = registry.create("adapter", name, FAST[name])
    with pytest.raises(DataError, match="without_labels"):
        adapter.adapt(InProcessBlackBox(model, 3, (8,)), target.train, MLP(8, 3, (32,)))


@pytest.mark.parametrize("name", ADAPTERS)
def test_adapters_use_only_unlabelled_inputs_and_count_queries(trained_pair, name: str) -> None:
    target, model, _ = trained_pair
    unlabelled = target.train.without_labels()
    assert (unlabelled.y == -1).all()
    box = InProcessBlackBox(model, 3, (8,))
    seed_everything(0)
    student = registry.create("adapter", name, FAST[name]).adapt(box, unlabelled, MLP(8, 3, (32,)))
    expected = 0 if name == "source-only" else len(unlabelled)
    assert box.queries == expected, "trained adapters query the black box once per target sample"
    assert student(torch.randn(4, 8)).shape == (4, 3)


def test_source_only_predicts_like_the_black_box(trained_pair) -> None:
    target, model, source_accuracy = trained_pair
    box = InProcessBlackBox(model, 3, (8,))
    predictor = registry.create("adapter", "source-only").adapt(box, target.train.without_labels(), MLP(8, 3))
    assert evaluate(predictor, target.test, target.task)["accuracy"] == pytest.approx(source_accuracy)
    assert box.queries == len(target.test)


@pytest.mark.parametrize("name,options", [("dine", {"epochs": 10, "finetune_epochs": 5}),
                                          ("beta", {"epochs": 10, "bottleneck_dim": 32, "finetune_epochs": 5})])
def test_adaptation_improves_target_accuracy_over_the_source_model(trained_pair, name: str, options: dict) -> None:
    target, model, source_accuracy = trained_pair
    seed_everything(0)
    adapted = registry.create("adapter", name, {**options, "backbone_lr_scale": 1.0}).adapt(
        InProcessBlackBox(model, 3, (8,)), target.train.without_labels(), MLP(8, 3, (32,)))
    assert evaluate(adapted, target.test, target.task)["accuracy"] > source_accuracy + 0.03


def test_beta_trains_two_different_networks_and_records_divisions(trained_pair) -> None:
    target, model, _ = trained_pair
    adapter = registry.create("adapter", "beta", {"epochs": 2, "bottleneck_dim": 16, "division": "own", "finetune_epochs": 0})
    seed_everything(0)
    twins = adapter.adapt(InProcessBlackBox(model, 3, (8,)), target.train.without_labels(), MLP(8, 3, (32,)))
    assert isinstance(twins, TwinNetworks) and isinstance(adapter, BETAAdapter)
    first, second = (list(net.parameters())[0] for net in twins.nets)
    assert not torch.allclose(first, second)
    x = torch.randn(5, 8)
    assert torch.allclose(twins(x), (twins.nets[0](x) + twins.nets[1](x)) / 2)
    assert [record.epoch for record in adapter.history] == [1, 2]
    for record in adapter.history:
        for division in record.divisions:
            assert division.easy.shape == (len(target.train),)


def test_beta_discriminator_is_optimised_only_when_alignment_is_on(trained_pair, monkeypatch) -> None:
    from oral6_beta import beta as beta_module

    target, model, _ = trained_pair
    created: list[tuple[torch.nn.Module, torch.Tensor]] = []
    original = beta_module.Discriminator

    def recording(*args, **kwargs):
        discriminator = original(*args, **kwargs)
        created.append((discriminator, torch.cat([p.detach().flatten().clone() for p in discriminator.parameters()])))
        return discriminator

    monkeypatch.setattr(beta_module, "Discriminator", recording)
    moved = {}
    for lambda_t in (0.0, 0.1):
        created.clear()
        seed_everything(0)
        adapter = registry.create("adapter", "beta", {"epochs": 2, "bottleneck_dim": 16, "lambda_t": lambda_t, "tau": 0.5,
                                                     "finetune_epochs": 0})
        adapter.adapt(InProcessBlackBox(model, 3, (8,)), target.train.without_labels(), MLP(8, 3, (32,)))
        assert len(created) == 2, "one discriminator per network"
        moved[lambda_t] = [not torch.equal(torch.cat([p.detach().flatten() for p in d.parameters()]), start)
                           for d, start in created]
    assert moved[0.0] == [False, False]
    assert moved[0.1] == [True, True]


def test_beta_reference_switches_run_and_skip_the_hard_subdomain_loss(trained_pair, monkeypatch) -> None:
    from oral6_beta import beta as beta_module

    target, model, _ = trained_pair
    mse_calls: list[int] = []
    original = beta_module.probability_mse
    monkeypatch.setattr(beta_module, "probability_mse", lambda *a: mse_calls.append(1) or original(*a))
    options = {"epochs": 2, "bottleneck_dim": 16, "finetune_epochs": 0, "tau": 0.5, "rampup_epochs": 0}
    for lambda_u, expect_mse in ((0.0, False), (1.0, True)):
        mse_calls.clear()
        seed_everything(0)
        adapter = registry.create("adapter", "beta", {**options, "lambda_u": lambda_u, "lambda_t": 0.0, "division": "own"})
        adapted = adapter.adapt(InProcessBlackBox(model, 3, (8,)), target.train.without_labels(), MLP(8, 3, (32,)))
        assert torch.isfinite(adapted(torch.randn(4, 8))).all()
        assert bool(mse_calls) == expect_mse


@pytest.fixture(scope="module")
def served_digits():
    """One black-box server (an MLP trained one epoch on digits, top-1) and 200 unlabelled digits for every adapter."""
    torch.set_num_threads(1)
    bundle = registry.create("dataset", "digits").load(0)
    target = bundle.train.subset(torch.arange(200)).without_labels()
    with BlackBoxServer(SourceSpec("digits", {}, "mlp", {"hidden": [32]}, epochs=1)) as server:
        yield server, target, bundle


@pytest.mark.parametrize("name", ADAPTERS)
def test_every_adapter_runs_through_the_black_box_server(served_digits, name: str) -> None:
    server, target, bundle = served_digits
    before = server.queries
    seed_everything(0)
    student = MLP(64, 10, (32,))
    adapted = registry.create("adapter", name, {**FAST[name], "bottleneck_dim": 16} if name != "source-only" else {}).adapt(
        server.client, target, student)
    assert server.queries - before == (0 if name == "source-only" else len(target)), "the server counts every sample once"
    x = bundle.test.x[:50]
    outputs = adapted(x)
    assert outputs.shape == (50, 10) and torch.isfinite(outputs).all()
    if name == "source-only":
        assert torch.equal(outputs.argmax(1), server.client(x).argmax(1))
        assert server.queries - before == 100
