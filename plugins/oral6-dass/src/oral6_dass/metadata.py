"""The meta-dataset: per task a trained teacher and dozens of distilled students, cached as files.

Layout under the root folder (every file written atomically, so an interrupted build resumes
without losing a finished student)::

    meta.json                      the settings it was built with and the task splits
    <task>/teacher.pt              teacher weights, space and accuracies
    <task>/students/<index>.json   a student's architecture, size and distilled accuracies
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from oral6_core import registry
from oral6_core.config import TrainConfig, format_validation_error
from oral6_core.errors import CheckpointError, ConfigError
from oral6_core.io import load_torch, save_torch, write_json
from oral6_core.metrics import evaluate
from oral6_core.progress import Progress, shown
from oral6_core.training import fit, seed_everything

from .distill import DistilSettings, distil
from .network import DaSSResNet
from .space import Architecture, SearchSpace
from .tasks import TASKS, load_task

Split = Literal["train", "val", "test"]


class MetaDatasetSettings(BaseModel):
    """What the meta-dataset holds: task splits (test tasks are unseen), teachers and students per task."""

    model_config = ConfigDict(extra="forbid")

    train_tasks: list[str] = Field(
        ["digits-all", "digits-0to4", "digits-5to9", "digits-even", "digits-1478", "digits-rot90", "digits-noisy", "shapes-4", "textures-4"],
        description="Tasks the predictor is meta-trained on.")
    val_tasks: list[str] = Field(["digits-odd", "digits-flip-0to4"], description="Tasks that select the meta-training checkpoint.")
    test_tasks: list[str] = Field(["digits-invert", "shapes-6", "textures-6"], description="Unseen tasks, held out whole.")
    students_per_task: int = Field(6, ge=2, description="Distilled students per task (30 for the full-size meta-dataset).")
    teacher_widths: list[int] = Field([16, 32, 64, 64], min_length=1, description="Teacher channels per stage.")
    teacher_depths: list[int] = Field([2, 2, 2, 2], min_length=1, description="Teacher blocks per stage (students keep 1..d).")
    teacher_epochs: int = Field(4, ge=1, description="Teacher training epochs (Adam; 10 for the full-size meta-dataset).")
    teacher_lr: float = Field(3e-3, gt=0, description="Teacher learning rate.")
    distil: DistilSettings = Field(default_factory=lambda: DistilSettings(epochs=2),
                                   description="How each student is distilled (2 epochs; 4 for the full-size meta-dataset).")
    seed: int = Field(0, description="Seed of the student samples and of training.")

    def model_post_init(self, _context: object) -> None:
        """Reject unknown tasks, a task in two splits, and a teacher whose widths and depths disagree."""
        for name in self.train_tasks + self.val_tasks + self.test_tasks:
            if name not in TASKS:
                raise ValueError(f"unknown DaSS task {name!r}; the known tasks are {', '.join(TASKS)}")
        every = self.train_tasks + self.val_tasks + self.test_tasks
        if len(set(every)) != len(every):
            raise ValueError("a task appears in more than one split (or twice); unseen tasks must be held out whole")
        if not self.train_tasks:
            raise ValueError("the meta-dataset needs at least one training task")
        if len(self.teacher_widths) != len(self.teacher_depths):
            raise ValueError("teacher_widths and teacher_depths need one entry per stage")

    def splits(self) -> dict[str, Split]:
        """Task name -> split."""
        return {**{t: "train" for t in self.train_tasks}, **{t: "val" for t in self.val_tasks}, **{t: "test" for t in self.test_tasks}}


def parse_settings(values: dict) -> MetaDatasetSettings:
    """Validate settings with errors phrased as ``meta.OPTION: message``."""
    try:
        return MetaDatasetSettings(**values)
    except ValidationError as exc:
        message = format_validation_error(exc, "meta").replace("Value error, ", "")
        raise ConfigError(f"Invalid meta-dataset settings: {message}. See `oral6 dass build-meta --help` and README.md.") from None


@dataclass
class StudentRecord:
    """One distilled student of a task."""

    arch: Architecture
    num_params: int
    flops: int
    val_accuracy: float
    test_accuracy: float


@dataclass
class TaskRecord:
    """One task of the meta-dataset: its split, teacher, and distilled students."""

    name: str
    split: Split
    teacher: DaSSResNet
    teacher_accuracy: float
    students: list[StudentRecord]


def task_space(settings: MetaDatasetSettings) -> SearchSpace:
    """The students' space (every task gives 1-channel images)."""
    return SearchSpace(1, tuple(settings.teacher_widths), tuple(settings.teacher_depths))


def student_architectures(settings: MetaDatasetSettings, task: str) -> list[Architecture]:
    """The task's students, the same on every run (seeded by the settings' seed and the task name)."""
    return task_space(settings).sample_many(settings.students_per_task, settings.seed * 1_000_003 + zlib.crc32(task.encode()))


def _check_settings(root: Path, settings: MetaDatasetSettings) -> None:
    manifest = root / "meta.json"
    if manifest.is_file():
        saved = json.loads(manifest.read_text())
        if saved != settings.model_dump(mode="json"):
            raise ConfigError(
                f"{root} holds a meta-dataset built with other settings; resume it with the same settings "
                f"(see {manifest}) or build into a new folder with --out."
            )
    else:
        write_json(settings.model_dump(mode="json"), manifest)


