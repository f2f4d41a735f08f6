"""Sparse export: CSR layers where sparse enough, identical outputs, the 2:4 helpers and their errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from oral6_core.errors import ConfigError, ShapeError
from oral6_smc.benchmarks import prune_global_magnitude
from oral6_smc.export import CSRLinear, export_sparse, is_two_four, two_four_mask
from oral6_smc.transformer import TinyTransformer


def test_csr_export_swaps_only_sparse_linears_and_keeps_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8)).eval()
    with torch.no_grad():
        model[0].weight.mul_(torch.rand_like(model[0].weight) > 0.95)
    exported, report = export_sparse(model, min_sparsity=0.9)
    assert report == {"0": "csr", "2": "dense"}
    assert isinstance(exported[0], CSRLinear) and isinstance(model[0], nn.Linear)
    x = torch.randn(5, 3, 32)
    with torch.no_grad():
        assert torch.allclose(exported(x), model(x), atol=1e-5)


def test_pruned_transformer_exports_and_predicts_the_same():
    torch.manual_seed(0)
    model = TinyTransformer(16, 8, 10, dim=16, depth=1).eval()
    prune_global_magnitude(model.blocks, 0.95)
    exported, report = export_sparse(model, min_sparsity=0.9)
    assert {report[n] for n in ("blocks.0.qkv", "blocks.0.fc1")} == {"csr"} and report["head"] == "dense"
    x = torch.randint(0, 16, (4, 8))
    with torch.no_grad():
        assert torch.allclose(exported(x), model(x), atol=1e-5)


def test_two_four_mask_keeps_the_two_largest_of_every_four():
    weight = torch.tensor([[1.0, -4.0, 3.0, 0.5, 0.0, 0.1, -0.2, 0.3]])
    mask = two_four_mask(weight)
    assert mask.tolist() == [[False, True, True, False, False, False, True, True]]
    assert is_two_four(weight * mask) and not is_two_four(weight)
    with pytest.raises(ShapeError):
        two_four_mask(torch.ones(2, 6))


def test_bad_export_options_are_config_errors():
    model = nn.Sequential(nn.Linear(8, 8))
    with pytest.raises(ConfigError):
        export_sparse(model, min_sparsity=1.5)
    with pytest.raises(ConfigError):
        export_sparse(model, mode="blocked")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="2:4"):
        export_sparse(model, mode="semi-structured")
