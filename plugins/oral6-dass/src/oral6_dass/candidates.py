"""Students as search candidates, and the shared base of every predictor over them (search space, distillation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from pydantic import Field
from torch import Tensor, nn

from oral6_core.components import Candidate, Predictor, SearchTask
from oral6_core.config import ComponentConfig
from oral6_core.errors import CheckpointError, ConfigError
from oral6_core.io import write_json

from .distill import DistilSettings, distil
from .network import DaSSResNet
from .remap import remap_teacher, teacher_space
from .space import Architecture, SearchSpace


class StudentCandidate(Candidate):
    """A student of a teacher's space with its exact parameter and FLOP counts for the task."""

    def __init__(self, space: SearchSpace, arch: Architecture, num_classes: int, input_hw: tuple[int, int]) -> None:
        self.space, self.arch = space, space.validate(arch)
        self.num_params = space.num_params(arch, num_classes)
        self.flops = space.flops(arch, input_hw, num_classes)

    def describe(self) -> str:
        return self.space.describe(self.arch)

    def build(self, num_classes: int) -> nn.Module:
        """A randomly initialised student (seed torch before calling for reproducibility)."""
        return DaSSResNet(self.space, self.arch, num_classes)

    def model_spec(self) -> tuple[str, dict[str, Any]]:
        """``dass-resnet`` with the teacher's widths and this student's depths and inner-width multipliers."""
        return "dass-resnet", {"widths": list(self.space.widths), **self.arch.to_dict()}


class StudentSearchConfig(ComponentConfig):
    num_candidates: int = Field(1000, ge=1, description="Students sampled from the teacher's space by candidates().")
    candidate_seed: int = Field(0, description="Seed of the candidate sample.")
    distil_epochs: int = Field(2, ge=1, description="Epochs of distillation in distil() (the shipped meta-dataset's labels use 2).")
    distil_lr: float = Field(1e-3, gt=0, description="Adam learning rate of distil() (cosine-decayed).")
    distil_batch: int = Field(128, ge=1, description="Minibatch size of distil().")
    alpha: float = Field(0.5, ge=0, le=1, description="KD loss weight of the cross-entropy term (α).")
    temperature: float = Field(6.0, gt=0, description="KD temperature (T).")
    distil_init: Literal["remap", "random"] = Field("remap", description="distil() starts from the teacher's remapped weights, or at random.")
    seed: int = Field(0, description="Seed of student initialisations and of the distillation's data order.")


def task_candidates(task: SearchTask, archs: Sequence[Architecture]) -> list[StudentCandidate]:
    """Wrap architectures of the task teacher's space as candidates sized for the task."""
    space = teacher_space(task.teacher)
    hw = tuple(task.bundle.input_shape[1:3])
    return [StudentCandidate(space, a, task.bundle.num_classes, hw) for a in archs]  # type: ignore[arg-type]


def as_students(candidates: Sequence[Candidate]) -> list[StudentCandidate]:
    """The candidates, checked to be students of this plugin's space."""
    for c in candidates:
        if not isinstance(c, StudentCandidate):
            raise ConfigError(f"DaSS predictors score students of a dass-resnet teacher, not {type(c).__name__}; use candidates(task).")
    return list(candidates)  # type: ignore[arg-type]


class StudentSearchPredictor(Predictor):
    """Base of the predictors over a dass-resnet teacher's students (not registered itself)."""

    Config = StudentSearchConfig

    def candidates(self, task: SearchTask) -> list[Candidate]:
        """``num_candidates`` distinct random students of the teacher's space."""
        space = teacher_space(task.teacher)
        return task_candidates(task, space.sample_many(self.config.num_candidates, self.config.candidate_seed))  # type: ignore[return-value]

    def distil(self, candidate: Candidate, task: SearchTask) -> tuple[nn.Module, float]:
        """Distil the candidate from the teacher with the KD loss (from its remapped weights by default, as the
        meta-dataset's students); returns it and its test accuracy."""
        c = self.config
        torch.manual_seed(c.seed)
        arch = as_students([candidate])[0]
        teacher = task.teacher.to(task.device)
        if c.distil_init == "remap" and teacher.head.out_features == task.bundle.num_classes:
            student = remap_teacher(teacher, arch.arch)  # type: ignore[arg-type]
        else:
            student = arch.build(task.bundle.num_classes).to(task.device)
        settings = DistilSettings(epochs=c.distil_epochs, lr=c.distil_lr, batch_size=c.distil_batch, alpha=c.alpha, temperature=c.temperature)
        result = distil(student, teacher, task.bundle, settings, seed=c.seed)
        return student, result.test_accuracy

    def fit(self, meta_data: Any) -> None:
        """Training-free: nothing to learn."""

    def save(self, path: Path) -> None:
        """Write the predictor's name and options (all a training-free predictor is)."""
        write_json({"predictor": self.name, "config": self.config.model_dump(mode="json")}, path)

    def load(self, path: Path) -> None:
        """Read options written by ``save``."""
        try:
            saved = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"Could not read predictor file {path}: {exc}.") from None
        if saved.get("predictor") != self.name:
            raise CheckpointError(f"{path} holds predictor {saved.get('predictor')!r}, not {self.name!r}.")
        self.config = self.Config(**saved["config"])

    def _scores(self, values: Sequence[float], task: SearchTask) -> Tensor:
        return torch.tensor(list(values), dtype=torch.float64).to(task.device)
