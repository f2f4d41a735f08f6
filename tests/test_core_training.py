import json

import pytest
import torch

from oral6_core import io, registry
from oral6_core.config import RunConfig, TrainConfig
from oral6_core.errors import NonFiniteLossError, ShapeError
from oral6_core.training import CHECKPOINT, fit, train


def _run(tmp_path, epochs, **train_opts):
    cfg = TrainConfig(epochs=epochs, progress=False, **train_opts)
    return RunConfig(model="mlp", dataset="digits", optimizer="sgd", train=cfg, out=tmp_path)


def test_digits_training_is_well_above_chance(tmp_path):
    result = train(_run(tmp_path, 4))
    assert result.summary["final"]["test_accuracy"] > 0.85  # chance is 0.1
    assert (tmp_path / "summary.json").is_file() and (tmp_path / CHECKPOINT).is_file()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


def test_same_seed_gives_identical_runs(tmp_path):
    a = train(_run(tmp_path / "a", 2, seed=3)).model.state_dict()
    b = train(_run(tmp_path / "b", 2, seed=3)).model.state_dict()
    c = train(_run(tmp_path / "c", 2, seed=4)).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_continues_exactly(tmp_path):
    opts = {"options": {"model": {"dropout": 0.2}}, "optimizer": "adam"}
    straight = train(_run(tmp_path / "straight", 3).model_copy(update=opts))
    train(_run(tmp_path / "resumed", 1).model_copy(update=opts))
    resumed = train(_run(tmp_path / "resumed", 3).model_copy(update=opts), resume=True)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    untimed = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert untimed(resumed.history) == untimed(straight.history)


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    io.save_torch({"version": 1}, path)

    def crash(obj, handle):
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        io.save_torch({"version": 2}, path)
    monkeypatch.undo()
    assert io.load_torch(path) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_nan_loss_stops_with_the_step_and_writes_nothing_for_it(tmp_path):
    bundle = registry.create("dataset", "digits").load()
    bundle.train.x[100:] = float("nan")
    model = registry.create("model", "mlp").build(bundle.input_shape, 10)
    with pytest.raises(NonFiniteLossError, match=r"at step \d+ \(epoch 1\)"):
        fit(model, bundle, registry.create("optimizer", "sgd"), TrainConfig(epochs=2, progress=False), out_dir=tmp_path)
    assert not (tmp_path / CHECKPOINT).exists() and not (tmp_path / "summary.json").exists()


def test_incompatible_model_and_data_is_a_shape_error():
    bundle = registry.create("dataset", "synthetic").load()
    with pytest.raises(ShapeError, match="needs image inputs"):
        registry.create("model", "resnet20").build(bundle.input_shape, bundle.num_classes)
    wrong = registry.create("model", "mlp").build((64,), 10)
    with pytest.raises(ShapeError, match="cannot take inputs of shape"):
        fit(wrong, bundle, registry.create("optimizer", "sgd"), TrainConfig(epochs=1, progress=False))


def test_bernoulli_task_trains_an_autoencoder():
    from oral6_core.components import Task
    from oral6_core.data import ArrayDataset, DataBundle
    from oral6_core.data.digits import load_digits_arrays

    x, _ = load_digits_arrays()
    flat = x.flatten(1)
    data = ArrayDataset(flat, flat)
    bundle = DataBundle("digits-ae", data, None, data, Task("bernoulli", 0, (64,)))
    model = registry.create("model", "mlp", {"hidden": [32]}).build((64,), 64)
    result = fit(model, bundle, registry.create("optimizer", "adam", {"lr": 3e-3}), TrainConfig(epochs=3, progress=False))
    losses = [h["test_loss"] for h in result.history]
    assert losses[-1] < losses[0]


def test_map_style_datasets_of_tuples_train_too():
    from torch.utils.data import TensorDataset

    from oral6_core.components import Task
    from oral6_core.data import DataBundle
    from oral6_core.data.digits import load_digits_arrays

    x, y = load_digits_arrays()
    data = TensorDataset(x[:600], y[:600])
    bundle = DataBundle("tuples", data, None, TensorDataset(x[600:900], y[600:900]), Task("categorical", 10, (1, 8, 8)))
    model = registry.create("model", "mlp").build(bundle.input_shape, 10)
    result = fit(model, bundle, registry.create("optimizer", "adam", {"lr": 3e-3}), TrainConfig(epochs=3, progress=False))
    assert result.summary["final"]["test_accuracy"] > 0.6


def test_extra_splits_are_scored_and_selected_by(tmp_path):
    bundle = registry.create("dataset", "digits").load()
    bundle.extra_splits["oracle"] = bundle.test
    model = registry.create("model", "mlp").build(bundle.input_shape, 10)
    result = fit(model, bundle, registry.create("optimizer", "sgd"), TrainConfig(epochs=3, progress=False))
    assert all("oracle_accuracy" in row for row in result.history)
    chosen = result.summary["selected_by_oracle"]
    assert chosen["oracle_accuracy"] == max(row["test_accuracy"] for row in result.history) == chosen["test_accuracy"]
