"""CACM's constraint choice and grouping, its guards, and the DG baselines."""

import pytest
import torch

from oral6_cacm.baselines import irm_gradient
from oral6_cacm.constraints import CONSTRAINT_TABLE
from oral6_core import registry
from oral6_core.components import Attribute, Batch, Task
from oral6_core.data import ArrayDataset, DataBundle
from oral6_core.errors import ConfigError, DataError
from oral6_core.testing import check_component, tiny_bundle

NAMES = ["cacm", "cmmd", "mmd", "coral", "irm", "vrex"]


@pytest.mark.parametrize("name", NAMES)
def test_regularizers_conform(name):
    check_component("regularizer", name)


def started(name, bundle, **options):
    reg = registry.create("regularizer", name, options)
    reg.on_train_start(None, bundle)
    return reg


def test_constraint_per_attribute_type_follows_the_table():
    reg = started("cacm", tiny_bundle())
    plans = {p.attribute: p for p in reg.plans}
    for attribute_type, given in CONSTRAINT_TABLE.items():
        assert plans[attribute_type].conditioning == given and plans[attribute_type].per_environment
    assert plans["causal"].describe() == "g(x) ⊥ causal | Y, E"
    assert plans["confounded"].describe() == "g(x) ⊥ confounded | E"
    assert plans["causal"].weight == 100.0 and plans["independent"].weight == 10.0


def test_types_from_metadata_can_be_overridden():
    reg = started("cacm", tiny_bundle(), attribute_types={"causal": "independent"}, grouping="pooled")
    plan = next(p for p in reg.plans if p.attribute == "causal")
    assert plan.conditioning == () and not plan.per_environment and plan.describe() == "g(x) ⊥ causal"


def toy_bundle(x, y, env, attrs, types):
    data = ArrayDataset(x, y, env, attrs)
    attributes = [Attribute(n, t, int(attrs[n].max()) + 1) for n, t in types.items()]
    return DataBundle("toy", data, None, None, Task("categorical", 2, (x.shape[1],)), attributes, ["e0", "e1"])


def test_conditional_grouping_uses_y():
    # the representation is Y plus noise; A agrees with Y 80% of the time
    g = torch.Generator().manual_seed(0)
    n = 400
    y = torch.randint(0, 2, (n,), generator=g)
    a = y ^ (torch.rand(n, generator=g) < 0.2).long()
    env = torch.arange(n) % 2
    rep = y.float()[:, None] * 3 + 0.3 * torch.randn(n, 1, generator=g)
    batch = Batch(rep, y, env, {"a": a})
    causal = started("cacm", toy_bundle(rep, y, env, {"a": a}, {"a": "causal"}), lambda_causal=1.0, gamma=1.0)
    unconditional = started("cacm", toy_bundle(rep, y, env, {"a": a}, {"a": "independent"}), lambda_independent=1.0, gamma=1.0)
    given_y = causal.penalty(rep, rep, batch).item()
    marginal = unconditional.penalty(rep, rep, batch).item()
    assert marginal > 0.2 and given_y < 0.05 * marginal


def test_per_environment_grouping_conditions_on_e():
    # the representation is E plus noise and A's distribution differs by environment
    g = torch.Generator().manual_seed(1)
    n = 400
    env = torch.arange(n) % 2
    a = (torch.rand(n, generator=g) < torch.where(env == 0, 0.8, 0.2)).long()
    y = torch.randint(0, 2, (n,), generator=g)
    rep = env.float()[:, None] * 3 + 0.3 * torch.randn(n, 1, generator=g)
    batch = Batch(rep, y, env, {"a": a})
    bundle = toy_bundle(rep, y, env, {"a": a}, {"a": "independent"})
    per_env = started("cacm", bundle, gamma=1.0).penalty(rep, rep, batch).item()
    pooled = started("cacm", bundle, gamma=1.0, grouping="pooled").penalty(rep, rep, batch).item()
    assert pooled > 1.0 and per_env < 0.05 * pooled


def test_attribute_equal_to_environment_is_pooled_or_refused():
    g = torch.Generator().manual_seed(2)
    n = 64
    env = torch.arange(n) % 2
    x = torch.randn(n, 3, generator=g) + env[:, None]
    y = torch.randint(0, 2, (n,), generator=g)
    bundle = toy_bundle(x, y, env, {"rot": env.clone()}, {"rot": "independent"})
    with pytest.raises(ConfigError, match="coincides with the environment"):
        started("cacm", bundle, constant_within_environment="error")
    with pytest.warns(UserWarning, match="compared across environments"):
        reg = started("cacm", bundle)
    assert not reg.plans[0].per_environment
    assert reg.penalty(x, x, bundle.train[torch.arange(n)]).item() > 0


