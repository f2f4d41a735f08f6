"""multiattr-digits and shift-synthetic follow the paper's recipes and declare their metadata."""

import pytest
import torch

from oral6_core import registry
from oral6_core.errors import ConfigError
from oral6_core.testing import check_component


@pytest.mark.parametrize("name", ["multiattr-digits", "shift-synthetic"])
def test_datasets_conform(name):
    check_component("dataset", name)


def agreement(data, attribute):
    return (data.attrs[attribute] == data.y).float().mean().item()


def test_multiattr_digits_colour_agreement_rotation_and_splits():
    splits = registry.create("dataset", "multiattr-digits", {"variant": "colour+rotation"}).load_splits(seed=0)
    train, test = splits.train, splits.test
    assert [a.name for a in splits.attributes] == ["colour", "rotation"]
    assert [a.type for a in splits.attributes] == ["causal", "independent"]
    assert splits.task.input_shape == (2, 12, 12) and splits.task.num_classes == 2
    for env, expected in ((0, 0.9), (1, 0.8)):
        rows = train.env == env
        got = (train.attrs["colour"][rows] == train.y[rows]).float().mean().item()
        assert abs(got - expected) < 0.06
        assert set(train.attrs["rotation"][rows].tolist()) == {env}
    assert abs(agreement(test, "colour") - 0.1) < 0.05
    assert set(test.env.tolist()) == {2} and set(splits.test_val.env.tolist()) == {2}
    assert set(splits.val.env.tolist()) == {0, 1}
    # the image lights exactly the channel of its colour
    lit = splits.train.x.flatten(2).sum(-1) > 0
    assert torch.equal(lit.long().argmax(1), train.attrs["colour"]) and bool((lit.sum(1) == 1).all())
    # label = digit < 5 with 25% noise: chance level of the label given colour-free features is not trivial
    assert 0.35 < train.y.float().mean().item() < 0.65


def test_multiattr_digits_variants_and_bad_options():
    colour = registry.create("dataset", "multiattr-digits", {"variant": "colour"}).load(seed=1)
    rotation = registry.create("dataset", "multiattr-digits", {"variant": "rotation"}).load(seed=1)
    assert [a.name for a in colour.attributes] == ["colour"] and colour.input_shape[0] == 2
    assert [a.name for a in rotation.attributes] == ["rotation"] and rotation.input_shape[0] == 1
    with pytest.raises(ConfigError):
        registry.create("dataset", "multiattr-digits", {"variant": "texture"})
    with pytest.raises(ConfigError, match="train_angles"):
        registry.create("dataset", "multiattr-digits", {"train_angles": [15.0]}).load()


@pytest.mark.parametrize("shift", ["causal", "confounded"])
def test_shift_synthetic_attribute_relation(shift):
    splits = registry.create("dataset", "shift-synthetic", {"shift": shift, "samples_per_env": 2000}).load_splits(seed=0)
    assert splits.attributes[0].type == shift
    train, test = splits.train, splits.test
    train_corr, test_corr = agreement(train, "a"), agreement(test, "a")
    # the attribute predicts the label in training and the relation flips in the test domain
    assert train_corr > 0.6 and test_corr < 0.4
    spurious, a = train.x[:, 4:], train.attrs["a"]
    assert 1.7 < (spurious[a == 1].mean(0) - spurious[a == 0].mean(0)).norm() < 2.3  # means ±μ·u with μ = 1


def test_rotation_by_90_degrees_equals_rot90_and_keeps_the_digit():
    from oral6_cacm.digits_shift import rotate

    x = torch.rand(3, 1, 12, 12)
    assert torch.allclose(rotate(x, 90.0), torch.rot90(x, 1, (2, 3)), atol=1e-5)
    assert torch.allclose(rotate(x, 0.0), x, atol=1e-5)
