"""Meta-training with teacher-guided adaptation (MAML with learnable per-parameter inner rates, Meta-SGD).

Inner step on the support set, which is the teacher alone (its encodings and its accuracy ``a_T``):
``θ' = θ − λ ⊙ ∇_θ (f_θ(T) − a_T)²``. Outer step: Adam on ``(θ, λ)`` over
``Σ_tasks mean_students (f_θ'(S) − a_S)²``; the kept checkpoint has the best mean validation Spearman.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.func import functional_call

from .predictor_net import DaSSNet, EncodedTask


class MetaSettings(BaseModel):
    """Meta-training options (the paper's Adam lr 5e-4, meta-batch 8 tasks × 50 students, inner step 1e-2)."""

    model_config = ConfigDict(extra="forbid")

    episodes: int = Field(300, ge=1, description="Outer (meta) updates.")
    meta_lr: float = Field(5e-4, gt=0, description="Adam learning rate of the outer loop.")
    meta_batch: int = Field(8, ge=1, description="Tasks per outer update.")
    query_size: int = Field(50, ge=1, description="Students per task in each outer update (the query set).")
    step_size: float = Field(1e-2, gt=0, description="Initial value of every learnable inner learning rate.")
    first_order: bool = Field(False, description="Drop the second-order term of the inner step.")
    validate_every: int = Field(10, ge=1, description="Episodes between validation Spearman checks.")


def average_ranks(x: Tensor) -> Tensor:
    """Ranks 0..n-1 of ``x``, tied values sharing their mean rank."""
    ranks = torch.empty_like(x)
    ranks[x.argsort()] = torch.arange(x.numel(), dtype=x.dtype, device=x.device)
    _, groups = torch.unique(x, return_inverse=True)
    sums = torch.zeros(int(groups.max()) + 1, dtype=x.dtype, device=x.device).index_add_(0, groups, ranks)
    return (sums / torch.bincount(groups).to(x.dtype))[groups]


def _pearson(a: Tensor, b: Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def rank_correlations(predicted: Tensor, actual: Tensor) -> tuple[float, float]:
    """Spearman (Pearson of average ranks) and Pearson correlations; 0 when either side is constant."""
    p, a = predicted.detach().double().flatten(), actual.detach().double().flatten().to(predicted.device)
    if p.numel() < 2 or bool(p.std() == 0) or bool(a.std() == 0):
        return 0.0, 0.0
    return _pearson(average_ranks(p), average_ranks(a)), _pearson(p, a)


class MetaLearner(nn.Module):
    """The prediction network plus one learnable inner learning rate per parameter entry."""

    def __init__(self, net: DaSSNet, step_size: float, adapt: bool = True) -> None:
        super().__init__()
        self.net, self.adapts = net, adapt
        self.inner_lrs = nn.ParameterDict({k.replace(".", "__"): nn.Parameter(torch.full_like(p, step_size)) for k, p in net.named_parameters()})

    def adapt(self, task: EncodedTask, create_graph: bool) -> dict[str, Tensor]:
        """One inner step on the teacher: θ' = θ − λ ⊙ ∇_θ (f_θ(T) − a_T)² (θ itself when adaptation is off)."""
        params = dict(self.net.named_parameters())
        if not self.adapts:
            return params
        with torch.enable_grad():
            pred = functional_call(self.net, params, (task.teacher_map.unsqueeze(0), task.teacher_arch.unsqueeze(0), task.teacher_map))
            loss = (pred - task.teacher_accuracy).pow(2).mean()
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        return {k: p - self.inner_lrs[k.replace(".", "__")] * g for (k, p), g in zip(params.items(), grads)}

    def predict(self, task: EncodedTask, params: dict[str, Tensor] | None = None) -> Tensor:
        """Predicted accuracies of the task's students with (adapted) parameters."""
        if params is None:
            return self.net(task.student_maps, task.student_archs, task.teacher_map)
        return functional_call(self.net, params, (task.student_maps, task.student_archs, task.teacher_map))

    def adapted_predict(self, task: EncodedTask) -> Tensor:
        """Teacher-guided adaptation then prediction, without tracking gradients for an outer step."""
        params = {k: v.detach() for k, v in self.adapt(task, create_graph=False).items()}
        with torch.no_grad():
            return self.predict(task, params)


@dataclass
class MetaHistory:
    """Per-validation records and the episode whose checkpoint was kept."""

    rows: list[dict[str, float]] = field(default_factory=list)
    best_episode: int = 0
    best_spearman: float = -math.inf

    @property
    def improved(self) -> bool:
        """Whether a trained checkpoint beat the untrained network (episode 0) on the selection tasks."""
        return self.best_episode > 0

    def verdict(self) -> str:
        """One line on the kept checkpoint, a warning when it is the untrained network."""
        untrained = self.rows[0]["val_spearman"] if self.rows else math.nan
        if not self.improved:
            return (f"Warning: no meta-training checkpoint beat the untrained network on the selection tasks (Spearman "
                    f"{untrained:.3f} at episode 0); the kept predictor is untrained. Try more episodes, another seed or a "
                    f"meta-dataset with more signal (noise ceilings in its build report).")
        return f"Best selection Spearman {self.best_spearman:.3f} at episode {self.best_episode} (untrained: {untrained:.3f})."


def validate(learner: MetaLearner, tasks: Sequence[EncodedTask]) -> tuple[float, float, float]:
    """Mean Spearman, Pearson and MSE over tasks after adaptation."""
    stats = []
    for task in tasks:
        pred = learner.adapted_predict(task)
        assert task.accuracies is not None
        rho, r = rank_correlations(pred, task.accuracies)
        stats.append((rho, r, float((pred - task.accuracies).pow(2).mean())))
    return tuple(sum(s[i] for s in stats) / max(len(stats), 1) for i in range(3))  # type: ignore[return-value]


def meta_train(learner: MetaLearner, train_tasks: Sequence[EncodedTask], val_tasks: Sequence[EncodedTask],
               settings: MetaSettings, seed: int = 0, on_episode: Callable[[int], None] | None = None) -> MetaHistory:
    """Meta-train ``learner`` in place; it ends holding the checkpoint with the best validation Spearman."""
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(learner.parameters(), lr=settings.meta_lr)
    history = MetaHistory()
    check_tasks = val_tasks or train_tasks
    best_state = copy.deepcopy(learner.state_dict())

    def check(episode: int) -> None:
        rho, r, mse = validate(learner, check_tasks)
        history.rows.append({"episode": episode, "val_spearman": rho, "val_pearson": r, "val_mse": mse})
        if rho > history.best_spearman:
            history.best_spearman, history.best_episode = rho, episode
            best_state.update(copy.deepcopy(learner.state_dict()))

    check(0)
    for episode in range(1, settings.episodes + 1):
        batch = rng.sample(list(train_tasks), min(settings.meta_batch, len(train_tasks)))
        loss = torch.zeros((), device=batch[0].teacher_map.device)
        for task in batch:
            assert task.accuracies is not None
            n = task.student_archs.shape[0]
            query = task.subset(torch.randperm(n, generator=generator)[: settings.query_size].to(task.student_archs.device))
            params = learner.adapt(task, create_graph=not settings.first_order)
            loss = loss + (learner.predict(query, params) - query.accuracies).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        (loss / len(batch)).backward()
        optimizer.step()
        if episode % settings.validate_every == 0 or episode == settings.episodes:
            check(episode)
        if on_episode is not None:
            on_episode(episode)
    learner.load_state_dict(best_state)
    return history
