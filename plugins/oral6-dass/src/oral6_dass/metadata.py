"""The meta-dataset: per task a trained teacher and the same students distilled from it twice.

A build folder holds (every file written atomically, so an interrupted build resumes without
losing a finished distillation)::

    meta.json                           the settings of the latest build
    <task>/teacher.pt                   teacher weights, space and accuracies
    <task>/students/<index>-<rep>.json  one distillation of a student: its accuracies and cost
    meta-dataset.json                   the compact export (written when the build finishes)

The compact export is what meta-training reads: settings, and per task the teacher's accuracy and
last-stage maps on the fixed noise input, and per student its architecture, sizes, remapped maps
and the accuracies of every repeat. The noise ceiling of a task is the Spearman correlation
between two independent distillations (repeats 0 and 1) of its students. The plugin ships one
export (``SHIPPED``); ``oral6 dass build-meta`` with the default settings rebuilds it.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from oral6_core import registry
from oral6_core.config import TrainConfig, format_validation_error
from oral6_core.errors import CheckpointError, ConfigError
from oral6_core.io import load_torch, save_torch, write_json
from oral6_core.metrics import evaluate
from oral6_core.progress import Progress, shown
from oral6_core.training import fit, resolve_device, seed_everything

from .distill import DistilSettings, distil
from .meta import rank_correlations
from .network import DaSSResNet
from .predictor_net import noise_input
from .remap import remap_teacher, remapped_features
from .space import Architecture, SearchSpace
from .tasks import TASK_INPUT_SHAPE, TASKS, load_task

Split = Literal["train", "val", "test"]
FORMAT = 1
SHIPPED = Path(__file__).parent / "data" / "meta-dataset-v2.json"
EXPORT_NAME = "meta-dataset.json"
# Settings that may change between builds into one folder (adding tasks, students or repeats extends it).
EXTENSIBLE = ("train_tasks", "val_tasks", "test_tasks", "students_per_task", "repeats")


class MetaDatasetSettings(BaseModel):
    """What the meta-dataset holds: task splits (test tasks are unseen), teachers, students and repeats."""

    model_config = ConfigDict(extra="forbid")

    train_tasks: list[str] = Field(
        ["shapes-4", "shapes-4-noisy", "shapes-6", "shapes-6-noisy", "stripes", "stripes-noisy", "textures-4", "scales",
         "pairs", "quadrants"],
        description="Tasks the predictor is meta-trained on.")
    val_tasks: list[str] = Field(["landolt"], description="Held-out tasks that select the meta-training checkpoint.")
    test_tasks: list[str] = Field(["arrows", "glyphs", "symmetry-noisy"], description="Unseen tasks, held out whole.")
    students_per_task: int = Field(32, ge=2, description="Distilled students per task (the same students in every task).")
    repeats: int = Field(2, ge=1, description="Independent distillations per student (the label is their mean; 2+ gives the noise ceiling).")
    teacher_widths: list[int] = Field([16, 32, 64, 64], min_length=1, description="Teacher channels per stage.")
    teacher_depths: list[int] = Field([2, 2, 2, 2], min_length=1, description="Teacher blocks per stage (students keep 1..d).")
    teacher_epochs: int = Field(8, ge=1, description="Teacher training epochs (Adam).")
    teacher_lr: float = Field(3e-3, gt=0, description="Teacher learning rate.")
    distil: DistilSettings = Field(default_factory=lambda: DistilSettings(epochs=2, lr=1e-3, batch_size=128, val_epochs=2),
                                   description="How each student is distilled (2 epochs from its remapped weights, lr 1e-3 cosine-decayed, batch 128).")
    init: Literal["remap", "random"] = Field("remap", description="Student initialisation: the teacher's remapped weights, or random.")
    noise_seed: int = Field(0, description="Seed of the fixed noise input of the exported functional encodings.")
    seed: int = Field(0, description="Seed of the student sample and of training.")

    def model_post_init(self, _context: object) -> None:
        """Reject unknown tasks, a task in two splits, and a teacher whose widths and depths disagree."""
        every = self.train_tasks + self.val_tasks + self.test_tasks
        for name in every:
            if name not in TASKS:
                raise ValueError(f"unknown DaSS task {name!r}; the known tasks are {', '.join(TASKS)}")
        if len(set(every)) != len(every):
            raise ValueError("a task appears in more than one split (or twice); unseen tasks must be held out whole")
        if not self.train_tasks:
            raise ValueError("the meta-dataset needs at least one training task")
        if len(self.teacher_widths) != len(self.teacher_depths):
            raise ValueError("teacher_widths and teacher_depths need one entry per stage")

    def splits(self) -> dict[str, Split]:
        """Task name -> split."""
        return {**{t: "train" for t in self.train_tasks}, **{t: "val" for t in self.val_tasks}, **{t: "test" for t in self.test_tasks}}

    def space(self) -> SearchSpace:
        """The students' space (every task gives 1-channel images)."""
        return SearchSpace(TASK_INPUT_SHAPE[0], tuple(self.teacher_widths), tuple(self.teacher_depths))

    def students(self) -> list[Architecture]:
        """The students, the same in every task and on every run (more students extend the list)."""
        return self.space().sample_many(self.students_per_task, self.seed * 1_000_003 + 17)


