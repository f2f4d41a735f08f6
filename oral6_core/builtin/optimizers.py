"""First-order optimizers: SGD (with momentum), Adam and AdamW."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..components import OptimizerFactory, Task
from ..config import ComponentConfig


class SGDConfig(ComponentConfig):
    lr: float = Field(0.05, gt=0, description="Learning rate.")
    momentum: float = Field(0.9, ge=0, lt=1, description="Heavy-ball momentum.")
    nesterov: bool = Field(False, description="Use Nesterov momentum.")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradient.")


class SGD(OptimizerFactory):
    """Stochastic gradient descent with momentum."""

    name = "sgd"
    Config = SGDConfig

    def build(self, model: nn.Module, task: Task) -> torch.optim.Optimizer:
        c = self.config
        return torch.optim.SGD(
            model.parameters(), lr=c.lr, momentum=c.momentum, nesterov=c.nesterov and c.momentum > 0,
            weight_decay=c.weight_decay,
        )


class AdamConfig(ComponentConfig):
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    beta1: float = Field(0.9, ge=0, lt=1, description="Decay of the first-moment average.")
    beta2: float = Field(0.999, ge=0, lt=1, description="Decay of the second-moment average.")
    eps: float = Field(1e-8, gt=0, description="Added to the denominator for stability.")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty (Adam) or decoupled decay (AdamW).")


class Adam(OptimizerFactory):
    """Adam (Kingma & Ba, 2015)."""

    name = "adam"
    Config = AdamConfig
    citation = "Kingma & Ba. Adam: A Method for Stochastic Optimization. ICLR 2015."
    torch_class: type[torch.optim.Optimizer] = torch.optim.Adam

    def build(self, model: nn.Module, task: Task) -> torch.optim.Optimizer:
        c = self.config
        return self.torch_class(model.parameters(), lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps, weight_decay=c.weight_decay)


class AdamWConfig(AdamConfig):
    weight_decay: float = Field(1e-2, ge=0, description="Decoupled weight decay.")


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019)."""

    name = "adamw"
    Config = AdamWConfig
    citation = "Loshchilov & Hutter. Decoupled Weight Decay Regularization. ICLR 2019."
    torch_class = torch.optim.AdamW
