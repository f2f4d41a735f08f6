"""Loggers: TensorBoard event files and MLflow runs read back, resume, statuses, the hook, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from oral6_core.config import RunConfig, TrainConfig
from oral6_core.errors import ConfigError
from oral6_core.extras import MissingExtraError
from oral6_core.hookspecs import hookimpl
from oral6_core.loggers import Logger, LoggerGroup, RunInfo, TensorBoardLogger
from oral6_core.sweep import TrialPruned
from oral6_core.training import train


def _run(out: Path, loggers: dict, epochs: int = 2) -> RunConfig:
    return RunConfig(train=TrainConfig(epochs=epochs, progress=False, device="cpu"), out=out, loggers=loggers)


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_scalars_per_step_and_epoch_and_resume(tmp_path):
    out = tmp_path / "run"
    first = train(_run(out, {"tensorboard": {"every_n_steps": 5}}, epochs=1))
    steps_per_epoch = first.history[0]["step"]
    result = train(_run(out, {"tensorboard": {"every_n_steps": 5}}, epochs=2), resume=True)
    scalars = _scalars(out / "tensorboard")
    history = result.history
    assert scalars["val_accuracy"] == [(h["step"], pytest.approx(h["val_accuracy"])) for h in history]
    assert scalars["train_loss"] == [(h["step"], pytest.approx(h["train_loss"])) for h in history]
    assert [s for s, _ in scalars["step/train_loss"]] == list(range(5, 2 * steps_per_epoch + 1, 5))
    assert all(v == pytest.approx(0.05) for _, v in scalars["step/lr"])  # sgd's default rate
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 2  # one folder, continued


def test_tensorboard_writes_pngs_as_images(tmp_path):
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    png = tmp_path / "plot.png"
    Image.fromarray(np.full((6, 8, 3), 200, dtype=np.uint8)).save(png)
    logs = LoggerGroup([TensorBoardLogger()]).start(RunInfo(tmp_path, {"optimizer": {"lr": 0.1}}, "bench"))
    logs.log({"score": 1.5}, 0)
    logs.log_artifacts([png])
    logs.finish("completed")
    acc = EventAccumulator(str(tmp_path / "tensorboard-bench"))
    acc.Reload()
    image = acc.Images("plot")[0]
    assert (image.width, image.height) == (8, 6)
    assert acc.Scalars("score")[0].value == 1.5


def test_mlflow_run_is_read_back_and_resumed(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a file store starts in milliseconds; a new SQLite one takes seconds
    uri = (tmp_path / "mlruns").as_uri()
    out = tmp_path / "run"
    train(_run(out, {"mlflow": {"tracking_uri": uri, "experiment": "t"}}, epochs=1))
    result = train(_run(out, {"mlflow": {"tracking_uri": uri, "experiment": "t"}}, epochs=2), resume=True)
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["t"])
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["status"] == "FINISHED" and run["params.optimizer"] == "sgd" and run["params.train.epochs"] == "1"
    assert run["metrics.val_accuracy"] == pytest.approx(result.history[-1]["val_accuracy"])
    client = mlflow.MlflowClient(uri)
    assert [m.step for m in client.get_metric_history(run["run_id"], "val_accuracy")] == [h["step"] for h in result.history]
    assert {"summary.json", "config.json", "metrics.jsonl"} <= {a.path for a in client.list_artifacts(run["run_id"])}
    assert json.loads((out / "mlflow.json").read_text())["run_id"] == run["run_id"]


class Recorder(Logger):
    """Record every call (test logger)."""

    name = "recorder"
    calls: list = []

    def start(self, run):
        Recorder.calls.append(("start", run.workflow, run.resume))

    def log(self, metrics, step):
        Recorder.calls.append(("log", step, metrics.get("epoch")))

    def log_artifact(self, path):
        Recorder.calls.append(("artifact", path.name))

    def finish(self, status):
        Recorder.calls.append(("finish", status))


class RecorderPlugin:
    @staticmethod
    @hookimpl
    def oral6_loggers():
        return [Recorder]


@pytest.fixture
def recorder(register_plugin):
    register_plugin(RecorderPlugin, "recorder-plugin")
    Recorder.calls = []
    return Recorder.calls


def test_plugin_logger_through_the_hook_and_cli(cli, recorder, tmp_path):
    code, output = cli("train", "--epochs", "2", "--out", tmp_path / "run", "--logger", "recorder", "--no-progress")
    assert code == 0, output
    assert recorder[0] == ("start", "train", False) and recorder[-1] == ("finish", "completed")
    assert [c[2] for c in recorder if c[0] == "log"] == [1, 2]
    assert ("artifact", "summary.json") in recorder


@pytest.mark.parametrize("error, status", [(TrialPruned("pruned"), "pruned"), (ConfigError("bad"), "failed"),
                                           (KeyboardInterrupt(), "interrupted")])
def test_a_run_that_stops_finishes_its_loggers_with_a_status(recorder, tmp_path, error, status):
    def stop(row):
        raise error

    with pytest.raises(type(error)):
        train(_run(tmp_path / "run", {"recorder": {}}), on_epoch_end=stop)
    assert recorder[-1] == ("finish", status)
    assert sum(c[0] == "log" for c in recorder) == 1


def test_workflow_logs_its_report(cli, recorder, tmp_path):
    code, output = cli("bench", "run", "core-overhead", "--quick", "--out", tmp_path / "b", "--logger", "recorder", "--logger", "jsonl")
    assert code == 0, output
    assert recorder[0] == ("start", "bench", False) and recorder[-1] == ("finish", "completed")
    assert ("artifact", "results.json") in recorder and ("artifact", "overhead.png") in recorder
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics-bench.jsonl").read_text().splitlines()]
    assert rows[0]["model"] == "mlp" and rows[-1]["claims"] == 2


def test_missing_library_names_the_extra(cli, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    code, output = cli("train", "--epochs", "1", "--out", tmp_path / "run", "--logger", "mlflow", "--no-progress")
    assert code == 2 and "pip install oral6-core[mlflow]" in output
    with pytest.raises(MissingExtraError, match=r"oral6-core\[mlflow\]"):
        train(_run(tmp_path / "other", {"mlflow": {}}))


def test_logger_options_are_checked(cli, tmp_path):
    code, output = cli("train", "--out", tmp_path / "a", "--set", "logger.tensorboard.every_n_steps=5")
    assert code == 2 and "not selected" in output
    code, output = cli("train", "--out", tmp_path / "b", "--logger", "tensorboard", "--set", "logger.tensorboard.every=5")
    assert code == 2 and "every" in output
    code, output = cli("train", "--out", tmp_path / "c", "--logger", "nope")
    assert code == 2 and "Unknown logger 'nope'" in output
