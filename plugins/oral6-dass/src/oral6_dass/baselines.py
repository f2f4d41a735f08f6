"""Training-free baseline predictors: parameter count, FLOPs and zero-cost proxies at initialisation."""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import Field
from torch import Tensor, nn

from oral6_core.components import Batch, Candidate, SearchTask
from oral6_core.data import BatchLoader

from . import proxies
from .candidates import StudentSearchConfig, StudentSearchPredictor, as_students


class ParamsPredictor(StudentSearchPredictor):
    """Baseline: score = the student's exact parameter count (bigger is predicted better)."""

    name = "params"

    def predict(self, candidates: Sequence[Candidate], task: SearchTask) -> Tensor:
        return self._scores([c.num_params for c in as_students(candidates)], task)


class FlopsPredictor(StudentSearchPredictor):
    """Baseline: score = the student's exact multiply-accumulates for one input."""

    name = "flops"

    def predict(self, candidates: Sequence[Candidate], task: SearchTask) -> Tensor:
        return self._scores([c.flops for c in as_students(candidates)], task)


class ProxyConfig(StudentSearchConfig):
    proxy_batch: int = Field(64, ge=2, description="Training images in the one minibatch the proxy reads.")


class ZeroCostPredictor(StudentSearchPredictor):
    """Base of zero-cost proxies: each student is scored at a seeded random initialisation."""

    Config = ProxyConfig

    def score(self, model: nn.Module, batch: Batch, task: SearchTask) -> float:
        raise NotImplementedError

    def predict(self, candidates: Sequence[Candidate], task: SearchTask) -> Tensor:
        batch = next(iter(BatchLoader(task.bundle.train, self.config.proxy_batch, shuffle=True, seed=self.config.seed))).to(task.device)
        values = []
        for c in as_students(candidates):
            torch.manual_seed(self.config.seed)
            values.append(self.score(c.build(task.bundle.num_classes).to(task.device), batch, task))
        return self._scores(values, task)


class SynflowPredictor(ZeroCostPredictor):
    """Zero-cost proxy SynFlow: Σ|θ ⊙ ∂R/∂θ| of the |θ|-network on an all-ones input."""

    name = "synflow"
    citation = "Tanaka et al. Pruning neural networks without any data by iteratively conserving synaptic flow. NeurIPS 2020."

    def score(self, model: nn.Module, batch: Batch, task: SearchTask) -> float:
        return proxies.synflow(model, tuple(task.bundle.input_shape))


class SnipPredictor(ZeroCostPredictor):
    """Zero-cost proxy SNIP: Σ|θ ⊙ ∂L/∂θ| on one minibatch at initialisation."""

    name = "snip"
    citation = "Lee, Ajanthan, Torr. SNIP: Single-shot network pruning based on connection sensitivity. ICLR 2019."

    def score(self, model: nn.Module, batch: Batch, task: SearchTask) -> float:
        return proxies.snip(model, batch.x, batch.y)


class GradNormPredictor(ZeroCostPredictor):
    """Zero-cost proxy grad_norm: Σ over layers of ‖∂L/∂W‖₂ on one minibatch at initialisation."""

    name = "grad-norm"
    citation = "Abdelfattah et al. Zero-Cost Proxies for Lightweight NAS. ICLR 2021."

    def score(self, model: nn.Module, batch: Batch, task: SearchTask) -> float:
        return proxies.grad_norm(model, batch.x, batch.y)


class NaswotPredictor(ZeroCostPredictor):
    """Zero-cost proxy NASWOT: log|det K| of the ReLU-code Hamming kernel of one minibatch."""

    name = "naswot"
    citation = "Mellor, Turner, Storkey, Crowley. Neural Architecture Search without Training. ICML 2021."

    def score(self, model: nn.Module, batch: Batch, task: SearchTask) -> float:
        return proxies.naswot(model, batch.x)
