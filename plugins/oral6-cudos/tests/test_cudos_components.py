"""Spike-and-slab sampling, the SOM prior, the renderers and the stream datasets."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from oral6_core import registry
from oral6_core.errors import ConfigError, ShapeError
from oral6_cudos.rendering import DSPRITES_FACTORS, SHAPES3D_FACTORS, render_dsprites, render_shapes3d
from oral6_cudos.networks import ELU
from oral6_cudos.som import SOMPrior, annealed_sigma
from oral6_cudos.som_online import PackedSOM
from oral6_cudos.spike_slab import expected_selection, selection, spike_and_slab_sample


def test_spike_and_slab_sampling_zeros_inactive_dims():
    torch.manual_seed(0)
    spike = torch.tensor([0.0, 1.0])
    draws = selection(spike.expand(5000, 2), (5000, 2))
    assert draws[:, 0].max() <= 0.5 and draws[:, 0].mean() < 0.08
    assert draws[:, 1].min() >= 0.5 and draws[:, 1].mean() > 0.92
    mu, logvar = torch.full((5000, 2), 3.0), torch.zeros(5000, 2)
    z = spike_and_slab_sample(mu, logvar, spike)
    assert z[:, 0].abs().mean() < 0.3 and z[:, 1].mean() > 2.5
    assert torch.allclose(expected_selection(spike), draws.mean(0), atol=0.01)


def test_component_posterior_sums_to_one_and_bmu_is_its_argmax():
    som = SOMPrior(4, 5, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        som.means.normal_()
        som.mixture_logits.normal_()
    z = torch.randn(16, 3)
    q = som.responsibilities(z)
    assert q.shape == (16, 20)
    assert torch.allclose(q.sum(-1), torch.ones(16), atol=1e-5)
    assert torch.equal(som.bmu(z), q.argmax(-1))
    allowed = torch.zeros(20, dtype=torch.bool)
    allowed[[3, 7]] = True
    assert set(som.bmu(z, allowed).tolist()) <= {3, 7}


def test_component_density_puts_the_spike_in_a_box_around_the_mean():
    som = SOMPrior(2, 2, 1)
    with torch.no_grad():
        som.slab_raw.fill_(-5.0)  # α ≈ 0: only the spike is left
    inside = som.log_component_density(som.means[:1] + 0.05)
    outside = som.log_component_density(som.means[:1] + 0.5)
    assert inside[0, 0] > outside[0, 0] + 10


def test_neighbourhood_is_normalised_wraps_and_narrows_as_sigma_anneals():
    som = SOMPrior(6, 6, 2)
    wide, narrow = som.neighbourhood(annealed_sigma(0, 5.0, 0.05, 10, 20)), som.neighbourhood(annealed_sigma(30, 5.0, 0.05, 10, 20))
    for h in (wide, narrow):
        assert torch.allclose(h.sum(1), torch.ones(36), atol=1e-5)
    assert torch.all(narrow.diagonal() > wide.diagonal())
    assert narrow.diagonal().min() > 0.99
    assert torch.isclose(wide[0, 5], wide[0, 1])  # the torus: column 5 neighbours column 0
    assert annealed_sigma(15, 5.0, 0.05, 10, 20) == pytest.approx(2.525)


def test_som_loss_pulls_the_best_component_towards_the_data():
    torch.manual_seed(0)
    som = SOMPrior(3, 3, 2)
    optimizer = torch.optim.Adam(som.parameters(), lr=0.05)
    z = torch.full((32, 2), 0.8) + 0.05 * torch.randn(32, 2)
    start = (som.means - 0.8).norm(dim=1).min().item()
    for _ in range(60):
        optimizer.zero_grad()
        som.loss(z, sigma=0.5).backward()
        optimizer.step()
    assert (som.means - 0.8).norm(dim=1).min().item() < start / 2


def _spread_som(rows: int, cols: int, dim: int, g: torch.Generator) -> SOMPrior:
    som = SOMPrior(rows, cols, dim, generator=g)
    with torch.no_grad():
        som.means.normal_(generator=g)
        som.logvars.uniform_(-2.0, 0.5, generator=g)
        som.slab_raw.uniform_(-0.5, 1.3, generator=g)  # α near 0, in between, and clipped at a = 1
        som.mixture_logits.normal_(generator=g)
    return som


def test_the_joint_winner_follows_the_mixture_weights_and_the_likelihood_winner_the_code():
    som = SOMPrior(1, 3, 1, winner="joint")
    with torch.no_grad():
        som.means.copy_(torch.tensor([[0.0], [1.0], [2.0]]))
        som.mixture_logits.copy_(torch.tensor([0.0, 0.0, 8.0]))  # π ≈ (0, 0, 1)
    z = torch.tensor([[1.02]])
    h = som.neighbourhood(0.05).numpy()
    for winner, centre in (("joint", 2), ("likelihood", 1)):
        som.winner = winner
        packed = PackedSOM(som, som.make_optimizer(1e-3, 1e-5))
        _, grad = packed.loss_gradients(z[0].numpy(), h, 0.2)
        assert int(np.argmax(np.abs(grad[:, 0]))) == centre  # only the centre's mean is pulled (σ ≈ 0)
    with pytest.raises(ValueError, match="winner"):
        SOMPrior(2, 2, 1, winner="nearest")


@pytest.mark.parametrize("winner", ["likelihood", "joint"])
def test_closed_form_som_gradients_equal_autograd(winner):
    g = torch.Generator().manual_seed(0)
    som = _spread_som(4, 5, 6, g)
    som.winner = winner
    packed = PackedSOM(som, som.make_optimizer(1e-3, 1e-5))
    h = som.neighbourhood(1.3).numpy()
    for z in (0.7 * torch.randn(6, generator=g), som.means[3] + 0.05):  # the second sits inside the spike's box
        som.zero_grad()
        expected = som.loss(z[None], sigma=1.3, spike_prior=0.2)
        expected.backward()
        loss, grad = packed.loss_gradients(z.detach().numpy(), h, 0.2)
        assert loss == pytest.approx(float(expected.detach()), rel=1e-5)
        columns = (slice(0, 6), slice(6, 12), slice(12, 18), slice(18, 19))
        for param, cols in zip((som.means, som.logvars, som.slab_raw, som.mixture_logits), columns):
            assert np.allclose(param.grad.reshape(len(grad), -1).numpy(), grad[:, cols], atol=1e-5, rtol=1e-4)
            assert param.grad.abs().max() > 0


@pytest.mark.parametrize("winner", ["likelihood", "joint"])
def test_online_som_update_equals_autograd_and_torch_adam_one_code_at_a_time(winner):
    g = torch.Generator().manual_seed(1)
    fast = _spread_som(3, 4, 5, g)
    fast.winner = winner
    reference = copy.deepcopy(fast)
    fast_opt, ref_opt = fast.make_optimizer(5e-3, 5e-5), reference.make_optimizer(5e-3, 5e-5)
    codes = torch.randn(3, 16, 5, generator=g)
    for batch in codes:  # three calls, so the Adam state is carried across them
        loss = fast.update(fast_opt, batch, sigma=1.1, spike_prior=0.2)
        total = 0.0
        for z in batch:
            ref_opt.zero_grad()
            step_loss = reference.loss(z[None], 1.1, 0.2)
            step_loss.backward()
            ref_opt.step()
            total += float(step_loss.detach())
        assert loss == pytest.approx(total / len(batch), rel=1e-5)
    for mine, theirs in zip(fast.parameters(), reference.parameters()):
        assert torch.allclose(mine, theirs, atol=1e-5), (mine - theirs).abs().max()
    assert (fast.means - _spread_som(3, 4, 5, torch.Generator().manual_seed(1)).means).abs().max() > 0.05  # it moved
    mine_state, ref_state = fast_opt.state_dict()["state"], ref_opt.state_dict()["state"]
    assert sorted(mine_state) == sorted(ref_state) == [0, 1, 2, 3]
    for index, theirs in ref_state.items():
        mine = mine_state[index]
        assert float(mine["step"]) == float(theirs["step"]) == 48
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(mine[key], theirs[key], rtol=1e-4, atol=1e-8)


def test_elu_equals_torch_elu_with_gradients():
    x = torch.cat([torch.linspace(-30, 30, 601), 1e-4 * torch.randn(200), torch.tensor([0.0, -0.0, 90.0, -90.0])])
    mine, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_mine, y_theirs = ELU()(mine), torch.nn.functional.elu(theirs)
    assert torch.allclose(y_mine, y_theirs, atol=1e-7, rtol=1e-6)
    weights = torch.randn(len(x))
    (y_mine * weights).sum().backward()
    (y_theirs * weights).sum().backward()
    assert torch.allclose(mine.grad, theirs.grad, atol=1e-7, rtol=1e-6)


def _fit_toy_map(seed: int, winner: str) -> tuple[dict[str, float], dict[str, float]]:
    """8 tight clusters, a 4×4 map updated one code at a time while σ anneals (1 → 0.05, scaled to the small grid):
    the map's usage of the clusters before and after."""
    g = torch.Generator().manual_seed(seed)
    clusters, steps = 8, 50
    centres = torch.rand(clusters, 4, generator=g) * 4 - 2
    probe = centres.repeat_interleave(16, 0) + 0.05 * torch.randn(16 * clusters, 4, generator=g)
    som = SOMPrior(4, 4, 4, generator=g, winner=winner)
    optimizer = som.make_optimizer(lr=0.01, var_lr=1e-4)
    before = som.usage(probe)
    for step in range(steps):
        batch = probe[torch.randint(len(probe), (8,), generator=g)]
        som.update(optimizer, batch, annealed_sigma(step, 1.0, 0.05, steps // 3, steps))
    return before, som.usage(probe)


def test_a_som_fitted_online_on_clustered_codes_spreads_them_over_many_nodes():
    fits = {winner: [_fit_toy_map(seed, winner) for seed in range(4)] for winner in ("likelihood", "joint")}
    for before, after in fits["likelihood"]:
        assert after["nodes_used"] >= 4  # a collapsed map has one node, perplexity 1
        assert after["quantisation_error"] < 0.45 * before["quantisation_error"]
    spread = {winner: np.mean([after["perplexity"] for _, after in runs]) for winner, runs in fits.items()}
    assert spread["likelihood"] > 4.0 and spread["likelihood"] > spread["joint"]  # measured: 4.7 against 3.3


@pytest.mark.parametrize("sizes, render", [(SHAPES3D_FACTORS, render_shapes3d), (DSPRITES_FACTORS, render_dsprites)])
def test_renderer_is_deterministic_and_every_factor_changes_the_image(sizes, render):
    rng = np.random.default_rng(0)
    bases = np.stack([rng.integers(s, size=4) for s in sizes.values()], axis=1)
    images = render(bases)
    assert np.array_equal(images, render(bases))
    assert images.min() >= 0 and images.max() <= 1 and images.shape[-2:] == (32, 32)
    for k, size in enumerate(sizes.values()):
        changed = bases.copy()
        changed[:, k] = (changed[:, k] + 1) % size
        diff = np.abs(render(changed) - images).reshape(len(bases), -1).max(axis=1)
        assert (diff > 0.05).all(), f"factor {k} does not change every image"


def test_renderer_rejects_bad_factor_tuples():
    with pytest.raises(ShapeError, match="shape"):
        render_shapes3d(np.zeros((2, 3), dtype=int))
    with pytest.raises(ShapeError, match="range"):
        render_dsprites(np.array([[3, 0, 0, 0, 0]]))


def test_stream_environments_vary_the_factors_they_name():
    bundle = registry.create("dataset", "shapes3d-stream", {"samples_per_environment": 64}).load(0)
    assert [e.name for e in bundle.stream] == ["objects", "floor", "wall"]
    assert bundle.factor_names == list(SHAPES3D_FACTORS)
    for env in bundle.stream:
        y = env.data.y
        assert env.data.x.shape == (64, 3, 32, 32) and y.shape == (64, 6)
        for k, name in enumerate(env.factor_names):
            assert (len(torch.unique(y[:, k])) > 1) == (name in env.varying), (env.name, name)
    single = registry.create("dataset", "dsprites", {"samples_per_environment": 64}).load(0)
    assert single.stream == [] and single.train.x.shape == (64, 1, 32, 32)
    with pytest.raises(ConfigError, match="multiple of 8"):
        registry.create("dataset", "dsprites-stream", {"image_size": 36}).load(0)


def test_held_out_data_are_the_same_environment_drawn_with_another_seed():
    options = {"samples_per_environment": 64, "held_out_samples": 48, "image_size": 16}
    stream = registry.create("dataset", "dsprites-split", options).load(3).stream
    for env in stream:
        held, train = env.held_out.y, env.data.y
        assert env.held_out.x.shape == (48, 1, 16, 16)
        for k, name in enumerate(env.factor_names):
            assert (len(torch.unique(held[:, k])) > 1) == (name in env.varying)
            if name not in env.varying:
                assert (held[:, k] == train[0, k]).all()
        assert not torch.equal(held, train[:48])
    assert registry.create("dataset", "dsprites-split", {**options, "held_out_samples": 0}).load(3).stream[0].held_out is None
