"""CUDOS and the β-VAE baselines on a tiny stream: the fit contract, replay, save/load/resume, pictures, boundaries, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from oral6_core import registry
from oral6_core.errors import CheckpointError, ConfigError, DataError, ShapeError
from oral6_core.testing import check_component

TINY = {"latent_dim": 4, "channels": [4, 4, 8, 8], "hidden": 16, "epochs_first": 1, "epochs_next": 1, "batch_size": 32,
        "device": "cpu"}
CUDOS_TINY = {**TINY, "som_rows": 3, "som_cols": 3, "anneal_begin": 1, "anneal_end": 4}


@pytest.fixture(scope="module")
def stream():
    return registry.create("dataset", "dsprites-stream", {"samples_per_environment": 64}).load(0).stream


@pytest.fixture
def cheap_dci(monkeypatch):
    """Few boosting stages in DCI, so that fit-generative's evaluation after each environment stays cheap."""
    from functools import partial

    from oral6_core.metrics import disentanglement

    monkeypatch.setattr(disentanglement, "evaluate_representation", partial(disentanglement.evaluate_representation, dci_trees=2))


def make(name: str, **extra):
    return registry.create("generative-model", name, {**(CUDOS_TINY if name == "cudos" else TINY), **extra})


@pytest.mark.parametrize("name", ["cudos", "beta-vae", "beta-vae-replay"])
def test_fit_calls_back_after_each_environment_and_codes_have_the_latent_size(name, stream):
    torch.manual_seed(0)
    check_component("generative-model", name, exercise=False)
    model = make(name)
    seen = []
    model.fit(stream, lambda k, env: seen.append((k, env.name, model.encode(env.data.x[:5]).shape)))
    assert seen == [(k, e.name, torch.Size([5, 4])) for k, e in enumerate(stream)]
    samples = model.sample(6)
    assert samples.shape == (6, 1, 32, 32) and 0 <= samples.min() and samples.max() <= 1
    assert model.decode(torch.zeros(2, 4)).shape == (2, 1, 32, 32)


def test_fit_calls_back_after_each_epoch_in_eval_mode_and_trains_on_in_train_mode(stream):
    model = make("beta-vae", epochs_first=2, epochs_next=1)
    calls = []
    model.fit(stream[:2], on_epoch_end=lambda k, epoch: calls.append((k, epoch, model.encoder.training, model.global_step)))
    assert [c[:3] for c in calls] == [(0, 0, False), (0, 1, False), (1, 0, False)]
    assert [c[3] for c in calls] == [2, 4, 6]  # 64 images in batches of 32
    assert model.encoder.training


def test_cudos_continual_phase_freezes_a_copy_and_replays_from_components_holding_data(stream):
    torch.manual_seed(0)
    model = make("cudos")
    model.fit(stream[:2])
    assert model.slots == 2 and model.old is not None
    assert all(not p.requires_grad for p in model.old["decoder"].parameters())
    images, z, slots = model.replay_batch(10)
    assert images.shape == (10, 1, 32, 32) and z.shape == (10, 4) and slots.max() < 2
    holding = model.old_holding.nonzero().squeeze(1)
    assert holding.numel() > 0
    # the old model stays fixed while the new one trains
    before = [p.clone() for p in model.old["encoder"].parameters()]
    model.train_mode()
    model.train_step(stream[1].data.x[:16], 1)
    assert all(torch.equal(a, b) for a, b in zip(before, model.old["encoder"].parameters()))


