"""The likelihoods FishLeg samples from: each gives the per-batch NLL and draws labels from the model.

The NLL is the mean over examples of the per-example negative log-likelihood (summed over output
units), exactly as ``oral6_core.components.Task.nll``, so that the Fisher FishLeg inverts is the
curvature of the training loss.
"""

from __future__ import annotations

import torch
from oral6_core.components import Task
from oral6_core.errors import ConfigError
from torch import Tensor, nn


class FishLikelihood:
    """p(y | f): ``nll(f, y)`` = mean_n −log p(yₙ | fₙ) and ``draw(f)`` ~ p(y | f)."""

    def nll(self, output: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def draw(self, output: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def output_fisher(self, output: Tensor) -> Tensor:
        """Λₙ = E_{y∼p(y|fₙ)}[∇_f log p ∇_f log pᵀ] per example: shape (N, K, K) for outputs (N, K)."""
        raise NotImplementedError


class CategoricalLikelihood(FishLikelihood):
    """Softmax over logits f: −log p(y|f) = logsumexp(f) − f_y."""

    def nll(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(output, target)

    def draw(self, output: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.multinomial(output.detach().softmax(-1), 1, generator=generator).squeeze(-1)

    def output_fisher(self, output: Tensor) -> Tensor:
        p = output.softmax(-1)
        return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)


class BernoulliLikelihood(FishLikelihood):
    """Independent bits with logits f: −log p(y|f) = Σᵢ softplus(fᵢ) − yᵢ fᵢ."""

    def nll(self, output: Tensor, target: Tensor) -> Tensor:
        target = target.reshape(output.shape).to(output.dtype)
        return nn.functional.binary_cross_entropy_with_logits(output, target, reduction="sum") / output.shape[0]

    def draw(self, output: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.bernoulli(torch.sigmoid(output.detach()), generator=generator)

    def output_fisher(self, output: Tensor) -> Tensor:
        p = torch.sigmoid(output)
        return torch.diag_embed(p * (1 - p))


class GaussianLikelihood(FishLikelihood):
    """Gaussian with mean f and fixed σ: −log p(y|f) = ‖y − f‖² / 2σ² (+ const)."""

    def __init__(self, sigma: float = 1.0) -> None:
        if not sigma > 0:
            raise ConfigError(f"The Gaussian likelihood needs sigma > 0, got {sigma}; set the task's sigma to a positive value.")
        self.sigma = float(sigma)

    def nll(self, output: Tensor, target: Tensor) -> Tensor:
        target = target.reshape(output.shape).to(output.dtype)
        return 0.5 * ((output - target) ** 2).sum() / (self.sigma**2 * output.shape[0])

    def draw(self, output: Tensor, generator: torch.Generator | None = None) -> Tensor:
        output = output.detach()
        noise = torch.randn(output.shape, generator=generator, device=output.device, dtype=output.dtype)
        return output + self.sigma * noise

    def output_fisher(self, output: Tensor) -> Tensor:
        eye = torch.eye(output.shape[-1], dtype=output.dtype, device=output.device)
        return eye.expand(output.shape[0], -1, -1) / self.sigma**2


def likelihood_for_task(task: Task) -> FishLikelihood:
    """The FishLeg likelihood matching the task's ``likelihood`` (categorical, bernoulli or gaussian)."""
    if task.likelihood == "categorical":
        return CategoricalLikelihood()
    if task.likelihood == "bernoulli":
        return BernoulliLikelihood()
    if task.likelihood == "gaussian":
        return GaussianLikelihood(task.sigma)
    raise ConfigError(
        f"FishLeg does not know the likelihood {task.likelihood!r}; the task must say categorical, bernoulli or gaussian."
    )
