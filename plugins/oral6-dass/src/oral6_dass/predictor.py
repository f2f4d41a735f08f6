"""The DaSS predictor and its MetaD2A-like ablation without functional encodings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from pydantic import Field
from torch import Tensor

from rich.console import Console

from oral6_core.components import Candidate, SearchTask
from oral6_core.errors import CheckpointError, ConfigError
from oral6_core.io import load_torch, save_torch

from .candidates import StudentSearchConfig, StudentSearchPredictor, as_students
from .meta import MetaHistory, MetaLearner, MetaSettings, meta_train
from .metadata import MetaDatasetSettings, TaskRecord, load_meta_dataset
from .novelty import TeacherStats
from .predictor_net import DaSSNet, EncodedTask, encode_task, normalised_task
from .remap import teacher_space
from .space import SearchSpace

MAKE_ONE = (
    "Meta-train one from the shipped meta-dataset with `oral6 dass meta-train --out runs/dass.pt` (a few minutes), "
    "then pass --predictor-checkpoint runs/dass.pt."
)
warn_console = Console(stderr=True)


class DaSSConfig(StudentSearchConfig):
    hidden_channels: int = Field(32, ge=1, description="Channels of the functional encoders' first conv.")
    out_channels: int = Field(64, ge=1, description="Size of each functional encoding.")
    arch_features: int = Field(32, ge=1, description="Size of the architecture encoding.")
    hidden: int = Field(64, ge=1, description="Hidden units of the MLP head (tanh).")
    noise_seed: int = Field(0, description="Seed of the fixed noise input of the functional encodings.")
    episodes: int = Field(300, ge=1, description="Meta-training outer updates.")
    meta_lr: float = Field(5e-4, gt=0, description="Adam learning rate of meta-training.")
    meta_batch: int = Field(8, ge=1, description="Tasks per outer update.")
    query_size: int = Field(50, ge=1, description="Students per task per outer update.")
    step_size: float = Field(1e-2, gt=0, description="Initial per-parameter inner learning rate (Meta-SGD).")
    first_order: bool = Field(False, description="First-order inner step (drops second derivatives).")
    validate_every: int = Field(10, ge=1, description="Episodes between validation Spearman checks.")
    encoders: list[Literal["student", "arch", "teacher"]] = Field(
        ["student", "arch", "teacher"], min_length=1, description="Encodings the head reads (fewer: an ablation).")
    adapt: bool = Field(True, description="Teacher-guided adaptation step (false: plain regression, an ablation).")
    min_val_ceiling: float = Field(0.5, ge=-1, le=1, description="Validation tasks whose noise ceiling is below this do not select the checkpoint.")


class DaSSPredictor(StudentSearchPredictor):
    """DaSS: meta-learned predictor of distilled accuracy from teacher and remapped-student encodings."""

    name = "dass"
    Config = DaSSConfig
    citation = "Lee, An, Kim, Hwang. Meta-prediction Model for Distillation-Aware NAS on Unseen Datasets. ICLR 2023."
    functional = True

    def __init__(self, config: DaSSConfig | None = None) -> None:
        super().__init__(config)
        self.learner: MetaLearner | None = None
        self.space_key: tuple[int, tuple[int, ...]] | None = None
        self.history: MetaHistory | None = None
        self.teacher_stats: TeacherStats | None = None
        self.selection_note: str | None = None
        self.warnings: list[str] = []

    def _new_learner(self, space: SearchSpace) -> MetaLearner:
        c = self.config
        parts = tuple(c.encoders) if self.functional else ("arch",)
        net = DaSSNet(space.widths[-1], space.encoding_size, c.hidden_channels, c.out_channels, c.arch_features, c.hidden, parts)
        self.space_key = (space.widths[-1], space.max_depths)
        return MetaLearner(net, c.step_size, c.adapt)

    def encode(self, record: TaskRecord, space: SearchSpace) -> EncodedTask:
        """A meta-dataset task as predictor inputs, labelled with the students' mean distilled validation accuracy."""
        archs = torch.stack([space.encode(st.arch) for st in record.students])
        return normalised_task(record.name, record.teacher_features, torch.stack([st.features for st in record.students]),
                               space.encode(space.teacher), archs, record.teacher_accuracy, record.labels)

    def fit(self, meta_data: Any = None, device: torch.device | str = "cpu") -> None:
        """Meta-train on a meta-dataset (a path, loaded ``(settings, records)``, or None for the shipped one).

        Train tasks train; validation tasks whose noise ceiling reaches ``min_val_ceiling`` select the checkpoint."""
        if meta_data is None or isinstance(meta_data, (str, Path)):
            meta_data = load_meta_dataset(None if meta_data is None else Path(meta_data))
        settings, records = meta_data
        assert isinstance(settings, MetaDatasetSettings)
        if settings.noise_seed != self.config.noise_seed:
            raise ConfigError(f"The meta-dataset's encodings use noise seed {settings.noise_seed}, but predictor.noise_seed is "
                              f"{self.config.noise_seed}; leave predictor.noise_seed at {settings.noise_seed}.")
        train = [r for r in records if r.split == "train"]
        if not train:
            raise ConfigError("The meta-dataset has no training tasks; build one with `oral6 dass build-meta`.")
        c = self.config
        val = [r for r in records if r.split == "val" and (r.ceiling is None or r.ceiling >= c.min_val_ceiling)]
        self.selection_note = None if val else (
            f"no validation task has a noise ceiling of at least {c.min_val_ceiling}; the checkpoint is selected on the training tasks")
        torch.manual_seed(c.seed)
        space = settings.space()
        self.learner = self._new_learner(space).to(device)
        self.teacher_stats = TeacherStats.of([self.encode(r, space) for r in train])
        settings_ = MetaSettings(episodes=c.episodes, meta_lr=c.meta_lr, meta_batch=c.meta_batch, query_size=c.query_size,
                                 step_size=c.step_size, first_order=c.first_order, validate_every=c.validate_every)
        self.history = meta_train(self.learner, [self.encode(r, space).to(device) for r in train],
                                  [self.encode(r, space).to(device) for r in val], settings_, seed=c.seed)

    def _ready(self, task: SearchTask) -> MetaLearner:
        if self.learner is None:
            raise ConfigError(f"The {self.name} predictor needs meta-training before it can score students. {MAKE_ONE}")
        space = teacher_space(task.teacher)
        if (space.widths[-1], space.max_depths) != self.space_key:
            raise ConfigError(
                f"This {self.name} predictor was meta-trained for teachers with last width {self.space_key[0]} and depths "  # type: ignore[index]
                f"{list(self.space_key[1])}, but the teacher has {space.widths[-1]} and {list(space.max_depths)}. Build a "  # type: ignore[index]
                f"meta-dataset with matching --set meta.teacher_widths=... meta.teacher_depths=... and meta-train on it."
            )
        return self.learner.to(task.device)

    def predict(self, candidates: Sequence[Candidate], task: SearchTask) -> Tensor:
        """Adapt on the teacher (its encoding and accuracy), then score each student: higher means a higher expected
        distilled accuracy.

        Scores are the network's raw outputs (trained to regress the distilled validation accuracy),
        neither calibrated nor clamped (clamping would tie the ranking): read them as a ranking. A
        warning goes to stderr when the teacher is unlike every meta-training teacher or a score
        falls outside [0, 1]."""
        learner = self._ready(task)
        students = as_students(candidates)
        encoded = encode_task(task.bundle.name, task.teacher.to(task.device), [s.arch for s in students], task.teacher_accuracy,
                              task.bundle.input_shape, self.config.noise_seed)
        scores = learner.to(task.device).adapted_predict(encoded)
        self.warnings = self.teacher_stats.warnings(encoded) if self.teacher_stats is not None else []
        outside = int(((scores < 0) | (scores > 1)).sum())
        if outside:
            self.warnings.append(f"{outside} of {len(scores)} scores fall outside [0, 1]: read them as a ranking, not as accuracies")
        for line in self.warnings:
            warn_console.print(f"Warning ({self.name}): {line}.", highlight=False)
        return scores

    def save(self, path: Path) -> None:
        """Write the meta-trained weights, inner rates, options and the space they fit (atomically)."""
        if self.learner is None:
            raise ConfigError(f"Nothing to save: the {self.name} predictor is not meta-trained yet. {MAKE_ONE}")
        save_torch({"predictor": self.name, "config": self.config.model_dump(mode="json"), "state": self.learner.state_dict(),
                    "space_key": self.space_key, "history": self.history.rows if self.history else [],
                    "teacher_stats": self.teacher_stats.to_dict() if self.teacher_stats else None}, path)

    def load(self, path: Path) -> None:
        """Read a checkpoint written by ``save`` (``oral6 dass meta-train``)."""
        ckpt = load_torch(path)
        if not isinstance(ckpt, dict) or ckpt.get("predictor") != self.name:
            found = ckpt.get("predictor") if isinstance(ckpt, dict) else type(ckpt).__name__
            raise CheckpointError(f"{path} is not a {self.name} predictor checkpoint (it holds {found!r}). {MAKE_ONE}")
        keep = {k: v for k, v in self.config.model_dump().items() if k in StudentSearchConfig.model_fields}
        self.config = self.Config(**{**ckpt["config"], **keep})
        width, depths = ckpt["space_key"]
        self.learner = self._new_learner(_space_like(width, depths))
        self.learner.load_state_dict(ckpt["state"])
        self.history = MetaHistory(rows=ckpt.get("history", []))
        stats = ckpt.get("teacher_stats")
        self.teacher_stats = TeacherStats.from_dict(stats) if stats else None


def _space_like(last_width: int, depths: Sequence[int]) -> SearchSpace:
    """A space with the saved last width and depths (the only parts the network's shape depends on)."""
    return SearchSpace(1, (last_width,) * len(depths), tuple(depths))


class DaSSNoFuncPredictor(DaSSPredictor):
    """Ablation (MetaD2A-like): DaSS without the functional teacher/student encodings, architecture only."""

    name = "dass-no-func"
    functional = False
