"""Single-constraint domain-generalisation baselines (DomainBed forms): MMD, CORAL, IRMv1, V-REx."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor
from torch.nn import functional as F

from oral6_core.components import Batch, Needs, Regularizer, TrainContext
from oral6_core.config import ComponentConfig
from oral6_core.data import DataBundle
from oral6_core.errors import DataError

from .common import Layer, OnceWarner, environment_cardinality, pair_normaliser, pick, require_env, training_environments
from .kernels import DOMAINBED_GAMMAS, coral_distance
from .penalty import grouped_mmd


class _EnvironmentRegularizer(Regularizer):
    """Base: knows the number of training environments and warns once when a batch has fewer than two."""

    needs = Needs(environments=2)

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.normaliser = 1.0
        self.env_cardinality = 1
        self.warn = OnceWarner()

    def on_train_start(self, ctx: TrainContext | None, bundle: DataBundle) -> None:
        if getattr(bundle.train, "env", None) is None and not bundle.environments:
            raise DataError(
                f"The {self.name} regularizer needs several training environments, but dataset {bundle.name!r} has "
                f"none. Use a multi-environment dataset such as multiattr-digits or shift-synthetic."
            )
        self.normaliser = pair_normaliser(training_environments(bundle))
        self.env_cardinality = environment_cardinality(bundle)

    def environments(self, batch: Batch) -> list[Tensor]:
        """Row masks of the environments present in the batch (a one-time warning when fewer than two)."""
        env = require_env(batch, self.name)
        masks = [env == e for e in range(self.env_cardinality)]
        masks = [m for m in masks if bool(m.any())]
        if len(masks) < 2:
            self.warn("one-env", f"{self.name}: a batch held fewer than two environments; its penalty is zero.")
        return masks


class MMDConfig(ComponentConfig):
    weight: float = Field(1.0, ge=0, description="Penalty weight (DomainBed mmd_gamma).")
    layer: Layer = Field("features", description="Representation compared across environments.")
    multi_gamma: bool = Field(True, description="Sum Gaussian kernels over gamma in 1e-3..1e3 (DomainBed); else gamma.")
    gamma: float = Field(1e-2, gt=0, description="Kernel width when multi_gamma is off.")


class EnvironmentMMD(_EnvironmentRegularizer):
    """MMD (Li et al. 2018, DomainBed form): λ Σ_{e<e'} MMD²(g | e, g | e') / (E(E−1)/2)."""

    name = "mmd"
    Config = MMDConfig
    citation = "Li, Pan, Wang, Kot. Domain Generalization with Adversarial Feature Learning. CVPR 2018."

    def penalty(self, features: Tensor, logits: Tensor, batch: Batch) -> Tensor:
        env = require_env(batch, self.name)
        rep = pick(features, logits, self.config.layer)
        gammas = DOMAINBED_GAMMAS if self.config.multi_gamma else (self.config.gamma,)
        value, any_pair = grouped_mmd(rep, torch.zeros_like(env), env, self.env_cardinality, gammas)
        if not bool(any_pair):
            self.warn("one-env", f"{self.name}: a batch held fewer than two environments; its penalty is zero.")
        return self.config.weight * value / self.normaliser


class CORALConfig(ComponentConfig):
    weight: float = Field(1.0, ge=0, description="Penalty weight (DomainBed mmd_gamma for CORAL).")
    layer: Layer = Field("features", description="Representation whose moments are matched.")


class CORAL(_EnvironmentRegularizer):
    """Deep CORAL: λ Σ_{e<e'} [mean (μ_e − μ_e')² + mean (Σ_e − Σ_e')²] / (E(E−1)/2)."""

    name = "coral"
    Config = CORALConfig
    citation = "Sun, Saenko. Deep CORAL: Correlation Alignment for Deep Domain Adaptation. ECCV 2016 workshops."

    def penalty(self, features: Tensor, logits: Tensor, batch: Batch) -> Tensor:
        rep = pick(features, logits, self.config.layer)
        groups = [rep[m] for m in self.environments(batch)]
        total = rep.new_zeros(())
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                total = total + coral_distance(groups[i], groups[j])
        return self.config.weight * total / self.normaliser


class AnnealedConfig(ComponentConfig):
    weight: float = Field(100.0, ge=0, description="Penalty weight λ after annealing.")
    anneal_steps: int = Field(500, ge=0, description="Steps with weight 1 before λ applies (DomainBed).")
    reset_optimizer: bool = Field(
        True, description="Clear the optimizer's state when λ switches on (DomainBed re-creates Adam there)."
    )


class _AnnealedRegularizer(_EnvironmentRegularizer):
    """Base: weight 1 for ``anneal_steps`` steps, then λ; optionally resets the optimizer's moments then."""

    Config = AnnealedConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.step = 0
        self.optimizer: torch.optim.Optimizer | None = None

    def on_train_start(self, ctx: TrainContext | None, bundle: DataBundle) -> None:
        super().on_train_start(ctx, bundle)
        self.optimizer = None if ctx is None else ctx.optimizer

    def on_step_start(self, step: int, total_steps: int) -> None:
        self.step = step
        if self.config.reset_optimizer and self.optimizer is not None and step == self.config.anneal_steps + 1:
            self.optimizer.state.clear()

    @property
    def current_weight(self) -> float:
        """1 while annealing (steps 1..anneal_steps), λ afterwards."""
        return self.config.weight if self.step > self.config.anneal_steps else 1.0


def irm_gradient(logits: Tensor, y: Tensor) -> Tensor:
    """∂/∂s CE(s·logits, y) at s = 1, in closed form: mean_i (Σ_k p_ik z_ik − z_{i,y_i})."""
    probs = logits.softmax(-1)
    return ((probs * logits).sum(-1) - logits.gather(-1, y[:, None]).squeeze(-1)).mean()


def irm_penalty(logits: Tensor, y: Tensor) -> Tensor:
    """IRMv1 per environment, unbiased: ∇_s R(even rows) · ∇_s R(odd rows) (DomainBed)."""
    return irm_gradient(logits[0::2], y[0::2]) * irm_gradient(logits[1::2], y[1::2])


class IRMConfig(AnnealedConfig):
    weight: float = Field(100.0, ge=0, description="IRM λ after annealing (DomainBed irm_lambda).")


class IRM(_AnnealedRegularizer):
    """IRMv1: λ · mean_e ‖∇_{w=1} R_e(w·Φ)‖², with λ = 1 for the first anneal_steps steps."""

    name = "irm"
    Config = IRMConfig
    needs = Needs(likelihoods=("categorical",), environments=2)
    citation = "Arjovsky, Bottou, Gulrajani, Lopez-Paz. Invariant Risk Minimization. arXiv 2019."

    def penalty(self, features: Tensor, logits: Tensor, batch: Batch) -> Tensor:
        masks = [m for m in self.environments(batch) if int(m.sum()) >= 2]
        if not masks:
            return logits.new_zeros(())
        value = torch.stack([irm_penalty(logits[m], batch.y[m]) for m in masks]).mean()
        return self.current_weight * value


class VRExConfig(AnnealedConfig):
    weight: float = Field(10.0, ge=0, description="V-REx λ after annealing (DomainBed vrex_lambda).")


class VREx(_AnnealedRegularizer):
    """V-REx: λ · Var_e(R_e), the variance of the per-environment risks, λ = 1 while annealing."""

    name = "vrex"
    Config = VRExConfig
    needs = Needs(likelihoods=("categorical",), environments=2)
    citation = "Krueger et al. Out-of-Distribution Generalization via Risk Extrapolation (REx). ICML 2021."

    def penalty(self, features: Tensor, logits: Tensor, batch: Batch) -> Tensor:
        masks = self.environments(batch)
        if len(masks) < 2:
            return logits.new_zeros(())
        risks = torch.stack([F.cross_entropy(logits[m], batch.y[m]) for m in masks])
        return self.current_weight * (risks - risks.mean()).pow(2).mean()
