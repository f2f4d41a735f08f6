"""Which independence constraint each attribute gets: the paper's table, or d-separation on a given graph."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from oral6_core.components import Attribute
from oral6_core.data import DataBundle
from oral6_core.errors import ConfigError

from .graph import ENV, LABEL, CausalGraph, conditioning_set

ATTRIBUTE_TYPES = ("independent", "causal", "confounded", "selected")

CONSTRAINT_TABLE: dict[str, tuple[str, ...]] = {
    "independent": (),
    "causal": (LABEL,),
    "confounded": (),
    "selected": (LABEL,),
}
"""Conditioning set per attribute type: g(x) ⊥ A_ind, g(x) ⊥ A_cause | Y, g(x) ⊥ A_conf, g(x) ⊥ A_sel | Y (each also | E per environment)."""


@dataclass(frozen=True)
class AttributePlan:
    """The constraint on one attribute: g(x) ⊥ A | conditioning (∪ E when ``per_environment``), weighted by ``weight``."""

    attribute: str
    type: str
    conditioning: tuple[str, ...]
    per_environment: bool
    weight: float
    source: str
    pooled_as_environment: bool = False

    def describe(self) -> str:
        """The constraint in the paper's notation, e.g. ``g(x) ⊥ colour | Y, E``."""
        given = [*self.conditioning, *([ENV] if self.per_environment else [])]
        return f"g(x) ⊥ {self.attribute}" + (f" | {', '.join(given)}" if given else "")


def resolve_attributes(bundle: DataBundle, overrides: Mapping[str, str], selected: Sequence[str] | None) -> list[Attribute]:
    """The bundle's attributes with types overridden by options; unknown names are a ``ConfigError``."""
    declared = {a.name: a for a in bundle.attributes}
    if not declared:
        raise ConfigError(
            f"Dataset {bundle.name!r} declares no attributes, so CACM has nothing to constrain. Use a dataset with "
            f"attributes and environments, e.g. --dataset multiattr-digits or --dataset shift-synthetic."
        )
    for name in [*overrides, *(selected or [])]:
        if name not in declared:
            raise ConfigError(
                f"Dataset {bundle.name!r} has no attribute {name!r}; its attributes are {sorted(declared)}. "
                f"Fix regularizer.attribute_types / regularizer.attributes."
            )
    names = list(selected) if selected else list(declared)
    return [Attribute(n, overrides.get(n, declared[n].type), declared[n].num_values) for n in names]  # type: ignore[arg-type]


def constant_within_environments(bundle: DataBundle) -> set[str]:
    """Attributes that take a single value inside every training environment (A coincides with E)."""
    train = bundle.train
    env = getattr(train, "env", None)
    attrs = getattr(train, "attrs", None)
    if env is None or attrs is None:
        return set()
    found = set()
    for name, values in attrs.items():
        if all(torch.unique(values[env == e]).numel() <= 1 for e in torch.unique(env)):
            found.add(name)
    return found


def plan_constraints(
    attributes: Sequence[Attribute],
    weights: Mapping[str, float],
    per_environment: bool,
    constant_in_env: set[str],
    on_constant: str,
    graph: CausalGraph | None = None,
    selection: Sequence[str] = (),
    fixed_conditioning: tuple[str, ...] | None = None,
) -> list[AttributePlan]:
    """One plan per attribute: its conditioning set from the table, the graph, or ``fixed_conditioning``.

    An attribute constant within each environment makes per-environment grouping vacuous (the penalty
    would be identically zero, i.e. silent ERM): with ``on_constant="pool"`` that attribute is compared
    across environments instead; with ``"error"`` it is a ``ConfigError``.
    """
    plans = []
    names = [a.name for a in attributes]
    for attr in attributes:
        if attr.type not in ATTRIBUTE_TYPES:
            raise ConfigError(f"Attribute {attr.name!r} has type {attr.type!r}; use one of {list(ATTRIBUTE_TYPES)}.")
        per_env = per_environment
        if per_env and attr.name in constant_in_env:
            if on_constant == "error":
                raise ConfigError(
                    f"Attribute {attr.name!r} takes one value inside each training environment (it coincides with the "
                    f"environment), so with per-environment grouping its penalty is identically zero and the run would "
                    f"silently be ERM. Set regularizer.grouping=pooled or regularizer.constant_within_environment=pool."
                )
            per_env = False
        if fixed_conditioning is not None:
            given, source = fixed_conditioning, "fixed"
        elif graph is not None:
            always = [*selection, *([ENV] if per_env else [])]
            candidates = [LABEL, *(n for n in names if n != attr.name)]
            given, source = conditioning_set(graph, attr.name, candidates, always), "graph"
        else:
            given, source = CONSTRAINT_TABLE[attr.type], "table"
        forced = per_env != per_environment
        if forced:
            source += ", pooled: constant within each environment"
        plans.append(AttributePlan(attr.name, attr.type, tuple(given), per_env, weights[attr.type], source, forced))
    return plans