def test_degenerate_groups_give_zero_and_warn_once():
    n = 16
    env = torch.arange(n) % 2
    attrs = {"a": torch.arange(n) % 2 ^ (torch.arange(n) // 2 % 2)}
    x, y = torch.randn(n, 2), torch.randint(0, 2, (n,))
    reg = started("cacm", toy_bundle(x, y, env, attrs, {"a": "independent"}))
    single = Batch(x[:4], y[:4], torch.zeros(4, dtype=torch.long), {"a": torch.zeros(4, dtype=torch.long)})
    with pytest.warns(UserWarning, match="single value") as record:
        first = reg.penalty(single.x, single.x, single)
        second = reg.penalty(single.x, single.x, single)
    assert first.item() == 0.0 and second.item() == 0.0 and len(record) == 1


def test_bad_attribute_type_and_missing_attributes_are_clear_errors():
    with pytest.raises(ConfigError, match="attribute_types"):
        registry.create("regularizer", "cacm", {"attribute_types": {"causal": "spurious"}})
    with pytest.raises(ConfigError, match="has no attribute 'colour'"):
        started("cacm", tiny_bundle(), attribute_types={"colour": "causal"})
    plain = DataBundle("plain", ArrayDataset(torch.randn(4, 2), torch.zeros(4, dtype=torch.long)), None, None, Task())
    with pytest.raises(ConfigError, match="declares no attributes"):
        started("cacm", plain)
    with pytest.raises(DataError, match="several training environments"):
        started("irm", plain)
    reg = started("cacm", tiny_bundle())
    batch = tiny_bundle().train[torch.arange(8)]
    with pytest.raises(DataError, match="batch has no attribute"):
        reg.penalty(batch.x, batch.x, Batch(batch.x, batch.y, batch.env, {}))
    with pytest.raises(DataError, match="environment labels"):
        started("mmd", tiny_bundle()).penalty(batch.x, batch.x, Batch(batch.x, batch.y))


def test_graph_option_derives_conditioning_sets():
    edges = ["Xc->Y", "Y->causal", "C->Y", "C->confounded", "E->independent", "E->selected"]
    reg = started("cacm", tiny_bundle(), graph=edges, attributes=["independent", "causal", "confounded"])
    assert {p.attribute: p.conditioning for p in reg.plans} == {"independent": (), "causal": ("Y",), "confounded": ()}
    selected = started("cacm", tiny_bundle(), graph=[*edges[:2], "Y->S", "selected->S"], selection=["S"], attributes=["selected"])
    assert selected.plans[0].conditioning == ("Y",)
    # selecting on S (a descendant of the collider Y) opens Xc -> Y <- C -> confounded: no valid constraint is left
    with pytest.raises(ConfigError, match="d-separates Xc from attribute 'confounded'"):
        started("cacm", tiny_bundle(), graph=[*edges, "Y->S", "selected->S"], selection=["S"])


def test_cmmd_default_conditions_environment_on_y_and_attribute_mode_on_every_attribute():
    reg = started("cmmd", tiny_bundle(), domain="attributes")
    assert all(p.conditioning == ("Y",) for p in reg.plans)
    assert started("cmmd", tiny_bundle()).report()[0]["constraint"] == "g(x) ⊥ E | Y"


def test_irm_closed_form_matches_autograd():
    g = torch.Generator().manual_seed(3)
    logits, y = torch.randn(10, 3, generator=g), torch.randint(0, 3, (10,), generator=g)
    scale = torch.ones((), requires_grad=True)
    (expected,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits * scale, y), [scale])
    assert torch.allclose(irm_gradient(logits, y), expected, atol=1e-6)


def test_irm_and_vrex_anneal_and_vrex_is_risk_variance():
    bundle = tiny_bundle()
    batch = bundle.train[torch.arange(32)]
    logits = torch.randn(32, 3)
    for name in ("irm", "vrex"):
        reg = started(name, bundle, anneal_steps=5, weight=50.0)
        reg.on_step_start(5, 10)
        early = reg.penalty(logits, logits, batch)
        reg.on_step_start(6, 10)
        assert torch.allclose(reg.penalty(logits, logits, batch), 50 * early)
    risks = torch.stack([torch.nn.functional.cross_entropy(logits[batch.env == e], batch.y[batch.env == e]) for e in (0, 1)])
    reg = started("vrex", bundle, anneal_steps=0, weight=1.0)
    reg.on_step_start(1, 1)
    assert torch.allclose(reg.penalty(logits, logits, batch), risks.var(unbiased=False))


def test_mmd_and_coral_vanish_for_identical_environments():
    x = torch.randn(16, 4)
    rep = torch.cat([x, x])
    batch = Batch(rep, torch.zeros(32, dtype=torch.long), torch.arange(32) // 16, {})
    bundle = tiny_bundle()
    for name in ("mmd", "coral"):
        assert abs(started(name, bundle).penalty(rep, rep, batch).item()) < 1e-5
        assert started(name, bundle).penalty(rep + torch.arange(32)[:, None] // 16, rep, batch).item() > 1e-3
