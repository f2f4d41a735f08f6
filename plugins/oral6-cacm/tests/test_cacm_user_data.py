"""CACM on a user's folder: the plan derived from the declared graph equals the plan of the registered dataset."""

import csv
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from oral6_core import registry
from oral6_core.errors import ConfigError

GRAPH = ["Xc->Y", "Xc->X", "Y->colour", "E->colour", "colour->X", "E->rotation", "rotation->X"]


def export_as_folder(bundle, root):
    """Write every split of ``bundle`` as RGB PNGs (channels colour 0, colour 1, zero) with a manifest and dataset.toml."""
    (root / "images").mkdir(parents=True)
    splits = {"train": bundle.train, "val": bundle.val, "test": bundle.test, **bundle.extra_splits}
    rows = []
    for split, data in splits.items():
        pixels = (data.x * 255).round().clamp(0, 255).to(torch.uint8)
        for i in range(len(data)):
            rgb = torch.cat([pixels[i], torch.zeros_like(pixels[i][:1])]).permute(1, 2, 0).numpy()
            file = f"images/{split}-{i:04d}.png"
            Image.fromarray(np.ascontiguousarray(rgb)).save(root / file)
            rows.append([file, int(data.y[i]), split, bundle.environments[int(data.env[i])], int(data.attrs["colour"][i]),
                         int(data.attrs["rotation"][i])])
    with open(root / "manifest.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["file", "label", "split", "env", "colour", "rotation"], *rows])
    envs = ", ".join(f'"{e}"' for e in bundle.environments)
    edges = ", ".join(f'"{e}"' for e in GRAPH)
    (root / "dataset.toml").write_text(
        f'environments = [{envs}]\n[attributes]\ncolour = "causal"\nrotation = "independent"\n[graph]\nedges = [{edges}]\n'
    )
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``multiattr-digits`` and the same data written out as a folder with the declared graph."""
    registered = registry.create("dataset", "multiattr-digits", {"test_share": 0.2}).load(seed=0)
    return registered, export_as_folder(registered, tmp_path_factory.mktemp("cacm") / "multiattr")


def plan(bundle, options=None):
    reg = registry.create("regularizer", "cacm", options)
    with pytest.warns(UserWarning, match="constant inside each training environment"):
        reg.on_train_start(None, bundle)
    return [{k: row[k] for k in ("attribute", "type", "constraint", "weight")} for row in reg.report()], reg.report()


def test_plan_from_a_folder_with_a_declared_graph_matches_the_registered_dataset(exported):
    registered, root = exported
    folder = registry.create("dataset", f"folder:{root}").load(seed=0)
    # the same data: splits, labels, environments, attributes, and the images up to 8-bit rounding
    for split in ("train", "val", "test"):
        a, b = getattr(registered, split), getattr(folder, split)
        assert torch.equal(a.y, b.y) and torch.equal(a.env, b.env) and torch.equal(a.attrs["rotation"], b.attrs["rotation"])
        assert (a.x - b.x[:, :2]).abs().max() <= 0.5 / 255 + 1e-6 and b.x[:, 2].abs().max() == 0
    assert folder.environments == registered.environments and "test_val" in folder.extra_splits
    assert [(a.name, a.type) for a in folder.attributes] == [(a.name, a.type) for a in registered.attributes]
    from_table, table_rows = plan(registered)
    from_graph, graph_rows = plan(folder)
    assert from_graph == from_table == [
        {"attribute": "colour", "type": "causal", "constraint": "g(x) ⊥ colour | Y, E", "weight": 100.0},
        {"attribute": "rotation", "type": "independent", "constraint": "g(x) ⊥ rotation", "weight": 10.0},
    ]
    assert all(r["source"].startswith("table") for r in table_rows) and all(r["source"].startswith("graph") for r in graph_rows)
    # the declared graph, not the type, decides: declared causal but drawn as confounded, colour is constrained unconditionally
    confounded = registry.create("regularizer", "cacm", {"graph": ["Xc->Y", "C->Y", "C->colour", "E->colour", "E->rotation"]})
    with pytest.warns(UserWarning):
        confounded.on_train_start(None, folder)
    assert confounded.report()[0]["constraint"] == "g(x) ⊥ colour | E"


def test_a_declared_graph_without_a_valid_constraint_is_an_error(exported, tmp_path):
    root = tmp_path / "multiattr"
    shutil.copytree(exported[1], root)
    spec = root / "dataset.toml"
    spec.write_text(spec.read_text().replace('"Y->colour"', '"Xc->colour"'))
    folder = registry.create("dataset", f"folder:{root}").load(seed=0)
    with pytest.raises(ConfigError, match=r"No set of observed variables .* attribute 'colour'.*declared by dataset 'folder:"):
        registry.create("regularizer", "cacm").on_train_start(None, folder)
