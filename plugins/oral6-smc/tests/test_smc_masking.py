"""The mask engine: exact top-k, allocations, the prunable set and its errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from oral6_core import registry
from oral6_core.errors import ConfigError
from oral6_core.models.nets import MLP
from oral6_smc.masking import erk_densities, exact_topk_mask, layer_counts, select_prunable, topk_masks
from oral6_smc.transformer import TinyTransformer


def test_exact_topk_keeps_exactly_k_even_with_ties():
    scores = torch.tensor([1.0, 3.0, 3.0, 3.0, 0.5, 2.0])
    mask = exact_topk_mask(scores, 2)
    assert int(mask.sum()) == 2
    assert not mask[[0, 4, 5]].any()
    assert int(exact_topk_mask(scores, 0).sum()) == 0 and bool(exact_topk_mask(scores, 6).all())


@pytest.mark.parametrize("allocation", ["global", "uniform", "erk"])
@pytest.mark.parametrize("density", [0.8, 0.36, 0.107])
def test_allocations_keep_exactly_round_density_times_n(allocation, density):
    torch.manual_seed(0)
    scores = {"a": torch.rand(30, 7), "b": torch.rand(64, 64), "c": torch.rand(5, 3, 3, 3)}
    masks = topk_masks(scores, density, allocation)
    total = sum(s.numel() for s in scores.values())
    assert sum(int(m.sum()) for m in masks.values()) == round(density * total)
    assert all(m.shape == scores[n].shape for n, m in masks.items())


def test_global_allocation_uses_one_threshold():
    scores = {"small": torch.full((10,), 0.1), "large": torch.arange(1.0, 11.0)}
    masks = topk_masks(scores, 0.5, "global")
    assert bool(masks["large"].all()) and not masks["small"].any()


def test_uniform_gives_every_layer_the_same_density():
    shapes = [torch.Size([100, 10]), torch.Size([10, 10])]
    assert layer_counts(shapes, 0.3, "uniform") == [300, 30]


def test_erk_density_scales_with_sum_over_product_of_dims():
    shapes = [torch.Size([256, 256]), torch.Size([16, 8])]
    dens = erk_densities(shapes, 0.2)
    sizes = [math.prod(s) for s in shapes]
    assert sum(d * n for d, n in zip(dens, sizes)) == pytest.approx(0.2 * sum(sizes))
    assert dens[1] == 1.0  # the small layer would exceed density 1, so it stays dense
    assert dens[0] < 0.2


def test_prunable_set_excludes_head_biases_and_embeddings_by_default():
    model = TinyTransformer(16, 8, 10, dim=16, depth=1)
    names = set(select_prunable(model))
    assert "head.weight" not in names and "tokens.weight" not in names and "positions.weight" not in names
    assert "blocks.0.qkv.weight" in names and not any(n.endswith("bias") or "norm" in n for n in names)
    both = set(select_prunable(model, prune_embeddings=True, prune_head=True))
    assert {"head.weight", "tokens.weight", "positions.weight"} <= both


def test_include_and_exclude_patterns_filter_and_must_match():
    model = MLP(8, 3, (16, 16))
    assert set(select_prunable(model, include=["body.1.*"])) == {"body.1.weight"}
    assert set(select_prunable(model, exclude=["body.1.*"])) == {"body.3.weight"}
    with pytest.raises(ConfigError, match="matches no parameter"):
        select_prunable(model, exclude=["encoder.*"])
    with pytest.raises(ConfigError, match="no prunable weight"):
        select_prunable(model, include=["body.1.bias"])


@pytest.mark.parametrize("value", [1.0, -0.1, 0.0])
def test_sparsity_outside_open_unit_interval_is_a_config_error(value):
    with pytest.raises(ConfigError, match="pruner.sparsity"):
        registry.create("pruner", "gmp", {"sparsity": value})


def test_unknown_allocation_and_option_are_config_errors():
    with pytest.raises(ConfigError):
        registry.create("pruner", "omp", {"allocation": "layerwise"})
    with pytest.raises(ConfigError):
        registry.create("pruner", "rigl", {"drop_fraction": 0.3})
    with pytest.raises(ConfigError, match="end"):
        registry.create("pruner", "gmp", {"start": 0.8, "end": 0.5})


def test_patterns_matching_nothing_fail_at_train_start():
    from oral6_core.components import TrainContext

    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    pruner = registry.create("pruner", "omp", {"sparsity": 0.5, "include": ["blocks.*"]})
    ctx = TrainContext(model, torch.optim.SGD(model.parameters(), lr=0.1), [], None, torch.device("cpu"), 10, lambda m, b: 0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="blocks"):
        pruner.on_train_start(ctx)
