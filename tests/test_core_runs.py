"""Run folders: one writer, no silent overwrite, clean stops on signals, exact resume mid-epoch, best.pt, records."""

import json
import os
import platform
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch

from oral6_core import io, registry
from oral6_core.components import DatasetSource, OptimizerFactory
from oral6_core.config import RunConfig, TrainConfig
from oral6_core.errors import ConfigError, RunFolderError, RunInterrupted, WriteError
from oral6_core.rundir import RunFolder
from oral6_core.hookspecs import hookimpl
from oral6_core.metrics import evaluate
from oral6_core.training import BEST, CHECKPOINT, fit, train

TINY = ["--no-progress", "--device", "cpu"]


class _TripSGD(torch.optim.SGD):
    """SGD that calls ``action`` right after its ``at``-th step."""

    def __init__(self, params, at, action):
        super().__init__(params, lr=0.05, momentum=0.9)
        self.at, self.action, self.count = at, action, 0

    def step(self, closure=None):
        out = super().step(closure)
        self.count += 1
        if self.count == self.at:
            self.action()
        return out


class Tripwire(OptimizerFactory):
    """Heavy-ball SGD that can raise a signal or an exception at a chosen step (None: never)."""

    name = "test-tripwire"

    def __init__(self, at=None, action=None):
        super().__init__()
        self.at, self.action = at, action

    def build(self, model, task):
        return _TripSGD(model.parameters(), self.at, self.action)


def _crash():
    raise RuntimeError("power cut")


def _fit(out, bundle, trip_at=None, action=None, resume=False, **train_opts):
    torch.manual_seed(0)
    model = registry.create("model", "mlp", {"dropout": 0.2}).build(bundle.input_shape, bundle.num_classes)
    return fit(model, bundle, Tripwire(trip_at, action), TrainConfig(epochs=2, progress=False, device="cpu", **train_opts),
               out_dir=out, resume=resume)


def _same_run(a, b):
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    untimed = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert untimed(a.history) == untimed(b.history)


def test_sigint_and_crashes_mid_epoch_resume_bit_identically_and_best_pt_is_the_selected_epoch(tmp_path):
    bundle = registry.create("dataset", "digits").load()  # 1,168 training digits: 19 steps per epoch
    straight = _fit(tmp_path / "straight", bundle)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run in the background

    with pytest.raises(RunInterrupted) as stopped:
        _fit(tmp_path / "sigint", bundle, 25, lambda: os.kill(os.getpid(), signal.SIGINT))
    assert stopped.value.exit_code == 130 and f"oral6 train --resume {tmp_path / 'sigint'}" in str(stopped.value)
    ckpt = io.load_torch(tmp_path / "sigint" / CHECKPOINT)
    assert (ckpt["epoch"], ckpt["batch"], ckpt["step"]) == (1, 6, 25)  # stopped after the step it was in
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    _same_run(straight, _fit(tmp_path / "sigint", bundle, resume=True))

    with pytest.raises(RuntimeError, match="power cut"):
        _fit(tmp_path / "crash", bundle, 30, _crash, checkpoint_every=4)
    ckpt = io.load_torch(tmp_path / "crash" / CHECKPOINT)
    assert (ckpt["epoch"], ckpt["batch"], ckpt["step"]) == (1, 9, 28)  # the last multiple of 4 before the crash
    _same_run(straight, _fit(tmp_path / "crash", bundle, resume=True, checkpoint_every=4))
    assert len((tmp_path / "crash" / "metrics.jsonl").read_text().splitlines()) == 2

    chosen = straight.summary["selected_by_val"]
    best = io.load_torch(tmp_path / "straight" / BEST)
    assert best["epoch"] == chosen["epoch"] == straight.summary["best_checkpoint"]["epoch"]
    net = registry.create("model", "mlp", {"dropout": 0.2}).build(bundle.input_shape, bundle.num_classes)
    net.load_state_dict(best["model"])
    assert evaluate(net, bundle.val, bundle.task, torch.device("cpu"))["accuracy"] == chosen["val_accuracy"]