def parse_settings(values: dict) -> MetaDatasetSettings:
    """Validate settings with errors phrased as ``meta.OPTION: message``."""
    try:
        return MetaDatasetSettings(**values)
    except ValidationError as exc:
        message = format_validation_error(exc, "meta").replace("Value error, ", "")
        raise ConfigError(f"Invalid meta-dataset settings: {message}. See `oral6 dass build-meta --help` and README.md.") from None


@dataclass
class StudentRecord:
    """One student of a task: architecture, sizes, remapped maps and the accuracies of each distillation."""

    arch: Architecture
    num_params: int
    flops: int
    val_accuracies: list[float]
    test_accuracies: list[float]
    features: torch.Tensor

    @property
    def val_accuracy(self) -> float:
        """The label: mean validation accuracy over the repeats."""
        return statistics.mean(self.val_accuracies)

    @property
    def test_accuracy(self) -> float:
        """Mean test accuracy over the repeats."""
        return statistics.mean(self.test_accuracies)


@dataclass
class TaskRecord:
    """One task of the meta-dataset: split, teacher accuracy and maps, distilled students."""

    name: str
    split: Split
    num_classes: int
    teacher_accuracy: float
    teacher_features: torch.Tensor
    students: list[StudentRecord]

    @property
    def labels(self) -> torch.Tensor:
        """The students' mean validation accuracies."""
        return torch.tensor([s.val_accuracy for s in self.students])

    @property
    def ceiling(self) -> float | None:
        """Spearman between the first two distillations of the students (None with one repeat)."""
        if any(len(s.val_accuracies) < 2 for s in self.students):
            return None
        first, second = (torch.tensor([s.val_accuracies[r] for s in self.students]) for r in (0, 1))
        return rank_correlations(first, second)[0]


def _student_path(root: Path, task: str, index: int, repeat: int) -> Path:
    return root / task / "students" / f"{index:04d}-{repeat}.json"


def _check_settings(root: Path, settings: MetaDatasetSettings) -> None:
    manifest = root / "meta.json"
    if manifest.is_file():
        saved = json.loads(manifest.read_text())
        new = settings.model_dump(mode="json")
        changed = sorted(k for k in set(saved) | set(new) if k not in EXTENSIBLE and saved.get(k) != new.get(k))
        if changed:
            raise ConfigError(
                f"{root} holds a meta-dataset built with other settings ({', '.join(changed)} differ; see {manifest}). "
                f"Only {', '.join(EXTENSIBLE)} may change to extend it; build into a new folder with --out otherwise."
            )
    write_json(settings.model_dump(mode="json"), manifest)


