"""``folder:`` and ``arrays:`` datasets: what they load, the image cache, and clear errors for bad data."""

import csv
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from oral6_core import registry
from oral6_core.data import images
from oral6_core.errors import ConfigError, DataError
from oral6_core.testing import check_component


def load(name, **options):
    return registry.create("dataset", name, options).load()


def manifest_rows(root):
    with open(root / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_manifest_folder_gives_splits_attributes_environments_graph_and_stream(shift_folder):
    bundle = load(f"folder:{shift_folder}")
    rows = manifest_rows(shift_folder)
    train_rows = [r for r in rows if r["split"] == "train"]
    assert (len(bundle.train), len(bundle.val), len(bundle.test), len(bundle.extra_splits["test_val"])) == (64, 16, 32, 8)
    assert bundle.input_shape == (3, 16, 16) and bundle.num_classes == 2
    assert [(a.name, a.type, a.num_values) for a in bundle.attributes] == [("colour", "causal", 2), ("size", "independent", 2)]
    assert bundle.environments == ["e90", "e80", "test"] and "Y->colour" in bundle.graph
    # codes follow the declared orders, row by row
    assert bundle.train.y.tolist() == [["square", "circle"].index(r["label"]) for r in train_rows]
    assert bundle.train.attrs["colour"].tolist() == [["red", "green"].index(r["colour"]) for r in train_rows]
    assert bundle.train.env.tolist() == [["e90", "e80", "test"].index(r["env"]) for r in train_rows]
    pixels = np.array(Image.open(shift_folder / train_rows[5]["file"]).convert("RGB"))
    assert torch.allclose(bundle.train.x[5], torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
    # the stream: one environment per env value, y = (label, colour, size)
    assert [e.name for e in bundle.stream] == ["e90", "e80", "test"] and all(len(e.data) == 40 for e in bundle.stream)
    assert bundle.stream[0].factor_names == ["label", "colour", "size"] and bundle.stream[0].data.y.shape == (40, 3)


def test_decoded_images_are_cached_and_the_cache_follows_the_files(tmp_path, shift_folder, monkeypatch):
    root = tmp_path / "shift"
    shutil.copytree(shift_folder, root, ignore=shutil.ignore_patterns(".oral6-cache"))
    with pytest.raises(ConfigError, match="dataset.mean and dataset.std need 3 values"):
        load(f"folder:{root}", mean=[0.5], std=[0.2])
    assert not (root / ".oral6-cache").exists()  # nothing cached from the failed load
    first = load(f"folder:{root}")
    assert len(list((root / ".oral6-cache").glob("images-*.pt"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(images, "decode_images", no_decoding)
    assert torch.equal(load(f"folder:{root}").train.x, first.train.x)
    other = tmp_path / "cache"
    with pytest.raises(AssertionError):  # a new cache folder, or new decode options, mean decoding again
        load(f"folder:{root}", cache_dir=str(other))
    with pytest.raises(AssertionError):
        load(f"folder:{root}", image_size=8)
    file = root / manifest_rows(root)[0]["file"]
    os.utime(file, ns=(file.stat().st_atime_ns, file.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError):  # a changed file invalidates the cache
        load(f"folder:{root}")


def test_a_fresh_process_recreates_the_dataset_from_name_and_options(shift_folder):
    bundle = load(f"folder:{shift_folder}", normalize="standard")
    code = (f"from oral6_core import registry; b = registry.create('dataset', 'folder:{shift_folder}', "
            f"{{'normalize': 'standard'}}).load(); print(float(b.train.x.double().abs().sum()), b.train.y.tolist() == {bundle.train.y.tolist()})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert float(out[0]) == pytest.approx(float(bundle.train.x.double().abs().sum()), rel=1e-9) and out[1] == "True"
    assert bundle.train.x.mean(dim=(0, 2, 3)).abs().max() < 1e-4  # standardised on the training split
    assert bundle.stream[0].data.x.min() >= 0 and bundle.stream[0].data.x.max() <= 1  # the stream keeps pixel values


def test_image_folder_layout_with_split_folders_sizes_and_channels(tmp_path, image_folder):
    root = image_folder(tmp_path / "shapes", per_class=4, splits=("train", "test"))
    bundle = load(f"folder:{root}")
    assert (len(bundle.train), bundle.val, len(bundle.test), bundle.input_shape) == (8, None, 8, (3, 16, 16))
    assert bundle.train.y.tolist() == [0] * 4 + [1] * 4  # classes sorted: circle, square
    assert load(f"folder:{root}", channels=1, image_size=[8, 12]).input_shape == (1, 8, 12)
    image_folder(root, per_class=1, side=20, seed=1, splits=("train",))
    with pytest.raises(DataError, match=r"000.png is 20×20 but .* is 16×16. Set dataset.image_size"):
        load(f"folder:{root}")
    assert load(f"folder:{root}", image_size=16).input_shape == (3, 16, 16)


def test_arrays_npz_and_pt_with_a_seeded_split_and_test_environments(tmp_path, shift_arrays):
    np.savez(tmp_path / "data.npz", **shift_arrays)
    torch.save({k: torch.from_numpy(v) if v.dtype.kind != "U" else v.tolist() for k, v in shift_arrays.items()}, tmp_path / "data.pt")
    (tmp_path / "dataset.toml").write_text('[attributes]\ncolour = { type = "causal", values = ["red", "green"] }\n')
    npz, pt = load(f"arrays:{tmp_path / 'data.npz'}"), load(f"arrays:{tmp_path / 'data.pt'}")
    assert torch.equal(npz.train.x, pt.train.x) and torch.equal(npz.train.attrs["colour"], pt.train.attrs["colour"])
    assert (len(npz.train), len(npz.val), len(npz.test)) == (84, 12, 24) and npz.environments == ["a", "b", "c"]
    held = load(f"arrays:{tmp_path / 'data.npz'}", test_environments=["c"], val_fraction=0.25)
    assert set(held.test.env.tolist()) == {2} and len(held.test) == 40 and 2 not in held.train.env.tolist()
    assert len(held.val) == 20 and held.attributes[0].type == "causal"
    (tmp_path / "data.toml").write_text('[attributes]\ncolour = "confounded"\n')  # <stem>.toml wins over dataset.toml
    assert load(f"arrays:{tmp_path / 'data.npz'}").attributes[0].type == "confounded"
    with pytest.raises(ConfigError, match=r"test_environments names \['z'\]"):
        load(f"arrays:{tmp_path / 'data.npz'}", test_environments=["z"])


def test_bad_arrays_are_named(tmp_path, shift_arrays):
    np.savez(tmp_path / "short.npz", **{**shift_arrays, "y": shift_arrays["y"][:-1]})
    with pytest.raises(DataError, match=r"short.npz: array 'y' has 119 rows but x has 120"):
        load(f"arrays:{tmp_path / 'short.npz'}")
    np.savez(tmp_path / "extra.npz", **shift_arrays, colour=shift_arrays["y"])
    with pytest.raises(DataError, match=r"also holds \['colour'\]"):
        load(f"arrays:{tmp_path / 'extra.npz'}")
    np.savez(tmp_path / "neg.npz", **{**shift_arrays, "y": shift_arrays["y"] - 1})
    (tmp_path / "dataset.toml").write_text('[attributes]\ncolour = "causal"\n')
    with pytest.raises(DataError, match=r"neg.npz row \d+: label -1 is negative"):
        load(f"arrays:{tmp_path / 'neg.npz'}")
    (tmp_path / "dataset.toml").write_text('classes = ["no", "yes"]\n[attributes]\ncolour = "causal"\n')
    np.savez(tmp_path / "three.npz", **{**shift_arrays, "y": np.where(np.arange(120) == 7, 2, shift_arrays["y"])})
    with pytest.raises(DataError, match=r"three.npz row 7: label 2 is not a code 0..1 of the values \['no', 'yes'\]"):
        load(f"arrays:{tmp_path / 'three.npz'}")
    np.savez(tmp_path / "flat.npz", **{**shift_arrays, "x": shift_arrays["x"][:, 0]})
    with pytest.raises(DataError, match=r"flat.npz: array 'x' has shape \(120,\)"):
        load(f"arrays:{tmp_path / 'flat.npz'}")


def _small_folder(root, shift_folder, rows=6):
    """The first ``rows`` rows of the shift folder (no cache) in ``root``."""
    kept = manifest_rows(shift_folder)[:rows]
    for r in kept:
        (root / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shift_folder / r["file"], root / r["file"])
    for r in kept:
        r["split"] = "train"
    shutil.copy(shift_folder / "dataset.toml", root / "dataset.toml")
    return root, kept


def _write_manifest(root, rows):
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _missing(root, rows):
    rows[3]["file"] = "images/nope.png"


def _unreadable(root, rows):
    (root / rows[3]["file"]).write_bytes(b"not a png")


def _label(root, rows):
    rows[3]["label"] = "triangle"


def _column(root, rows):
    for r in rows:
        r["shade"] = "dark"


def _size(root, rows):
    Image.new("RGB", (20, 20)).save(root / rows[3]["file"])


def _toml(text):
    def edit(root, rows):
        spec = root / "dataset.toml"
        spec.write_text(spec.read_text().replace('"E->size", ', text))
    return edit


@pytest.mark.parametrize("break_it, message", [
    (_missing, r"manifest.csv line 5: the image 'images/nope.png' does not exist"),
    (_unreadable, r"manifest.csv line 5: cannot read the image .*e90-0003.png"),
    (_label, r"manifest.csv line 5: label 'triangle' is not one of the values \['square', 'circle'\] declared in .*dataset.toml"),
    (_column, r"manifest.csv has attribute column\(s\) \['shade'\] that .*dataset.toml does not declare"),
    (_size, r"manifest.csv line 5: the image .*e90-0003.png is 20×20 but .* is 16×16. Set dataset.image_size"),
    (_toml('"size->E", "E->size", '), r"dataset.toml: the causal graph has a directed cycle (E -> size -> E|size -> E -> size)"),
    (_toml('"U->size", '), r"dataset.toml: the graph edge 'U->size' uses the unknown node 'U'"),
])
def test_bad_folders_get_one_paragraph_naming_file_and_row_and_cache_nothing(tmp_path, shift_folder, cli, break_it, message):
    root, rows = _small_folder(tmp_path / "bad", shift_folder)
    break_it(root, rows)
    _write_manifest(root, rows)
    code, out = cli("train", "--dataset", f"folder:{root}", "--epochs", "1", "--no-progress", "--out", tmp_path / "run")
    assert code == 2 and "Traceback" not in out
    assert re.search(message, out), out
    assert not (root / ".oral6-cache").exists() and not (tmp_path / "run").exists()


def test_both_sources_pass_the_dataset_conformance_checks(shift_folder, tmp_path, shift_arrays):
    np.savez(tmp_path / "data.npz", **shift_arrays)
    (tmp_path / "dataset.toml").write_text('[attributes]\ncolour = "causal"\n')
    check_component("dataset", f"folder:{shift_folder}")
    check_component("dataset", f"arrays:{tmp_path / 'data.npz'}")
