import pytest

from oral6_core.cli import build_run_config
from oral6_core.config import parse_set_options
from oral6_core.errors import ConfigError


def test_set_options_parse_types():
    parsed = parse_set_options(["optimizer.lr=0.01", "model.hidden=[32, 16]", "train.progress=false", "dataset.root=/data"],
                               ("optimizer", "model", "train", "dataset"))
    assert parsed == {"optimizer": {"lr": 0.01}, "model": {"hidden": [32, 16]}, "train": {"progress": False}, "dataset": {"root": "/data"}}


def test_dotted_options_nest():
    parsed = parse_set_options(["bench.meta.epochs=3", "bench.meta.lr=0.1", "bench.seeds=[0]"], ("bench",))
    assert parsed == {"bench": {"meta": {"epochs": 3, "lr": 0.1}, "seeds": [0]}}


@pytest.mark.parametrize("item, message", [("lr=0.1", "SECTION.OPTION=VALUE"), ("optimiser.lr=1", "Unknown section 'optimiser'")])
def test_bad_set_options_are_explained(item, message):
    with pytest.raises(ConfigError, match=message):
        parse_set_options([item], ("optimizer",))


def test_toml_then_flags_then_set(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('model = "cnn"\n[optimizer]\nname = "adam"\nlr = 0.5\n[train]\nepochs = 7\nbatch_size = 32\n')
    run = build_run_config(path, {"model": "mlp"}, {"epochs": 2}, ["optimizer.lr=0.1"], None)
    assert (run.model, run.optimizer) == ("mlp", "adam")
    assert run.options["optimizer"] == {"lr": 0.1}
    assert (run.train.epochs, run.train.batch_size) == (2, 32)


def test_toml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_run_config(tmp_path / "missing.toml", {}, {}, [], None)
    bad = tmp_path / "bad.toml"
    bad.write_text("model = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        build_run_config(bad, {}, {}, [], None)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('modle = "mlp"\n')
    with pytest.raises(ConfigError, match="unknown top-level keys"):
        build_run_config(unknown, {}, {}, [], None)


def test_train_options_are_validated():
    with pytest.raises(ConfigError, match=r"train\.epochs: Input should be greater than or equal to 1"):
        build_run_config(None, {}, {"epochs": 0}, [], None)