def _wait_for(path, process, seconds=90):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_sigterm_to_a_real_run_resumes_bit_identically_and_a_second_writer_is_refused(cli, tmp_path):
    run, args = tmp_path / "run", ["--batch-size", "32", "--set", "model.dropout=0.2", *TINY]
    env = {**os.environ, "ORAL6_LOAD_PLUGINS": "", "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "oral6_core", "train", "--out", str(run), "--epochs", "1000", *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for(run / "config.json", first)  # written once the first process holds the folder
        code, out = cli("train", "--out", run, "--epochs", "1", *args)
        assert code == 2 and f"Another process is writing to {run}" in out
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    finally:
        first.kill()
    err = " ".join(err.split())
    assert first.returncode == 143 and "Stopped by SIGTERM" in err and f"oral6 train --resume {run}" in err
    ckpt = torch.load(run / CHECKPOINT, weights_only=False)
    epochs = ckpt["epoch"] + 1  # finish the epoch it stopped in
    assert cli("train", "--resume", run, "--epochs", epochs, "--no-progress")[0] == 0
    assert cli("train", "--out", tmp_path / "straight", "--epochs", epochs, *args)[0] == 0
    resumed, straight = (torch.load(d / CHECKPOINT, weights_only=False) for d in (run, tmp_path / "straight"))
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert [{k: v for k, v in r.items() if k != "time"} for r in resumed["history"]] == \
           [{k: v for k, v in r.items() if k != "time"} for r in straight["history"]]


def test_a_run_folder_needs_resume_or_overwrite_and_bad_out_paths_are_clear(cli, tmp_path):
    run = tmp_path / "run"
    assert cli("train", "--out", run, "--epochs", "2", *TINY)[0] == 0
    before = (run / "metrics.jsonl").read_text()
    code, out = cli("train", "--out", run, "--epochs", "1", *TINY)
    assert code == 2 and "already holds a run" in out and f"--resume {run}" in out and "--overwrite" in out
    assert (run / "metrics.jsonl").read_text() == before
    code, out = cli("train", "--out", run, "--epochs", "1", "--overwrite", *TINY)
    assert code == 0, out
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1]
    code, out = cli("train", "--resume", run, "--overwrite", *TINY)
    assert code == 2 and "exclude each other" in out

    mask = io._umask()
    for name in ("config.json", "metrics.jsonl", "summary.json", CHECKPOINT, BEST):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o666 & ~mask, name

    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    code, out = cli("train", "--out", a_file, *TINY)
    assert code == 2 and "is an existing file, not a folder" in out
    code, out = cli("train", "--out", a_file / "run", *TINY)
    assert code == 2 and "is a file, not a folder" in out and "Traceback" not in out


def test_a_workflow_folder_needs_overwrite_and_a_run_that_fails_early_leaves_no_folder(tmp_path):
    out, outputs = tmp_path / "search", ("search.json", "checkpoint.pt")
    with pytest.raises(ValueError), RunFolder(out, files=outputs, resumable=False):
        raise ValueError("the workflow failed before writing anything")
    assert not out.exists()
    with RunFolder(out, files=outputs, resumable=False):
        (out / "search.json").write_text("{}")
    with pytest.raises(RunFolderError, match=r"already holds a run \(search\.json\)\. Replace them with --overwrite or pick"):
        with RunFolder(out, files=outputs, resumable=False):
            pass
    with pytest.raises(ValueError), RunFolder(out, files=outputs, resumable=False, overwrite=True):
        raise ValueError("failed after replacing")
    assert out.is_dir() and not (out / "search.json").exists()  # a folder this run did not create stays


