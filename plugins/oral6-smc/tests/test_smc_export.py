"""Sparse export: CSR linear layers and 1×1 convolutions where sparse enough, identical outputs, the 2:4 helpers and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from oral6_core.errors import ConfigError, ShapeError
from oral6_smc.speed import break_even, layer_sparsities, prune_per_layer
from oral6_smc.export import CSRConv1x1, CSRLinear, export_sparse, is_two_four, two_four_mask
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
    prune_per_layer(model.blocks, 0.95)
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


def test_pointwise_convolutions_export_as_linear_maps_and_others_stay_dense():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 32, 1), nn.GELU(), nn.Conv2d(32, 8, 1), nn.Conv2d(8, 8, 3, padding=1),
                          nn.Conv2d(8, 8, 1, stride=2)).eval()
    prune_per_layer(model, 0.9)
    exported, report = export_sparse(model, min_sparsity=0.85)
    assert report == {"0": "csr", "2": "csr"} and isinstance(exported[0], CSRConv1x1)
    assert list(layer_sparsities(model, ["0", "2"]).values()) == pytest.approx([0.9, 0.9], abs=0.01)
    x = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        assert torch.allclose(exported(x), model(x), atol=1e-5)


def test_per_layer_pruning_empties_no_layer():
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 16))
    with torch.no_grad():
        model[2].weight.mul_(1e-3)  # one global threshold would empty this layer
    prune_per_layer(model, 0.9)
    assert all(0.89 < s < 0.91 for s in layer_sparsities(model, ["0", "2"]).values())


def test_nothing_to_export_is_a_clear_error():
    model = nn.Sequential(nn.Linear(8, 8), nn.Conv2d(4, 4, 3))
    with pytest.raises(ConfigError, match=r"Nothing could be exported.*0 \(0.0%\)"):
        export_sparse(model, min_sparsity=0.5)


def test_break_even_interpolates_in_log_speedup():
    rows = [{"sparsity": 0.5, "speedup": 0.5}, {"sparsity": 0.9, "speedup": 2.0}, {"sparsity": 0.95, "speedup": 4.0}]
    assert break_even(rows) == pytest.approx(0.7)
    assert break_even(rows[1:]) is None
