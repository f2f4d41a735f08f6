"""DaSS's prediction network and the encoded inputs it reads.

``ŷ = W₂ tanh(W₁ [g_S(f_S(z)); A a; g_T(f_T(z))] + b₁) + b₂`` where ``z`` is one fixed noise input,
``f_S`` the remapped student's and ``f_T`` the teacher's last-stage maps, ``g`` small conv encoders
(conv3×3 s2 → ReLU → conv3×3 s2 → ReLU → global pool) and ``a`` the architecture vector.
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


class DaSSNet(nn.Module):
    """MLP head over [student functional enc; architecture enc; teacher functional enc] (or the arch enc alone)."""

    def __init__(self, feature_channels: int, arch_dim: int, hidden_channels: int, out_channels: int,
                 arch_features: int, hidden: int, functional: bool = True) -> None:
        super().__init__()
        self.functional = functional
        width = arch_features
        if functional:
            self.student_encoder = FunctionalEncoder(feature_channels, hidden_channels, out_channels)
            self.teacher_encoder = FunctionalEncoder(feature_channels, hidden_channels, out_channels)
            width += 2 * out_channels
        self.arch_encoder = nn.Linear(arch_dim, arch_features)
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, student_maps: Tensor, arch_vectors: Tensor, teacher_map: Tensor) -> Tensor:
        """Predicted accuracy of each of the N students: ``[N]``."""
        parts = []
        if self.functional:
            parts.append(self.student_encoder(student_maps))
        parts.append(self.arch_encoder(arch_vectors))
        if self.functional:
            parts.append(self.teacher_encoder(teacher_map.unsqueeze(0)).expand(arch_vectors.shape[0], -1))
        return self.head(torch.cat(parts, 1)).squeeze(1)


@dataclass
class EncodedTask:
    """One task as the predictor sees it: teacher encoding and accuracy, students' maps and arch vectors."""

    name: str
    teacher_map: Tensor
    teacher_arch: Tensor
    teacher_accuracy: float
    student_maps: Tensor
    student_archs: Tensor
    accuracies: Tensor | None = None

    def subset(self, index: Tensor) -> "EncodedTask":
        """The same task restricted to the students in ``index``."""
        acc = None if self.accuracies is None else self.accuracies[index]
        return EncodedTask(self.name, self.teacher_map, self.teacher_arch, self.teacher_accuracy,
                           self.student_maps[index], self.student_archs[index], acc)


def noise_input(input_shape: Sequence[int], device: torch.device, seed: int) -> Tensor:
    """The one fixed Gaussian noise image fed to teacher and students, ``[1, *input_shape]``."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randn((1, *input_shape), generator=generator, device=device)


@torch.no_grad()
def encode_task(name: str, teacher: DaSSResNet, archs: Sequence[Architecture], teacher_accuracy: float,
                input_shape: Sequence[int], noise_seed: int, accuracies: Sequence[float] | None = None) -> EncodedTask:
    """Remap every student from the teacher and record teacher and student last-stage maps on the noise input."""
    space = teacher_space(teacher)
    device = next(teacher.parameters()).device
    z = noise_input(input_shape, device, noise_seed)
    teacher.eval()
    teacher_map = teacher.forward_features(z)[0]
    maps = torch.cat([remapped_features(teacher, a, z) for a in archs]) if archs else teacher_map.new_zeros((0, *teacher_map.shape))
    vectors = torch.stack([space.encode(a) for a in archs]).to(device) if archs else teacher_map.new_zeros((0, space.encoding_size))
    acc = None if accuracies is None else torch.tensor(list(accuracies), dtype=torch.float32).to(device)
    return EncodedTask(name, teacher_map, space.encode(space.teacher).to(device), float(teacher_accuracy), maps, vectors, acc)
