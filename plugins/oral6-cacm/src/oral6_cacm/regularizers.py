"""CACM and the single-constraint C-MMD regularizer built on the same grouped MMD penalty."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from torch import Tensor

from oral6_core.components import ATTRIBUTE_TYPES, AttributeType, Batch, Needs, Regularizer, TrainContext
from oral6_core.config import ComponentConfig
from oral6_core.data import DataBundle
from oral6_core.errors import ConfigError

from .common import (
    Layer, OnceWarner, environment_cardinality, pair_normaliser, pick, require_attr, require_env, training_environments,
)
from .constraints import AttributePlan, constant_within_environments, plan_constraints, resolve_attributes
from .graph import LABEL, CausalGraph
from .kernels import DOMAINBED_GAMMAS
from .penalty import grouped_mmd, mixed_radix

CITATION = (
    "Kaur, Kiciman, Sharma. Modeling the Data-Generating Process is Necessary for Out-of-Distribution "
    "Generalization. ICLR 2023."
)


class GroupedMMDConfig(ComponentConfig):
    gamma: float = Field(1e-2, gt=0, description="Gaussian kernel exp(-gamma*|x-y|^2) width (kernel=gaussian).")
    kernel: Literal["gaussian", "multi-gaussian"] = Field(
        "gaussian", description="gaussian: one gamma; multi-gaussian: DomainBed's sum over gamma in 1e-3..1e3."
    )
    layer: Layer = Field("logits", description="Constrain the logits (reference code) or the pre-logit features.")
    grouping: Literal["environment", "pooled"] = Field(
        "environment", description="Compare attribute values inside each environment (| E) or pool all environments."
    )
    constant_within_environment: Literal["pool", "error"] = Field(
        "pool",
        description="An attribute constant inside each environment gives a zero per-environment penalty: "
        "pool it across environments, or raise an error.",
    )
    attributes: list[str] | None = Field(None, description="Attributes to constrain (default: all the dataset declares).")


class AttributeMMDRegularizer(Regularizer):
    """Base: one grouped MMD penalty per attribute, as planned in ``on_train_start``."""

    Config = GroupedMMDConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.plans: list[AttributePlan] = []
        self.cardinality: dict[str, int] = {}
        self.normaliser = 1.0
        self.env_cardinality = 1
        self.started = False
        self.warn = OnceWarner()

    def make_plans(self, bundle: DataBundle) -> list[AttributePlan]:
        raise NotImplementedError

    def on_train_start(self, ctx: TrainContext | None, bundle: DataBundle) -> None:
        """Choose each attribute's constraint and the sizes needed to encode conditioning groups."""
        self.plans = self.make_plans(bundle)
        self.started = True
        self.cardinality = {LABEL: bundle.num_classes, **{a.name: a.num_values for a in bundle.attributes}}
        self.normaliser = pair_normaliser(training_environments(bundle))
        self.env_cardinality = environment_cardinality(bundle)
        for plan in self.plans:
            if plan.pooled_as_environment:
                self.warn(
                    f"pooled-{plan.attribute}",
                    f"{self.name}: attribute {plan.attribute!r} is constant inside each training environment, so it is "
                    f"compared across environments ({plan.describe()}); per-environment grouping would be a no-op.",
                )

    @property
    def gammas(self) -> tuple[float, ...]:
        return DOMAINBED_GAMMAS if self.config.kernel == "multi-gaussian" else (self.config.gamma,)

    def penalty(self, features: Tensor, logits: Tensor, batch: Batch) -> Tensor:
        """Σ_attributes λ_type · Σ_groups Σ_{a<a'} MMD²(g | A=a, group; g | A=a', group) / (E(E−1)/2)."""
        if not self.started:
            raise ConfigError(f"The {self.name} regularizer was used before on_train_start chose its constraints.")
        rep = pick(features, logits, self.config.layer)
        total = rep.new_zeros(())
        env = require_env(batch, self.name) if any(p.per_environment for p in self.plans) else None
        for plan in self.plans:
            values = require_attr(batch, plan.attribute)
            columns = [batch.y if v == LABEL else require_attr(batch, v) for v in plan.conditioning]
            cards = [self.cardinality[v] for v in plan.conditioning]
            if plan.per_environment:
                columns, cards = [env, *columns], [self.env_cardinality, *cards]  # type: ignore[list-item]
            strata = mixed_radix(columns, cards, rep)
            value, any_pair = grouped_mmd(rep, strata, values, self.cardinality[plan.attribute], self.gammas)
            if not bool(any_pair):
                self.warn(
                    f"degenerate-{plan.attribute}",
                    f"{self.name}: a batch had a single value of {plan.attribute!r} in every group of "
                    f"{plan.describe()}; its penalty is zero for such batches. Use larger batches if this persists.",
                )
            total = total + plan.weight * value
        return total / self.normaliser

    def report(self) -> list[dict[str, Any]]:
        """The chosen constraints, one row per attribute."""
        return [
            {"attribute": p.attribute, "type": p.type, "constraint": p.describe(), "weight": p.weight, "source": p.source}
            for p in self.plans
        ]


