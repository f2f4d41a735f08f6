"""The CLI end to end, in-process; workflow commands run against small test-only plugins."""

import json
import sys
import types

import pytest
import torch
from torch import nn

from oral6_core import registry
from oral6_core.components import Adapter, Candidate, DatasetSource, Environment, GenerativeModel, Predictor, Representation, Task
from oral6_core.data import ArrayDataset, DataBundle
from oral6_core.config import ComponentConfig
from oral6_core.hookspecs import hookimpl
from oral6_core.io import load_torch, save_torch
from oral6_core.metrics import evaluate
from oral6_core.training import load_trained_model
from oral6_core.models.nets import MLP

FAST = ["--no-progress", "--epochs", "2"]


def test_train_defaults_print_a_results_table(cli, tmp_path):
    code, out = cli("train", "--out", tmp_path / "run", *FAST)
    assert code == 0, out
    assert "test_accuracy" in out and "best val accuracy" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["model"] == "mlp" and summary["final"]["test_accuracy"] > 0.5


def test_train_with_options_and_resume(cli, tmp_path):
    run = tmp_path / "run"
    code, out = cli("train", "--model", "cnn", "--optimizer", "adam", "--set", "optimizer.lr=0.003", "--set", "model.channels=[8,16]",
                    "--out", run, "--no-progress", "--epochs", "1")
    assert code == 0, out
    code, out = cli("train", "--resume", run, "--epochs", "2", "--no-progress")
    assert code == 0, out
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


@pytest.mark.parametrize("args, message", [
    (["train", "--optimizer", "fishlegg"], "Unknown optimizer 'fishlegg'. Known optimizers:"),
    (["train", "--set", "optimizer.lr=-1"], "optimizer.lr: Input should be greater than 0"),
    (["train", "--set", "optimizer.learning_rate=0.1"], "optimizer.learning_rate: unknown option"),
    (["train", "--dataset", "torchvision:CIFAR10", "--set", "dataset.root=/nonexistent"], "The CIFAR10 files are not in /nonexistent"),
    (["train", "--model", "resnet20", "--dataset", "synthetic"], "needs image inputs"),
    (["train", "--resume", "/nonexistent/run"], "Cannot resume"),
    (["show", "optimizer", "nope"], "Unknown optimizer 'nope'"),
    (["bench", "run", "nope"], "Unknown benchmark 'nope'"),
])
def test_bad_input_is_one_paragraph_and_exit_2(cli, args, message):
    code, out = cli(*args)
    assert code == 2
    assert message in out and "Traceback" not in out


def test_show_and_list(cli):
    code, out = cli("show", "optimizer", "sgd")
    assert code == 0 and "momentum" in out and "Heavy-ball momentum" in out
    code, out = cli("list-plugins")
    assert code == 0 and "builtin" in out and "oral6-core" in out
    code, out = cli("bench", "list")
    assert code == 0


# --------------------------------------------------------------------------- test-only plugins


class LabelCopy(Adapter):
    """Trains the student on the black box's top-1 labels."""

    name = "test-label-copy"

    class Config(ComponentConfig):
        steps: int = 30

    def adapt(self, black_box, target_data, student):
        assert bool((target_data.y == -1).all()), "target labels leaked to the adapter"
        labels = black_box(target_data.x).argmax(1)
        opt = torch.optim.Adam(student.parameters(), lr=3e-3)
        for _ in range(self.config.steps):
            opt.zero_grad()
            nn.functional.cross_entropy(student(target_data.x), labels).backward()
            opt.step()
        return student


class WidthCandidate(Candidate):
    def __init__(self, width: int):
        self.width = width
        self.num_params = sum(p.numel() for p in MLP(64, 10, (width,)).parameters())

    def describe(self):
        return f"mlp-{self.width}"

    def build(self, num_classes):
        return MLP(64, num_classes, (self.width,))

    def model_spec(self):
        return "mlp", {"hidden": [self.width]}


