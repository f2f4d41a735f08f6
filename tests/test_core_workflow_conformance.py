"""The conformance kit on every registered predictor, adapter, representation and generative model (fast options),
and on components that break each contract."""

from __future__ import annotations

import pytest
import torch

from oral6_core import registry
from oral6_core.components import Adapter, Candidate, GenerativeModel, Predictor, Representation
from oral6_core.hookspecs import hookimpl
from oral6_core.testing import WorkflowInputs, check_component, tiny_search_task

DASS_TEACHER = ("dass-resnet", {"widths": [16, 32, 64, 64], "depths": [2, 2, 2, 2]})  # the shipped meta-dataset's teacher
META = {"episodes": 2, "meta_batch": 1, "query_size": 4, "validate_every": 1, "hidden_channels": 4, "out_channels": 8, "hidden": 8}
FAST = {
    "predictor": {name: {"num_candidates": 6, **(META if name.startswith("dass") else {})} for name in registry.names("predictor")},
    "adapter": {"beta": {"epochs": 1, "finetune_epochs": 1, "bottleneck_dim": 8, "batch_size": 16},
                "dine": {"epochs": 1, "finetune_epochs": 1, "bottleneck_dim": 8, "batch_size": 16},
                "distill": {"epochs": 1, "bottleneck_dim": 8, "batch_size": 16}},
    "representation": {"nern": {"hidden": 8, "levels": 4, "steps": 4, "warmup_steps": 0, "kernel_batch": 32, "batch_size": 8,
                                "log_every": 2, "noise_size": 8, "probe_samples": 0, "progress": False}},
    "generative-model": {name: {"latent_dim": 4, "channels": [4, 4, 8, 8], "hidden": 16, "epochs_first": 1, "epochs_next": 1,
                                "batch_size": 32, "device": "cpu", **({"som_rows": 3, "som_cols": 3} if name == "cudos" else {})}
                         for name in registry.names("generative-model")},
}


def inputs_for(kind, name):
    if kind != "predictor":
        return None
    task = tiny_search_task(*DASS_TEACHER) if registry.lookup("predictor", name)[0].plugin == "dass" else None
    return WorkflowInputs(task=task)  # DaSS predictors meta-train on their shipped meta-dataset


@pytest.mark.parametrize("kind, name", [(k, n) for k in FAST for n in registry.names(k)])
def test_every_workflow_component_conforms(kind, name):
    torch.manual_seed(0)
    check_component(kind, name, FAST[kind].get(name), inputs=inputs_for(kind, name))


class Greedy(Adapter):
    """Queries the black box far more than its target needs."""

    name = "test-greedy"

    def adapt(self, black_box, target_data, student):
        for _ in range(20):
            black_box(target_data.x)
        return student


class Forgetful(Representation):
    """Stores the network but saves nothing of it."""

    name = "test-forgetful"

    def fit(self, model, data):
        self.model = model

    def reconstruct(self):
        return self.model

    def num_parameters(self):
        return 1

    def represented_parameters(self):
        return 1

    def save(self, path):
        path.write_text("nothing")

    def load(self, path):
        torch.manual_seed(1)
        self.model = registry.create("model", "resnet20", {"width": 2}).build((3, 8, 8), 4)


class Silent(GenerativeModel):
    """Never calls back after an environment."""

    name = "test-silent"

    def fit(self, environments, on_environment_end=None):
        pass

    def encode(self, x):
        return x.flatten(1)[:, :2]

    def decode(self, z):
        return z

    def sample(self, n):
        return torch.zeros(n, 2)


class Tiny(Candidate):
    """Claims ten parameters, but its model_spec builds an MLP."""

    num_params = 10

    def describe(self):
        return "tiny"

    def model_spec(self):
        return "mlp", {"hidden": [4]}


class WrongSpec(Predictor):
    """Scores one candidate whose model_spec does not build it."""

    name = "test-wrong-spec"

    def fit(self, meta_data):
        pass

    def candidates(self, task):
        return [Tiny()]

    def predict(self, candidates, task):
        return torch.zeros(len(candidates))

    def save(self, path):
        path.write_text("{}")

    def load(self, path):
        pass


class Broken:
    @hookimpl
    def oral6_predictors(self):
        return [WrongSpec]

    @hookimpl
    def oral6_adapters(self):
        return [Greedy]

    @hookimpl
    def oral6_representations(self):
        return [Forgetful]

    @hookimpl
    def oral6_generative_models(self):
        return [Silent]


def test_the_kit_catches_broken_workflow_components(register_plugin):
    register_plugin(Broken(), "broken-workflows")
    with pytest.raises(AssertionError, match="within 480"):
        check_component("adapter", "test-greedy")
    with pytest.raises(AssertionError, match="rebuilds another network"):
        check_component("representation", "test-forgetful")
    with pytest.raises(AssertionError, match="once per environment in order"):
        check_component("generative-model", "test-silent")
    with pytest.raises(AssertionError, match=r"model_spec\(\) .* builds \d+ parameters, but num_params says 10"):
        check_component("predictor", "test-wrong-spec")