@pytest.mark.parametrize("kind", ["prototype-shared", "encoder-shared"])
def test_combined_code_takes_the_chosen_source_on_shared_dims_and_trains(stream, kind):
    from oral6_cudos.cudos import combined_code

    shared = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    prototype, z = torch.full((1, 4), 7.0), torch.full((1, 4), -3.0)
    on_shared, elsewhere = (7.0, -3.0) if kind == "prototype-shared" else (-3.0, 7.0)
    assert combined_code(shared, prototype, z, kind).tolist() == [[on_shared, elsewhere, on_shared, elsewhere]]
    torch.manual_seed(0)
    model = make("cudos", combined_code=kind)
    model.fit(stream[:2])
    assert torch.isfinite(model.spikes()).all()
    terms = model.vae_terms(stream[1].data.x[:8], torch.ones(8, dtype=torch.long))
    parts = model.continual_terms(terms, 1, model.replay_batch(4))
    assert set(parts) == {"replay", "shared_kl", "agreement"} and all(torch.isfinite(v) for v in parts.values())


def test_spikes_are_per_environment_and_mean_code_uses_their_union(stream):
    model = make("cudos")
    model.fit(stream[:1])
    with torch.no_grad():
        model.spike_logits[0] = torch.tensor([8.0, -8.0, -8.0, -8.0])
    x = stream[0].data.x[:8]
    mu = model.encoder.eval()(x)[0]
    ratio = model.encode(x) / mu  # E[z|x] = E[selection]·μ: ≈0.93 where the spike is on, ≈0.07 where off
    assert torch.allclose(ratio[:, 0], torch.full((8,), 0.9307), atol=1e-3)
    assert torch.allclose(ratio[:, 1:], torch.full((8, 3), 0.0693), atol=1e-3)
    assert model.active_dims(0).tolist() == [True, False, False, False]


def test_save_load_restores_the_whole_state_and_resumes_the_stream(stream, tmp_path):
    torch.manual_seed(0)
    model = make("cudos")
    model.fit(stream[:2])
    model.save(tmp_path / "cudos.pt")
    restored = make("cudos")
    restored.load(tmp_path / "cudos.pt")
    x = stream[1].data.x[:8]
    assert torch.allclose(model.encode(x), restored.encode(x))
    assert torch.equal(model.node_hits, restored.node_hits) and restored.slots == 2
    calls = []
    restored.fit(stream, lambda k, env: calls.append(k))
    assert calls == [2] and restored.slots == 3
    with pytest.raises(CheckpointError, match="latent_dim"):
        make("cudos", latent_dim=3).load(tmp_path / "cudos.pt")
    # a file written before an option existed loads when the option is at its default, and only then
    saved = torch.load(tmp_path / "cudos.pt", weights_only=False)
    # (at the behaviour the code had before it: the joint SOM winner)
    del saved["config"]["combined_code"], saved["config"]["som_winner"]
    torch.save(saved, tmp_path / "older.pt")
    with pytest.raises(CheckpointError, match="som_winner"):
        make("cudos").load(tmp_path / "older.pt")
    make("cudos", som_winner="joint").load(tmp_path / "older.pt")
    with pytest.raises(CheckpointError, match="combined_code"):
        make("cudos", som_winner="joint", combined_code="encoder-shared").load(tmp_path / "older.pt")
    with pytest.raises(CheckpointError, match="not 'beta-vae'"):
        make("beta-vae").load(tmp_path / "cudos.pt")


def test_save_visuals_writes_the_pictures(stream, tmp_path):
    model = make("cudos")
    model.fit(stream[:1], lambda k, env: model.save_visuals(tmp_path, k))
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["env1-reconstructions.png", "env1-samples.png", "env1-som.png", "env1-traversals.png"]
    assert all((tmp_path / n).read_bytes()[:4] == b"\x89PNG" for n in names)


def test_detected_boundaries_open_a_new_slot_when_the_data_change(stream):
    torch.manual_seed(0)
    model = make("cudos", boundaries="detect", refractory_steps=1, detect_ratio=1.2, lr=1e-2)
    first = stream[0].data.x
    shapes3d = registry.create("dataset", "shapes3d", {"samples_per_environment": 64}).load(0).train.x.mean(1, keepdim=True)
    model.build(tuple(first.shape[1:]))
    model.train_mode()
    for step in range(20):
        model.train_step(first[(step % 2) * 32 : (step % 2 + 1) * 32], 0)
        model.global_step += 1
    assert model.slots == 1
    model.train_step(shapes3d[:32], 0)
    assert model.slots == 2 and model.old is not None


