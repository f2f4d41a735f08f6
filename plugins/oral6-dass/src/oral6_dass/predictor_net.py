"""DaSS's prediction network and the encoded inputs it reads.

``ŷ = W₂ tanh(W₁ [g_S(f_S(z)); A a; g_T(f_T(z))] + b₁) + b₂`` where ``z`` is one fixed noise input,
``f_S`` the remapped student's and ``f_T`` the teacher's last-stage maps, ``g`` small conv encoders
(conv3×3 s2 → ReLU → conv3×3 s2 → ReLU → global pool) and ``a`` the architecture vector.

Both maps are divided by the teacher map's root mean square before encoding, so a teacher whose
activations are larger or smaller than the meta-training teachers' gives the same inputs (and the
same bounded adaptation step) as one of their scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from .network import DaSSResNet
from .remap import remapped_features, teacher_space
from .space import Architecture


class FunctionalEncoder(nn.Module):
    """conv3×3 stride 2 → ReLU → conv3×3 stride 2 → ReLU → global average pool."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden_channels, 3, 2, 1, bias=False)
        self.conv2 = nn.Conv2d(hidden_channels, out_channels, 3, 2, 1, bias=False)

    def forward(self, maps: Tensor) -> Tensor:
        return torch.relu(self.conv2(torch.relu(self.conv1(maps)))).mean((2, 3))


ENCODERS = ("student", "arch", "teacher")


class DaSSNet(nn.Module):
    """MLP head over [student functional enc; architecture enc; teacher functional enc], or a subset of them (ablations)."""

    def __init__(self, feature_channels: int, arch_dim: int, hidden_channels: int, out_channels: int,
                 arch_features: int, hidden: int, parts: tuple[str, ...] = ENCODERS) -> None:
        super().__init__()
        self.parts = tuple(p for p in ENCODERS if p in parts)
        if not self.parts:
            raise ValueError(f"DaSSNet needs at least one of {ENCODERS}")
        width = 0
        if "student" in self.parts:
            self.student_encoder = FunctionalEncoder(feature_channels, hidden_channels, out_channels)
            width += out_channels
        if "arch" in self.parts:
            self.arch_encoder = nn.Linear(arch_dim, arch_features)
            width += arch_features
        if "teacher" in self.parts:
            self.teacher_encoder = FunctionalEncoder(feature_channels, hidden_channels, out_channels)
            width += out_channels
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, student_maps: Tensor, arch_vectors: Tensor, teacher_map: Tensor) -> Tensor:
        """Predicted accuracy of each of the N students: ``[N]``."""
        parts = []
        if "student" in self.parts:
            parts.append(self.student_encoder(student_maps))
        if "arch" in self.parts:
            parts.append(self.arch_encoder(arch_vectors))
        if "teacher" in self.parts:
            parts.append(self.teacher_encoder(teacher_map.unsqueeze(0)).expand(arch_vectors.shape[0], -1))
        return self.head(torch.cat(parts, 1)).squeeze(1)


@dataclass
class EncodedTask:
    """One task as the predictor sees it: teacher encoding and accuracy, students' maps and arch vectors.

    The maps are normalised by the teacher map's RMS, ``feature_scale``."""

    name: str
    teacher_map: Tensor
    teacher_arch: Tensor
    teacher_accuracy: float
    student_maps: Tensor
    student_archs: Tensor
    accuracies: Tensor | None = None
    feature_scale: float = 1.0

    def to(self, device: torch.device | str) -> "EncodedTask":
        """The same task with its tensors on ``device``."""
        acc = None if self.accuracies is None else self.accuracies.to(device)
        return EncodedTask(self.name, self.teacher_map.to(device), self.teacher_arch.to(device), self.teacher_accuracy,
                           self.student_maps.to(device), self.student_archs.to(device), acc, self.feature_scale)

    def subset(self, index: Tensor) -> "EncodedTask":
        """The same task restricted to the students in ``index``."""
        acc = None if self.accuracies is None else self.accuracies[index]
        return EncodedTask(self.name, self.teacher_map, self.teacher_arch, self.teacher_accuracy,
                           self.student_maps[index], self.student_archs[index], acc, self.feature_scale)


def normalised_task(name: str, teacher_map: Tensor, student_maps: Tensor, teacher_arch: Tensor, student_archs: Tensor,
                    teacher_accuracy: float, accuracies: Sequence[float] | Tensor | None = None) -> EncodedTask:
    """An ``EncodedTask`` from raw maps: teacher and student maps divided by the teacher map's RMS."""
    scale = float(teacher_map.double().pow(2).mean().sqrt())
    if not scale > 0:
        scale = 1.0
    acc = None if accuracies is None else torch.as_tensor(accuracies, dtype=torch.float32).to(teacher_map.device)
    return EncodedTask(name, teacher_map / scale, teacher_arch, float(teacher_accuracy), student_maps / scale, student_archs, acc, scale)


def noise_input(input_shape: Sequence[int], device: torch.device, seed: int) -> Tensor:
    """The one fixed Gaussian noise image fed to teacher and students, ``[1, *input_shape]``."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randn((1, *input_shape), generator=generator, device=device)


@torch.no_grad()
def encode_task(name: str, teacher: DaSSResNet, archs: Sequence[Architecture], teacher_accuracy: float,
                input_shape: Sequence[int], noise_seed: int, accuracies: Sequence[float] | None = None) -> EncodedTask:
    """Remap every student from the teacher and record teacher and student last-stage maps on the noise input (normalised)."""
    space = teacher_space(teacher)
    device = next(teacher.parameters()).device
    z = noise_input(input_shape, device, noise_seed)
    teacher.eval()
    teacher_map = teacher.forward_features(z)[0]
    maps = torch.cat([remapped_features(teacher, a, z) for a in archs]) if archs else teacher_map.new_zeros((0, *teacher_map.shape))
    vectors = torch.stack([space.encode(a) for a in archs]).to(device) if archs else teacher_map.new_zeros((0, space.encoding_size))
    return normalised_task(name, teacher_map, maps, space.encode(space.teacher).to(device), vectors, teacher_accuracy, accuracies)