class BiggestIsBest(Predictor):
    """Predicts that bigger students distil better."""

    name = "test-biggest"

    def candidates(self, task):
        return [WidthCandidate(w) for w in (4, 8, 16, 32, 64)]

    def predict(self, candidates, task):
        return torch.tensor([float(c.num_params) for c in candidates])

    def distil(self, candidate, task):
        student = candidate.build(task.bundle.num_classes)
        return student, evaluate(student, task.bundle.test, task.bundle.task, task.device)["accuracy"]


class PlainCandidate(WidthCandidate):
    def model_spec(self):
        return None


class Unbuildable(BiggestIsBest):
    """Candidates that do not name the model builder that makes them."""

    name = "test-unbuildable"

    def candidates(self, task):
        return [PlainCandidate(8)]


class Streams(DatasetSource):
    """Two environments of a two-factor toy stream."""

    name = "test-stream"

    def load(self, seed=0):
        factors = torch.cartesian_prod(torch.arange(4), torch.arange(4))
        x = torch.cat([factors.float(), torch.zeros(len(factors), 2)], 1)
        envs = [Environment(f"env{i}", ArrayDataset(x, factors), ["a", "b"], ["a", "b"][: i + 1]) for i in range(2)]
        return DataBundle("test-stream", envs[0].data, None, None, Task("gaussian", 0, (4,)), stream=envs, factor_names=["a", "b"])


class Identity(GenerativeModel):
    """Codes are the inputs."""

    name = "test-identity"

    def fit(self, environments, on_environment_end=None):
        for i, env in enumerate(environments):
            if on_environment_end:
                on_environment_end(i, env)

    def encode(self, x):
        return x

    def decode(self, z):
        return z

    def sample(self, n):
        return torch.zeros(n, 4)


class StoredWeights(Representation):
    """Keeps the weights as they are (compression ratio 1)."""

    name = "test-stored"

    def fit(self, model, data):
        self.state = {k: v.clone() for k, v in model.state_dict().items()}
        self.model = model

    def reconstruct(self):
        return self.model

    def num_parameters(self):
        return sum(p.numel() for p in self.model.parameters())

    represented_parameters = num_parameters

    def save(self, path):
        save_torch(self.state, path)

    def load(self, path):
        self.state = load_torch(path)


class WorkflowPlugin:
    @hookimpl
    def oral6_adapters(self):
        return [LabelCopy]

    @hookimpl
    def oral6_predictors(self):
        return [BiggestIsBest, Unbuildable]

    @hookimpl
    def oral6_datasets(self):
        return [Streams]

    @hookimpl
    def oral6_generative_models(self):
        return [Identity]

    @hookimpl
    def oral6_representations(self):
        return [StoredWeights]


@pytest.fixture
def workflow_plugin(register_plugin):
    register_plugin(WorkflowPlugin(), "test-workflows")


def test_adapt_reports_target_accuracy_and_queries(cli, workflow_plugin, tmp_path):
    code, out = cli("adapt", "--adapter", "test-label-copy", "--source", "digits", "--target", "digits", "--model", "mlp",
                    "--source-epochs", "3", "--out", tmp_path)
    assert code == 0, out
    report = json.loads((tmp_path / "adapt.json").read_text())
    assert report["black_box_queries"] == 1168
    assert report["adapted_accuracy_on_target"] > 0.7
    assert report["options"]["adapter"] == {"steps": 30} and report["options"]["source_epochs"] == 3 and report["seed"] == 0
    assert report["outputs"] == {"student": "student.pt"} and report["versions"]["torch"] == torch.__version__


def test_adapt_rejects_mismatched_domains(cli, workflow_plugin):
    code, out = cli("adapt", "--adapter", "test-label-copy", "--source", "synthetic", "--target", "digits")
    assert code == 2 and "cannot label the other" in out


