"""How far a teacher is from the meta-training teachers: feature scale, encoding and accuracy.

A meta-learned predictor extrapolates beyond its meta-training teachers; these checks say when
a search's teacher is outside their range so its scores are read with care.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .predictor_net import EncodedTask

SCALE_FACTOR = 2.0  # a feature RMS more than this factor outside the training range is unusual
DISTANCE_FACTOR = 1.5  # a normalised teacher map further than this × the training teachers' largest nearest-neighbour distance
ACCURACY_MARGIN = 0.1  # a teacher accuracy further than this outside the training range


def _rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).mean(-1).sqrt()


@dataclass
class TeacherStats:
    """The meta-training teachers' normalised maps (flattened), feature scales and accuracies."""

    maps: torch.Tensor
    scales: list[float]
    accuracies: list[float]

    @classmethod
    def of(cls, tasks: Sequence[EncodedTask]) -> "TeacherStats":
        return cls(torch.stack([t.teacher_map.detach().cpu().flatten() for t in tasks]), [t.feature_scale for t in tasks],
                   [t.teacher_accuracy for t in tasks])

    def to_dict(self) -> dict[str, Any]:
        return {"maps": self.maps.tolist(), "scales": self.scales, "accuracies": self.accuracies}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TeacherStats":
        return cls(torch.tensor(data["maps"]), list(data["scales"]), list(data["accuracies"]))

    def distance_threshold(self) -> float:
        """``DISTANCE_FACTOR`` × the largest distance from a training teacher to its nearest other one."""
        if len(self.maps) < 2:
            return math.inf
        d = _rms_distance(self.maps[:, None], self.maps[None]) + torch.eye(len(self.maps)) * 1e9
        return DISTANCE_FACTOR * float(d.min(1).values.max())

    def warnings(self, task: EncodedTask) -> list[str]:
        """One sentence per way the task's teacher is outside the meta-training teachers' range (none when inside)."""
        out = []
        lo, hi = min(self.scales), max(self.scales)
        if not lo / SCALE_FACTOR <= task.feature_scale <= hi * SCALE_FACTOR:
            out.append(f"the teacher's last-stage features have RMS {task.feature_scale:.3g}, far from the meta-training teachers' "
                       f"{lo:.3g}..{hi:.3g} (the encodings are normalised by it, but such a teacher was never seen)")
        distance = float(_rms_distance(task.teacher_map.detach().cpu().flatten()[None], self.maps).min())
        threshold = self.distance_threshold()
        if distance > threshold:
            out.append(f"the teacher's normalised encoding is {distance:.3g} from the nearest meta-training teacher "
                       f"(they lie within {threshold:.3g} of each other)")
        a_lo, a_hi = min(self.accuracies), max(self.accuracies)
        if not a_lo - ACCURACY_MARGIN <= task.teacher_accuracy <= a_hi + ACCURACY_MARGIN:
            out.append(f"the teacher's accuracy {task.teacher_accuracy:.3f} is outside the meta-training teachers' {a_lo:.3f}..{a_hi:.3f}")
        return out