def test_workflow_outputs_that_cannot_be_written_are_clear_errors(cli, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    code, out = cli("search", "--predictor", "params", "--dataset", "digits", "--teacher", tmp_path / "none.pt", "--out", a_file)
    assert code == 2 and "is an existing file, not a folder" in out  # refused before any work
    with pytest.raises(WriteError, match="notes.txt is a file, not a folder"):
        io.write_json({}, a_file / "record.json")
    with pytest.raises(WriteError, match="it is a folder"):
        io.write_json({}, tmp_path)
    assert a_file.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_out_folder_is_a_clear_error(cli, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, out = cli("train", "--out", locked / "run", *TINY)
    assert code == 2 and "is not writable" in out


def test_atomic_writes_respect_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        io.write_json({"a": 1}, tmp_path / "a.json")
        io.save_torch({"a": 1}, tmp_path / "a.pt")
    finally:
        os.umask(old)
    assert {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {0o640}


@pytest.mark.parametrize("args, named", [
    (["--set", "pruner.sparsity=0.9"], "pruner.sparsity is set, but no pruner is selected"),
    (["--set", "pruner.sparsty=0.9"], "pruner.sparsty is set, but no pruner is selected"),
    (["--set", "regularizer.weight=1", "--set", "regularizer.warmup=2"],
     "regularizer.weight, regularizer.warmup are set, but no regularizer is selected"),
])
def test_options_for_unselected_components_are_errors(cli, args, named):
    code, out = cli("train", *args, *TINY)
    assert code == 2 and named in out


def test_resume_refuses_options_it_would_ignore(cli, tmp_path):
    run = tmp_path / "run"
    assert cli("train", "--out", run, "--epochs", "1", "--set", "optimizer.lr=0.1", *TINY)[0] == 0
    for args, named in [
        (["--model", "cnn"], "--model ('mlp' -> 'cnn')"),
        (["--dataset", "synthetic"], "--dataset ('digits' -> 'synthetic')"),
        (["--optimizer", "adam"], "--optimizer ('sgd' -> 'adam')"),
        (["--set", "optimizer.lr=0.01"], "optimizer.lr (0.1 -> 0.01)"),
        (["--set", "optimizer.nesterov=true"], "optimizer.nesterov (False -> True)"),
        (["--batch-size", "32"], "--batch-size (64 -> 32)"),
        (["--set", "train.lr_schedule=cosine"], "train.lr_schedule ('constant' -> 'cosine')"),
        (["--out", tmp_path / "elsewhere"], "--out"),
    ]:
        code, out = cli("train", "--resume", run, *args, *TINY)
        assert code == 2 and named in out and "Resume may change only --epochs" in out, (args, out)
    code, out = cli("train", "--resume", run, "--epochs", "2", "--model", "mlp", "--set", "optimizer.lr=0.1",
                    "--checkpoint-every", "5", *TINY)
    assert code == 0, out  # unchanged values and the documented resumable options are fine
    code, out = cli("train", "--resume", run, "--epochs", "1", *TINY)
    assert code == 2 and "--epochs must be at least" in out


def test_library_resume_refuses_a_changed_run_too(tmp_path):
    run = RunConfig(train=TrainConfig(epochs=1, progress=False, device="cpu"), out=tmp_path)
    train(run)
    longer = run.train.model_copy(update={"epochs": 2})
    with pytest.raises(ConfigError, match=r"optimizer.lr \(0.05 -> 0.5\)"):
        train(run.model_copy(update={"options": {"optimizer": {"lr": 0.5}}, "train": longer}), resume=True)
    assert [row["epoch"] for row in train(run.model_copy(update={"train": longer}), resume=True).history] == [1, 2]


def test_config_json_holds_resolved_options_versions_and_seed(cli, tmp_path):
    assert cli("train", "--out", tmp_path, "--epochs", "1", "--seed", "7", "--set", "optimizer.lr=0.1", *TINY)[0] == 0
    config = json.loads((tmp_path / "config.json").read_text())
    defaults = registry.create("optimizer", "sgd").config
    assert config["options"]["optimizer"] == {**defaults.model_dump(mode="json"), "lr": 0.1}
    assert config["options"]["model"] == registry.create("model", "mlp").config.model_dump(mode="json")
    assert config["options"]["dataset"] == registry.create("dataset", "digits").config.model_dump(mode="json")
    assert "pruner" not in config["options"] and "regularizer" not in config["options"]
    assert config["seed"] == config["train"]["seed"] == 7 and config["train"]["lr_schedule"] == "constant"
    versions = config["versions"]
    assert versions["python"] == platform.python_version() and versions["torch"] == torch.__version__
    assert versions["oral6-core"] and versions["plugins"]["builtin"]["distribution"] == "oral6-core"


class _TermOnLoad(DatasetSource):
    """A dataset whose loading is cut short by SIGTERM."""

    name = "test-sigterm-on-load"

    def load(self, seed=0):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
        raise AssertionError("SIGTERM was not handled")


class _TermPlugin:
    @hookimpl
    def oral6_datasets(self):
        return [_TermOnLoad]


def test_sigterm_outside_the_loop_is_a_message_and_exit_143(cli, register_plugin, tmp_path):
    register_plugin(_TermPlugin(), "test-sigterm")
    before = signal.getsignal(signal.SIGTERM)
    code, _ = cli("train", "--dataset", "test-sigterm-on-load", "--out", tmp_path / "run", *TINY)
    assert code == 143 and "Stopped by SIGTERM; files already written are complete" in cli.last_stderr
    assert signal.getsignal(signal.SIGTERM) is before