def _train_teacher(root: Path, task: str, settings: MetaDatasetSettings, device: str) -> None:
    path = root / task / "teacher.pt"
    if path.is_file():
        return
    seed_everything(settings.seed)
    bundle = load_task(task)
    space = task_space(settings)
    teacher = DaSSResNet(space, space.teacher, bundle.num_classes)
    adam = registry.create("optimizer", "adam", {"lr": settings.teacher_lr})
    run = fit(teacher, bundle, adam, TrainConfig(epochs=settings.teacher_epochs, seed=settings.seed, device=device, checkpoint=False))
    dev = next(teacher.parameters()).device
    accs = {s: evaluate(run.model, getattr(bundle, s), bundle.task, dev)["accuracy"] for s in ("val", "test")}
    save_torch({"state": teacher.state_dict(), "widths": space.widths, "depths": space.max_depths, "in_channels": space.in_channels,
                "num_classes": bundle.num_classes, "val_accuracy": accs["val"], "test_accuracy": accs["test"]}, path)


def load_teacher(path: Path, device: torch.device | str = "cpu") -> tuple[DaSSResNet, float]:
    """A cached teacher and its validation accuracy."""
    ckpt = load_torch(path, map_location=device)
    space = SearchSpace(ckpt["in_channels"], tuple(ckpt["widths"]), tuple(ckpt["depths"]))
    teacher = DaSSResNet(space, space.teacher, ckpt["num_classes"]).to(device)
    teacher.load_state_dict(ckpt["state"])
    return teacher.eval(), float(ckpt["val_accuracy"])


def build_meta_dataset(root: Path, settings: MetaDatasetSettings, device: str = "cpu", progress: bool = True) -> Path:
    """Train every missing teacher and distil every missing student; finished files are kept as they are.

    ``progress`` shows a bar on a terminal, or one line per teacher epoch and per student in a log file.
    """
    root.mkdir(parents=True, exist_ok=True)
    _check_settings(root, settings)
    space = task_space(settings)
    tasks = list(settings.splits())
    total = len(tasks) * settings.students_per_task
    done = sum(1 for t in tasks for i in range(settings.students_per_task) if (root / t / "students" / f"{i:04d}.json").is_file())
    with shown(progress), Progress("dass build-meta", total=total, completed=done) as bar:
        for task in tasks:
            bar.update(description=f"{task}: teacher")
            _train_teacher(root, task, settings, device)
            missing = [(i, a) for i, a in enumerate(student_architectures(settings, task))
                       if not (root / task / "students" / f"{i:04d}.json").is_file()]
            if not missing:
                continue
            teacher, _ = load_teacher(root / task / "teacher.pt", _device(device))
            bundle = load_task(task)
            for i, arch in missing:
                path = root / task / "students" / f"{i:04d}.json"
                bar.update(description=f"{task}: student {i + 1}")
                seed_everything(settings.seed * 7919 + i)
                started = time.perf_counter()
                result = distil(DaSSResNet(space, arch, bundle.num_classes), teacher, bundle, settings.distil, seed=settings.seed + i)
                write_json({"index": i, "arch": arch.to_dict(), "num_params": space.num_params(arch, bundle.num_classes),
                            "flops": space.flops(arch, bundle.input_shape[1:], bundle.num_classes),  # type: ignore[arg-type]
                            "val_accuracy": result.val_accuracy, "test_accuracy": result.test_accuracy,
                            "history": result.history, "seconds": time.perf_counter() - started}, path)
                bar.stage(f"{task} student {i + 1}/{settings.students_per_task}", bar.completed + 1,
                          val_accuracy=result.val_accuracy, seconds=time.perf_counter() - started)
    return root


def _device(name: str) -> torch.device:
    from oral6_core.training import resolve_device

    return resolve_device(name)


def load_meta_dataset(root: Path, device: torch.device | str = "cpu") -> tuple[MetaDatasetSettings, list[TaskRecord]]:
    """Read a finished meta-dataset; a missing or unfinished one is a ``CheckpointError`` saying how to finish it."""
    manifest = root / "meta.json"
    if not manifest.is_file():
        raise CheckpointError(f"No meta-dataset at {root} (no meta.json). Build one with `oral6 dass build-meta --out {root}`.")
    settings = parse_settings(json.loads(manifest.read_text()))
    records = []
    for task, split in settings.splits().items():
        teacher_path = root / task / "teacher.pt"
        paths = [root / task / "students" / f"{i:04d}.json" for i in range(settings.students_per_task)]
        if not teacher_path.is_file() or not all(p.is_file() for p in paths):
            raise CheckpointError(
                f"The meta-dataset at {root} is unfinished (task {task!r}); run `oral6 dass build-meta --out {root}` "
                f"again with the same settings to finish it."
            )
        teacher, acc = load_teacher(teacher_path, device)
        students = []
        for p in paths:
            row = json.loads(p.read_text())
            students.append(StudentRecord(Architecture.from_dict(row["arch"]), row["num_params"], row["flops"], row["val_accuracy"], row["test_accuracy"]))
        records.append(TaskRecord(task, split, teacher, acc, students))
    return settings, records
