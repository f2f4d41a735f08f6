import pytest

from oral6_core import registry
from oral6_core.components import OptimizerFactory
from oral6_core.errors import ConfigError, DuplicateComponentError, Oral6Error, UnknownComponentError
from oral6_core.hookspecs import hookimpl


class _SecondSGD(OptimizerFactory):
    """A clash with the built-in sgd."""

    name = "sgd"


class _Clash:
    @hookimpl
    def oral6_optimizers(self):
        return [_SecondSGD]


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownComponentError, match="Known optimizers: .*adam.*sgd"):
        registry.get("optimizer", "sgdd")


def test_unknown_kind_lists_kinds():
    with pytest.raises(UnknownComponentError, match="The kinds are: optimizer, pruner"):
        registry.names("optimiser")


def test_duplicate_name_names_both_plugins(register_plugin):
    register_plugin(_Clash(), "clashing-plugin")
    with pytest.raises(DuplicateComponentError, match=r"'sgd' is registered twice: by plugin 'builtin'.*'clashing-plugin'"):
        registry.get("optimizer", "adam")


def test_wildcard_name_passes_the_variant():
    builder = registry.create("model", "timm:resnet18")
    assert builder.config.variant == "resnet18"
    with pytest.raises(UnknownComponentError):
        registry.get("model", "timm:")


def test_create_validates_options_with_their_path():
    with pytest.raises(ConfigError, match=r"optimizer\.lr: Input should be greater than 0"):
        registry.create("optimizer", "sgd", {"lr": 0})
    with pytest.raises(ConfigError, match=r"optimizer\.lrr: unknown option"):
        registry.create("optimizer", "sgd", {"lrr": 0.1})


def test_a_plugin_with_a_misspelled_hook_is_rejected(register_plugin):
    class Misspelled:
        @hookimpl
        def oral6_optimisers(self):
            return []

    with pytest.raises(Oral6Error, match="invalid"):
        register_plugin(Misspelled(), "misspelled")
    assert "misspelled" not in [n for n, _ in __import__("oral6_core.plugins", fromlist=["x"]).get_plugin_manager().list_name_plugin()]
