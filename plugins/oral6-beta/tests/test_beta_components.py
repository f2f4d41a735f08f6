"""Datasets, networks and registration: shapes, ranges, conformance and the pieces BETA is built from."""

from __future__ import annotations

import pytest
import torch

from oral6_core import registry
from oral6_core.errors import ConfigError
from oral6_core.models import features_and_logits
from oral6_core.models.nets import SmallCNN
from oral6_core.testing import check_component

from oral6_beta.augment import Views
from oral6_beta.networks import attach_bottleneck, reinitialised_copy, reverse_gradient


@pytest.mark.parametrize("kind,name", [("adapter", "source-only"), ("adapter", "distill"), ("adapter", "dine"),
                                       ("adapter", "beta"), ("benchmark", "beta-digits")])
def test_components_conform(kind: str, name: str) -> None:
    check_component(kind, name)


@pytest.mark.parametrize("name", ["printed-digits", "shapes-a", "shapes-b"])
def test_datasets_conform(name: str) -> None:
    check_component("dataset", name, {"per_class": 6})


def test_printed_digits_match_the_handwritten_digits_format() -> None:
    printed = registry.create("dataset", "printed-digits", {"per_class": 8}).load()
    handwritten = registry.create("dataset", "digits").load()
    assert printed.input_shape == handwritten.input_shape == (1, 8, 8)
    assert printed.num_classes == handwritten.num_classes == 10
    x = torch.cat([printed.train.x, printed.test.x])
    assert x.min() >= 0 and x.max() <= 1
    assert torch.bincount(torch.cat([printed.train.y, printed.test.y, printed.val.y]), minlength=10).tolist() == [8] * 10
    again = registry.create("dataset", "printed-digits", {"per_class": 8}).load()
    assert torch.equal(again.train.x, printed.train.x), "rendering is deterministic"
    other = registry.create("dataset", "printed-digits", {"per_class": 8, "render_seed": 1}).load()
    assert not torch.equal(other.train.x, printed.train.x)


def test_shape_styles_share_format_but_differ_in_appearance() -> None:
    a = registry.create("dataset", "shapes-a", {"per_class": 10}).load()
    b = registry.create("dataset", "shapes-b", {"per_class": 10}).load()
    assert a.input_shape == b.input_shape == (1, 16, 16) and a.num_classes == b.num_classes == 5
    # Solid fills put more ink inside the shape than striped outlines: the styles differ on average.
    assert (a.train.x.mean() - b.train.x.mean()).abs() > 0.01 or (a.train.x.std() - b.train.x.std()).abs() > 0.01


def test_bad_dataset_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        registry.create("dataset", "printed-digits", {"per_class": 0})


def test_bottleneck_network_follows_the_timm_split_and_trains_the_right_groups() -> None:
    student = SmallCNN(1, 10, (4, 8))
    net = attach_bottleneck(student, torch.rand(3, 1, 8, 8), num_classes=10, bottleneck_dim=12)
    x = torch.rand(2, 1, 8, 8)
    features, logits = features_and_logits(net.eval(), x)
    assert features.shape == (2, 12) and logits.shape == (2, 10)
    assert torch.allclose(logits, net(x))
    head_ids = {id(p) for p in student.head.parameters()}
    assert not head_ids & {id(p) for p in net.backbone_parameters()}, "the student's unused head is not trained"


def test_reinitialised_copy_has_new_weights_and_the_same_architecture() -> None:
    torch.manual_seed(0)
    student = SmallCNN(1, 10, (4, 8))
    twin = reinitialised_copy(student)
    assert [p.shape for p in twin.parameters()] == [p.shape for p in student.parameters()]
    assert not torch.allclose(next(twin.parameters()), next(student.parameters()))


def test_gradient_reversal_flips_and_scales_the_gradient() -> None:
    x = torch.randn(3, requires_grad=True)
    reverse_gradient(x, 0.5).sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), -0.5))
    assert torch.equal(reverse_gradient(x, 0.5), x)


def test_views_keep_shape_range_and_change_the_images() -> None:
    torch.manual_seed(0)
    x = torch.rand(20, 1, 8, 8)
    views = Views()
    weak, strong = views.weak(x), views.strong(x)
    for view in (weak, strong):
        assert view.shape == x.shape and view.min() >= 0 and view.max() <= 1
        assert not torch.equal(view, x)
    assert torch.equal(Views(enabled=False).strong(x), x)
    flat = torch.rand(4, 8)
    assert torch.equal(views.weak(flat), flat), "non-image inputs pass through unchanged"