def test_search_honours_the_budget(cli, workflow_plugin, tmp_path):
    code, out = cli("train", "--out", tmp_path / "teacher", *FAST)
    assert code == 0
    budget = WidthCandidate(16).num_params
    code, out = cli("search", "--predictor", "test-biggest", "--dataset", "digits", "--teacher", tmp_path / "teacher" / "checkpoint.pt",
                    "--budget-params", budget, "--top-k", "2", "--distil", "--out", tmp_path / "search")
    assert code == 0, out
    assert "mlp-16" in out and "mlp-32" not in out and "3 candidates" in out
    record = json.loads((tmp_path / "search" / "search.json").read_text())
    assert [r["candidate"] for r in record["ranked"]] == ["mlp-16", "mlp-8", "mlp-4"] and len(record["top"]) == 2
    assert record["options"]["budget_params"] == budget and record["outputs"] == {"student": "checkpoint.pt"}
    assert load_torch(tmp_path / "search" / "checkpoint.pt")["candidate"] == "mlp-16"
    student, run = load_trained_model(tmp_path / "search" / "checkpoint.pt")  # an ordinary checkpoint: rebuilt from its record
    assert run["model"] == "mlp" and run["options"]["model"] == {"hidden": [16]}
    accuracy = evaluate(student, registry.create("dataset", "digits").load().test, Task(), torch.device("cpu"))["accuracy"]
    assert accuracy == record["distilled_accuracy"]
    code, out = cli("search", "--predictor", "test-biggest", "--dataset", "digits", "--teacher", tmp_path / "missing.pt")
    assert code == 2 and "No checkpoint" in out
    code, out = cli("search", "--predictor", "test-unbuildable", "--dataset", "digits", "--teacher", tmp_path / "teacher" / "checkpoint.pt",
                    "--distil", "--out", tmp_path / "unbuildable")
    assert code == 2 and "model_spec()" in out and not (tmp_path / "unbuildable" / "checkpoint.pt").exists()


def test_fit_generative_scores_each_seen_environment(cli, workflow_plugin, tmp_path, monkeypatch):
    calls = []

    def fake_scores(encode, data, factor_names, num_samples=2000, seed=0):
        calls.append(len(data))
        return {"mig": 1.0}

    monkeypatch.setitem(sys.modules, "oral6_core.metrics.disentanglement", types.SimpleNamespace(evaluate_representation=fake_scores))
    code, out = cli("fit-generative", "--model", "test-identity", "--dataset", "test-stream", "--out", tmp_path)
    assert code == 0, out
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert [(r["after"], r["environment"]) for r in record["rows"]] == [(1, "env0"), (2, "env0"), (2, "env1")]
    assert record["workflow"] == "fit-generative" and record["seed"] == 0 and "dataset_options" in record["options"]
    assert record["summary"]["final_mig"] == 1.0 and record["summary"]["active_dims"] == [2, 2]  # codes = inputs: two varying columns
    assert "After the last environment" in out
    code, out = cli("fit-generative", "--model", "test-identity", "--dataset", "digits")
    assert code == 2 and "no stream" in out


def test_represent_rebuilds_and_reports_sizes(cli, workflow_plugin, tmp_path):
    cli("train", "--out", tmp_path, *FAST)
    code, out = cli("represent", "--method", "test-stored", "--checkpoint", tmp_path / "checkpoint.pt")
    assert code == 0, out
    assert "compression ratio │ 1.0000" in out and (tmp_path / "test-stored-representation.pt").is_file()
    record = json.loads((tmp_path / "test-stored-represent.json").read_text())
    assert record["compression_ratio"] == 1.0 and record["options"]["model"] == "mlp"
    assert record["outputs"] == {"representation": "test-stored-representation.pt"}
    code, out = cli("represent", "--method", "test-stored", "--checkpoint", tmp_path / "checkpoint.pt", "--model", "cnn",
                    "--out", tmp_path / "other")
    assert code == 2 and "holds a 'mlp' model" in out and not (tmp_path / "other").exists()


def test_console_script_prints_warnings_as_one_plain_line(monkeypatch, capsys):
    import warnings

    from oral6_core import cli as cli_module

    def warn_like_a_workflow() -> None:
        warnings.warn("the predictor has not converged; raise --set representation.steps", UserWarning)

    monkeypatch.setattr(cli_module, "app", warn_like_a_workflow)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored after the test
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        cli_module.main()
    err = capsys.readouterr().err
    assert err == "Warning: the predictor has not converged; raise --set representation.steps\n"