def _train_teacher(root: Path, task: str, settings: MetaDatasetSettings, device: str) -> None:
    path = root / task / "teacher.pt"
    if path.is_file():
        return
    seed_everything(settings.seed)
    bundle = load_task(task)
    space = settings.space()
    teacher = DaSSResNet(space, space.teacher, bundle.num_classes)
    adam = registry.create("optimizer", "adam", {"lr": settings.teacher_lr})
    started = time.process_time()
    run = fit(teacher, bundle, adam, TrainConfig(epochs=settings.teacher_epochs, seed=settings.seed, device=device,
                                                 checkpoint=False, progress=False))
    dev = next(teacher.parameters()).device
    accs = {s: evaluate(run.model, getattr(bundle, s), bundle.task, dev)["accuracy"] for s in ("val", "test")}
    save_torch({"state": teacher.state_dict(), "widths": space.widths, "depths": space.max_depths, "in_channels": space.in_channels,
                "num_classes": bundle.num_classes, "val_accuracy": accs["val"], "test_accuracy": accs["test"],
                "cpu_seconds": time.process_time() - started}, path)


def load_teacher(path: Path, device: torch.device | str = "cpu") -> tuple[DaSSResNet, float]:
    """A cached teacher and its validation accuracy."""
    ckpt = load_torch(path, map_location=device)
    space = SearchSpace(ckpt["in_channels"], tuple(ckpt["widths"]), tuple(ckpt["depths"]))
    teacher = DaSSResNet(space, space.teacher, ckpt["num_classes"]).to(device)
    teacher.load_state_dict(ckpt["state"])
    return teacher.eval(), float(ckpt["val_accuracy"])