class CACMConfig(GroupedMMDConfig):
    attribute_types: dict[str, AttributeType] = Field(
        default_factory=dict, description="Override attribute types from the dataset, e.g. {colour: causal}."
    )
    lambda_causal: float = Field(100.0, ge=0, description="Weight of causal-attribute penalties (g ⊥ A | Y).")
    lambda_confounded: float = Field(10.0, ge=0, description="Weight of confounded-attribute penalties (g ⊥ A).")
    lambda_independent: float = Field(10.0, ge=0, description="Weight of independent-attribute penalties (g ⊥ A).")
    lambda_selected: float = Field(100.0, ge=0, description="Weight of selected-attribute penalties (g ⊥ A | Y).")
    graph: list[str] = Field(
        default_factory=list,
        description="Causal graph edges 'U->V' over Xc, Y, E, attributes and latent nodes; when given, each "
        "attribute's conditioning set is found by d-separation instead of the type table.",
    )
    selection: list[str] = Field(default_factory=list, description="Graph nodes the data is selected on (always conditioned).")


class CACM(AttributeMMDRegularizer):
    """CACM: per-attribute (conditional) MMD constraints chosen from the causal graph."""

    name = "cacm"
    Config = CACMConfig
    citation = CITATION
    needs = Needs(likelihoods=("categorical",), attribute_types=ATTRIBUTE_TYPES)

    def make_plans(self, bundle: DataBundle) -> list[AttributePlan]:
        c = self.config
        attrs = resolve_attributes(bundle, c.attribute_types, c.attributes)
        weights = {"causal": c.lambda_causal, "confounded": c.lambda_confounded,
                   "independent": c.lambda_independent, "selected": c.lambda_selected}
        edges, origin = (c.graph, "regularizer.graph") if c.graph else (bundle.graph, f"declared by dataset {bundle.name!r}")
        graph = CausalGraph.from_edges(edges) if edges else None
        try:
            return plan_constraints(attrs, weights, c.grouping == "environment", constant_within_environments(bundle),
                                    c.constant_within_environment, graph, c.selection or bundle.selection)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (The graph: {origin}.)" if graph is not None else str(exc)) from None


class CMMDConfig(GroupedMMDConfig):
    domain: Literal["environment", "attributes"] = Field(
        "environment",
        description="environment: g ⊥ E | Y, the C-MMD baseline of the paper (DomainBed domains); "
        "attributes: g ⊥ A | Y (and E) for every attribute, whatever its type.",
    )
    weight: float = Field(1.0, ge=0, description="Weight λ of the class-conditional penalty.")
    layer: Layer = Field("features", description="Constrain the pre-logit features (DomainBed) or the logits.")
    kernel: Literal["gaussian", "multi-gaussian"] = Field(
        "multi-gaussian", description="gaussian: one gamma; multi-gaussian: DomainBed's sum over gamma in 1e-3..1e3."
    )


class ClassConditionalMMD(AttributeMMDRegularizer):
    """C-MMD: one fixed class-conditional constraint, g ⊥ E | Y (default) or g ⊥ A | Y for every attribute."""

    name = "cmmd"
    Config = CMMDConfig
    needs = Needs(likelihoods=("categorical",), environments=2)  # the default domain, E; domain=attributes needs attributes instead
    citation = "Li, Tian, Gong, Liu, Liu, Zhang, Tao. Deep Domain Generalization via Conditional Invariant Adversarial Networks. ECCV 2018."

    def make_plans(self, bundle: DataBundle) -> list[AttributePlan]:
        c = self.config
        if c.domain == "environment":
            return []
        attrs = resolve_attributes(bundle, {}, c.attributes)
        weights = {t: c.weight for t in ("causal", "confounded", "independent", "selected")}
        return plan_constraints(attrs, weights, c.grouping == "environment", constant_within_environments(bundle),
                                c.constant_within_environment, fixed_conditioning=(LABEL,))

    def penalty(self, features: Tensor, logits: Tensor, batch: Batch) -> Tensor:
        """environment: λ Σ_y Σ_{e<e'} MMD²(g | y, e; g | y, e') / (E(E−1)/2); attributes: as CACM with ⊥ A | Y."""
        if self.config.domain == "attributes":
            return super().penalty(features, logits, batch)
        env = require_env(batch, self.name)
        rep = pick(features, logits, self.config.layer)
        value, any_pair = grouped_mmd(rep, batch.y, env, self.env_cardinality, self.gammas)
        if not bool(any_pair):
            self.warn("degenerate-env", f"{self.name}: no class had two environments in a batch; its penalty is zero.")
        return self.config.weight * value / self.normaliser

    def report(self) -> list[dict[str, Any]]:
        """The constraint applied: on the environment, or one row per attribute."""
        if self.config.domain == "attributes":
            return super().report()
        return [{"attribute": "E (environment)", "type": "-", "constraint": "g(x) ⊥ E | Y", "weight": self.config.weight, "source": "fixed"}]