def test_bad_input_raises_clear_errors(stream):
    with pytest.raises(ConfigError, match="latent_dim"):
        registry.create("generative-model", "cudos", {"latent_dim": 0})
    with pytest.raises(DataError, match="at least one environment"):
        make("cudos").fit([])
    with pytest.raises(ShapeError, match="not seen data"):
        make("beta-vae").encode(torch.zeros(1, 1, 32, 32))
    with pytest.raises(CheckpointError, match="does not exist"):
        make("beta-vae").load(Path("/nonexistent/model.pt"))


def test_cli_fit_generative_prints_a_table_and_writes_metrics(tmp_path, cheap_dci):
    from typer.testing import CliRunner

    from oral6_core.cli import app

    sets = ["model.latent_dim=3", "model.channels=[4,4,8,8]", "model.hidden=16", "model.epochs_first=1",
            "model.epochs_next=1", "model.som_rows=3", "model.som_cols=3", "model.device=cpu",
            "dataset.samples_per_environment=64", "dataset.held_out_samples=96"]
    args = ["fit-generative", "--model", "cudos", "--dataset", "dsprites-stream", "--out", str(tmp_path)]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(app, args)
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.output)
    assert result.exit_code == 0, text
    assert "Disentanglement after each environment" in text and "mig" in text
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "model.pt").is_file()
    assert (tmp_path / "env3-som.png").is_file()
    summary = json.loads((tmp_path / "metrics.json").read_text())["summary"]
    assert "After the last environment" in text and "seconds per step" in text
    assert summary["scored_on"] == "held-out" and "scored on" in text and "leakage" in text and "forgetting mig" in text
    assert {"final_dci_disentanglement", "forgetting_mig", "forgetting_dci_disentanglement", "leakage"} <= set(summary)
    assert len(summary["leakage_per_environment"]) == 2
    assert len(summary["active_dims"]) == 3 and all(0 <= d <= 3 for d in summary["active_dims"])
    assert len(summary["model_active_dims"]) == 3 and all(0 <= d <= 3 for d in summary["model_active_dims"])
    # one batch of 64 images per environment: 3 steps
    assert summary["steps"] == 3 and summary["seconds_per_step"] > 0 and 0 <= summary["final_mig"] <= 1


def test_fit_generative_seed_seeds_the_model_and_the_data(tmp_path, cheap_dci):
    from oral6_core.io import load_torch
    from oral6_core.workflows import fit_generative

    options = {"model": {k: v for k, v in CUDOS_TINY.items() if k != "device"}, "dataset": {"samples_per_environment": 64, "held_out_samples": 64}}

    def run(seed: int, name: str) -> tuple[list, dict]:
        rows, out = fit_generative("cudos", "dsprites-stream", tmp_path / name, seed, options, device="cpu")
        return rows, load_torch(out / "model.pt")

    rows_a, saved_a = run(1, "a")
    rows_b, saved_b = run(1, "b")
    rows_c, saved_c = run(2, "c")
    assert rows_a == rows_b
    for key, weights in saved_a["state"]["networks"]["encoder"].items():
        assert torch.equal(weights, saved_b["state"]["networks"]["encoder"][key])
    assert not torch.equal(saved_a["state"]["preview"], saved_c["state"]["preview"])  # other data
    encoder_a, encoder_c = saved_a["state"]["networks"]["encoder"], saved_c["state"]["networks"]["encoder"]
    assert any(not torch.equal(encoder_a[k], encoder_c[k]) for k in encoder_a if encoder_a[k].is_floating_point())
    assert rows_a != rows_c
