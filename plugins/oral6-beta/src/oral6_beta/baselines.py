"""The two lower baselines: the black box itself, and plain knowledge distillation from its outputs."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from oral6_core.components import Adapter, BlackBox
from oral6_core.config import ComponentConfig

from .augment import Views
from .common import TrainingConfig, black_box_teacher, build_optimizer, decay_learning_rate, minibatches, unlabelled_inputs
from .losses import kl_to_teacher
from .networks import attach_bottleneck


class BlackBoxPredictor(nn.Module):
    """Predicts with the black box itself: log of its (top-k) outputs as logits; queries it at every call."""

    def __init__(self, black_box: BlackBox) -> None:
        super().__init__()
        self._black_box = black_box

    def forward(self, x: Tensor) -> Tensor:
        return self._black_box(x).to(x.device).clamp_min(1e-8).log()


class SourceOnlyConfig(ComponentConfig):
    """No options: the black box predicts the target domain unchanged."""


class SourceOnlyAdapter(Adapter):
    """No adaptation: the black box's own predictions on the target domain (queries at prediction time)."""

    name = "source-only"
    Config = SourceOnlyConfig

    def adapt(self, black_box: BlackBox, target_data: torch.utils.data.Dataset, student: nn.Module) -> nn.Module:
        """Return a module that forwards inputs to the black box; the student is not trained."""
        unlabelled_inputs(target_data)
        return BlackBoxPredictor(black_box)


class DistillConfig(TrainingConfig):
    """Distillation uses only the shared training options."""


class DistillAdapter(Adapter):
    """Knowledge distillation: fit the student to the smoothed black-box outputs with KL(P ‖ p) (NLL-KL baseline)."""

    name = "distill"
    Config = DistillConfig

    def adapt(self, black_box: BlackBox, target_data: torch.utils.data.Dataset, student: nn.Module) -> nn.Module:
        """Minimise KL(P ‖ p) over the target set with DINE's optimiser and schedule, nothing else."""
        c: DistillConfig = self.config  # type: ignore[assignment]
        torch.manual_seed(c.seed)
        x = unlabelled_inputs(target_data).to(next(iter(student.parameters())).device)
        net = attach_bottleneck(student, x, black_box.num_classes, c.bottleneck_dim)
        teacher = black_box_teacher(black_box, x, c)
        optimizer, views = build_optimizer(net, c), Views(c.augment)
        generator = torch.Generator().manual_seed(c.seed)
        total = c.epochs * max(len(x) // c.batch_size, 1)
        step = 0
        net.train()
        while step < total:
            for index in minibatches(len(x), c.batch_size, generator, x.device):
                step += 1
                decay_learning_rate(optimizer, step / total, power=1.5)
                loss = kl_to_teacher(net(views.weak(x[index])).softmax(1), teacher[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if step >= total:
                    break
        return net.eval()
