"""The loop hands a pruner's masks to an optimizer that defines set_masks: at the start, after resume, when they change."""

import torch

from oral6_core import registry
from oral6_core.components import OptimizerFactory, Pruner
from oral6_core.config import TrainConfig
from oral6_core.training import fit

NAME = "body.1.weight"


class ScheduledPruner(Pruner):
    """One mask over the mlp's first weight: pruned rows grow at step 5 (a new tensor) and step 9 (in place)."""

    name = "scheduled"

    def on_train_start(self, ctx):
        self.weight = dict(ctx.model.named_parameters())[NAME]
        self.mask = torch.ones_like(self.weight, dtype=torch.bool)
        self.mask[0] = False
        self._apply()

    def on_step_end(self, step, total_steps):
        if step == 5:
            self.mask = self.mask.clone()
            self.mask[1] = False
        elif step == 9:
            self.mask[2] = False
        self._apply()

    @torch.no_grad()
    def _apply(self):
        self.weight.mul_(self.mask)

    def masks(self):
        return {NAME: self.mask}

    def sparsity(self):
        return {"overall": 1 - self.mask.float().mean().item()}

    def load_state_dict(self, state):
        self.mask = state["masks"][NAME].clone()
        self._apply()


class MaskedSGD(torch.optim.SGD):
    """SGD that records every set_masks call: (step it came before, pruned rows per parameter)."""

    def __init__(self, params, calls):
        super().__init__(params, lr=0.01)
        self.calls, self.steps = calls, 0

    def step(self, closure=None):
        self.steps += 1
        return super().step(closure)

    def set_masks(self, masks):
        self.calls.append((self.steps, {p: int((~m).all(dim=1).sum()) for p, m in masks.items()}))


class Recording(OptimizerFactory):
    name = "recording"

    def __init__(self, config=None):
        super().__init__(config)
        self.calls, self.built = [], []

    def build(self, model, task):
        self.built.append(model)
        return MaskedSGD(model.parameters(), self.calls)


def _bundle_and_model(seed=0):
    bundle = registry.create("dataset", "digits").load(seed=0)
    torch.manual_seed(seed)
    return bundle, registry.create("model", "mlp").build(bundle.input_shape, bundle.num_classes)


def test_masks_reach_the_optimizer_at_the_start_and_only_when_they_change():
    bundle, model = _bundle_and_model()
    factory = Recording()
    fit(model, bundle, factory, TrainConfig(epochs=1, progress=False, checkpoint=False), pruner=ScheduledPruner())
    weight = dict(model.named_parameters())[NAME]
    # before step 1, then after the steps that replaced (5) and modified in place (9) the mask; never otherwise
    assert [(step, rows[weight]) for step, rows in factory.calls] == [(0, 1), (5, 2), (9, 3)]
    assert all(list(rows) == [weight] for _, rows in factory.calls)


def test_masks_reach_the_optimizer_again_after_resume(tmp_path):
    bundle, model = _bundle_and_model()
    train = TrainConfig(epochs=1, progress=False, checkpoint_every=7)
    fit(model, bundle, Recording(), train, pruner=ScheduledPruner(), out_dir=tmp_path)
    bundle, model = _bundle_and_model(seed=1)
    resumed = Recording()
    fit(model, bundle, resumed, train.model_copy(update={"epochs": 2}), pruner=ScheduledPruner(), out_dir=tmp_path,
        resume=True)
    weight = dict(model.named_parameters())[NAME]
    assert resumed.calls[0] == (0, {weight: 3})  # the checkpoint's masks, before the first resumed step
    assert len(resumed.calls) == 1


def test_an_optimizer_without_set_masks_trains_with_a_pruner_as_before():
    bundle, model = _bundle_and_model()
    result = fit(model, bundle, registry.create("optimizer", "sgd"), TrainConfig(epochs=1, progress=False,
                 checkpoint=False), pruner=ScheduledPruner())
    assert result.history[-1]["sparsity"] > 0