def build_meta_dataset(root: Path, settings: MetaDatasetSettings, device: str = "cpu", progress: bool = True) -> Path:
    """Train every missing teacher and run every missing distillation, then write the compact export.

    Finished files are kept as they are. ``progress`` shows a bar on a terminal, or one line per
    distillation in a log file. Returns the export's path.
    """
    root.mkdir(parents=True, exist_ok=True)
    _check_settings(root, settings)
    space, archs = settings.space(), settings.students()
    tasks = settings.test_tasks + settings.val_tasks + settings.train_tasks  # held-out tasks first: their ceilings come first
    jobs = [(t, i, r) for t in tasks for i in range(len(archs)) for r in range(settings.repeats)]
    done = sum(1 for job in jobs if _student_path(root, *job).is_file())
    with shown(progress), Progress("dass build-meta", total=len(jobs), completed=done) as bar:
        for task in tasks:
            missing = [(i, r) for i in range(len(archs)) for r in range(settings.repeats) if not _student_path(root, task, i, r).is_file()]
            if not missing:
                continue
            bar.update(description=f"{task}: teacher")
            _train_teacher(root, task, settings, device)
            teacher, _ = load_teacher(root / task / "teacher.pt", resolve_device(device))
            bundle = load_task(task)
            for i, r in missing:
                bar.update(description=f"{task}: student {i + 1} repeat {r}")
                seed = settings.seed * 7919 + 104_729 * r + i
                seed_everything(seed)
                started, cpu = time.perf_counter(), time.process_time()
                student = remap_teacher(teacher, archs[i]) if settings.init == "remap" else DaSSResNet(space, archs[i], bundle.num_classes)
                result = distil(student, teacher, bundle, settings.distil, seed=seed)
                write_json({"index": i, "repeat": r, "arch": archs[i].to_dict(), "val_accuracy": result.val_accuracy,
                            "test_accuracy": result.test_accuracy, "history": result.history,
                            "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu},
                           _student_path(root, task, i, r))
                bar.stage(f"{task} student {i + 1}/{len(archs)} repeat {r}", bar.completed + 1,
                          val_accuracy=result.val_accuracy, seconds=time.perf_counter() - started)
    export = export_meta_dataset(root, settings)
    path = root / EXPORT_NAME
    write_json(export, path)
    return path


@torch.no_grad()
def export_meta_dataset(root: Path, settings: MetaDatasetSettings) -> dict[str, Any]:
    """The compact export of a finished build folder (a ``CheckpointError`` says how to finish an unfinished one)."""
    space, archs = settings.space(), settings.students()
    tasks, cpu_seconds = [], 0.0
    for task, split in settings.splits().items():
        paths = [[_student_path(root, task, i, r) for r in range(settings.repeats)] for i in range(len(archs))]
        if not (root / task / "teacher.pt").is_file() or not all(p.is_file() for row in paths for p in row):
            raise CheckpointError(f"The meta-dataset at {root} is unfinished (task {task!r}); run `oral6 dass build-meta "
                                  f"--out {root}` again with the same settings to finish it.")
        ckpt = load_torch(root / task / "teacher.pt")
        teacher, acc = load_teacher(root / task / "teacher.pt")
        z = noise_input(TASK_INPUT_SHAPE, torch.device("cpu"), settings.noise_seed)
        students = []
        for arch, row in zip(archs, paths):
            runs = [json.loads(p.read_text()) for p in row]
            cpu_seconds += sum(run.get("cpu_seconds", 0.0) for run in runs)
            students.append({"arch": arch.to_dict(), "num_params": space.num_params(arch, teacher.head.out_features),
                             "flops": space.flops(arch, TASK_INPUT_SHAPE[1:], teacher.head.out_features),
                             "val_accuracy": [run["val_accuracy"] for run in runs], "test_accuracy": [run["test_accuracy"] for run in runs],
                             "features": _rounded(remapped_features(teacher, arch, z)[0])})
        cpu_seconds += ckpt.get("cpu_seconds", 0.0)
        tasks.append({"name": task, "split": split, "num_classes": teacher.head.out_features, "teacher_accuracy": acc,
                      "teacher_test_accuracy": float(ckpt["test_accuracy"]),
                      "teacher_features": _rounded(teacher.forward_features(z)[0]), "students": students})
    data = {"format": FORMAT, "settings": settings.model_dump(mode="json"), "tasks": tasks}
    data["report"] = {**build_report(records_from_export(data)), "cpu_minutes": cpu_seconds / 60}
    return data


def _rounded(t: torch.Tensor) -> dict[str, Any]:
    return {"shape": list(t.shape), "values": [float(f"{v:.5g}") for v in t.flatten().tolist()]}


def _tensor(d: dict[str, Any]) -> torch.Tensor:
    return torch.tensor(d["values"], dtype=torch.float32).reshape(d["shape"])


def records_from_export(data: dict[str, Any]) -> list[TaskRecord]:
    """The tasks of a compact export as records."""
    records = []
    for t in data["tasks"]:
        students = [StudentRecord(Architecture.from_dict(s["arch"]), s["num_params"], s["flops"], s["val_accuracy"], s["test_accuracy"],
                                  _tensor(s["features"])) for s in t["students"]]
        records.append(TaskRecord(t["name"], t["split"], t["num_classes"], t["teacher_accuracy"], _tensor(t["teacher_features"]), students))
    return records


def build_report(records: list[TaskRecord]) -> dict[str, Any]:
    """Per task: teacher accuracy, students' mean and spread of accuracy, noise ceiling, and the mean
    Spearman of its student ranking with every other task's (1 would mean one ranking fits all tasks)."""
    rows = []
    for r in records:
        others = [rank_correlations(r.labels, o.labels)[0] for o in records if o is not r]
        rows.append({"task": r.name, "split": r.split, "teacher accuracy": r.teacher_accuracy, "mean accuracy": float(r.labels.mean()),
                     "accuracy sd": float(r.labels.std()), "noise ceiling": r.ceiling,
                     "rank agreement with other tasks": statistics.mean(others) if others else None})
    return {"tasks": rows}


def load_meta_dataset(path: Path | None = None) -> tuple[MetaDatasetSettings, list[TaskRecord]]:
    """Read a compact export (the shipped one when ``path`` is None) or a finished build folder."""
    path = SHIPPED if path is None else Path(path)
    if path.is_dir():
        manifest = path / "meta.json"
        if not manifest.is_file():
            raise CheckpointError(f"No meta-dataset at {path} (no meta.json). Build one with `oral6 dass build-meta --out {path}`.")
        export = path / EXPORT_NAME
        settings = parse_settings(json.loads(manifest.read_text()))
        data = json.loads(export.read_text()) if export.is_file() else export_meta_dataset(path, settings)
    elif path.is_file():
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            data = None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a DaSS meta-dataset export (format {FORMAT}); pass a file written by "
                                  f"`oral6 dass build-meta` ({EXPORT_NAME} in its folder) or the folder itself.")
    else:
        raise CheckpointError(f"No meta-dataset at {path}. Build one with `oral6 dass build-meta --out {path}`, "
                              f"or leave --meta out to use the one shipped with the plugin.")
    return parse_settings(data["settings"]), records_from_export(data)
