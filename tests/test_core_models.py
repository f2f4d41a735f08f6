"""timm / torchvision pass-through: constructor options from --set, validated; shape failures stay clean."""

import pytest
import torch

from oral6_core import registry
from oral6_core.components import DatasetSource, Task
from oral6_core.config import TrainConfig
from oral6_core.data import ArrayDataset, DataBundle
from oral6_core.errors import ConfigError, ShapeError
from oral6_core.hookspecs import hookimpl
from oral6_core.training import check_shapes, fit

VIT = "timm:vit_tiny_patch16_224"
TINY_VIT = ["--set", "model.img_size=32", "--set", "model.patch_size=8", "--set", "model.depth=1",
            "--set", "model.embed_dim=32", "--set", "model.num_heads=2"]


def _images(n: int = 48) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = (x[:, 0].mean((1, 2)) > 0).long()
    data = ArrayDataset(x, y)
    return DataBundle("tiny-images", data, data, data, Task("categorical", 2, (3, 32, 32)))


class TinyImages(DatasetSource):
    """48 random 32x32 RGB images in two classes."""

    name = "test-tiny-images"

    def load(self, seed=0):
        return _images()


class ImagesPlugin:
    @hookimpl
    def oral6_datasets(self):
        return [TinyImages]


def test_timm_options_reach_the_constructor_and_train():
    options = {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}
    model = registry.create("model", VIT, options).build((3, 32, 32), 2)
    assert model.patch_embed.img_size == (32, 32) and len(model.blocks) == 1 and model.embed_dim == 32
    bundle = _images()
    result = fit(model, bundle, registry.create("optimizer", "adam", {"lr": 1e-3}), TrainConfig(epochs=1, batch_size=16, progress=False))
    assert result.summary["steps"] == 3 and 0 <= result.history[-1]["test_accuracy"] <= 1


def test_an_unknown_constructor_option_lists_the_accepted_ones():
    with pytest.raises(ConfigError, match=r"has no option imgsize; its constructor \(VisionTransformer\) accepts: img_size, patch_size"):
        registry.create("model", VIT, {"imgsize": 32})
    with pytest.raises(ConfigError, match="sets num_classes itself"):
        registry.create("model", VIT, {"num_classes": 3})
    with pytest.raises(ConfigError, match=r"torchvision:resnet18 has no option wide; its constructor \(ResNet\) accepts: .*zero_init_residual"):
        registry.create("model", "torchvision:resnet18", {"wide": True})
    net = registry.create("model", "torchvision:resnet18", {"zero_init_residual": True}).build((3, 32, 32), 4)
    assert all(float(b.bn2.weight.detach().abs().sum()) == 0 for b in net.net.layer1)


def test_a_model_that_asserts_on_its_input_size_is_a_shape_error():
    model = registry.create("model", VIT, {"patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}).build((3, 32, 32), 2)
    with pytest.raises(ShapeError, match=r"cannot take inputs of shape \(3, 32, 32\)"):
        check_shapes(model, _images())


def test_cli_trains_a_tiny_vit_and_explains_bad_options(cli, register_plugin, tmp_path):
    register_plugin(ImagesPlugin(), "test-images")
    common = ["train", "--model", VIT, "--dataset", "test-tiny-images", "--epochs", "1", "--no-progress"]
    code, out = cli(*common, *TINY_VIT, "--out", tmp_path / "vit")
    assert code == 0, out
    assert (tmp_path / "vit" / "checkpoint.pt").is_file()
    code, out = cli(*common, "--set", "model.img_sz=32", "--out", tmp_path / "bad")
    assert code == 2 and "has no option img_sz" in out and "img_size" in out and "Traceback" not in out
    code, out = cli(*common, "--set", "model.depth=1", "--out", tmp_path / "wrong-size")
    assert code == 2 and "cannot take inputs of shape (3, 32, 32)" in out
