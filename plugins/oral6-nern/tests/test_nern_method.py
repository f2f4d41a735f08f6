"""NeRN's building blocks: encoding, coordinates, permutations, weight assembly, losses, Ranger."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call

from oral6_core import registry
from oral6_core.errors import ConfigError
from oral6_nern.encoding import kernel_coordinates, positional_encoding
from oral6_nern.layout import WeightLayout, select_layers
from oral6_nern.fitting import PredictorTrainer
from oral6_nern.losses import FeatureTap, attention_loss, attention_map, feature_modules, output_distillation_loss
from oral6_nern.permutations import SEARCHED_CLUSTERS, clustered_chain, greedy_chains, inverse_permutation, layer_permutation
from oral6_nern.predictor import KernelPredictor, predictor_parameters
from oral6_nern.ranger import Lookahead


def tiny_resnet(width: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return registry.create("model", "resnet20", {"width": width}).build((3, 8, 8), 4).eval()


def test_positional_encoding_equals_the_formula():
    coords = torch.tensor([[0, 1, 2], [5, 17, 3]])
    levels, base = 7, 0.76
    enc = positional_encoding(coords, levels, base)
    assert enc.shape == (2, 6 * levels)
    for n in range(2):
        expected = []
        for p in coords[n].tolist():
            for k in range(levels):
                expected += [math.sin(p * base**k * math.pi), math.cos(p * base**k * math.pi)]
        assert torch.allclose(enc[n], torch.tensor(expected), atol=1e-5)


def test_predictor_size_matches_the_paper_formula():
    for h in (16, 160):
        predictor = KernelPredictor(h, levels=40)
        count = sum(p.numel() for p in predictor.parameters())
        assert count == predictor_parameters(h) == 3 * h * h + 253 * h + 9
        assert predictor(torch.tensor([[0, 1, 2]])).shape == (1, 3, 3)


def test_coordinates_are_unique_and_cover_every_kernel():
    net = tiny_resnet()
    layers = select_layers(net, ["layer*.*.conv*", "*downsample.0"])
    layout = WeightLayout(layers, [torch.arange(l.kernels) for l in layers])
    coords = layout.coordinates()
    assert len(coords) == sum(l.kernels for l in layers) == layout.num_kernels
    assert len(torch.unique(coords, dim=0)) == len(coords)
    for index, layer in enumerate(layers):
        mine = coords[coords[:, 0] == index]
        grid = {(f, c) for f in range(layer.shape[0]) for c in range(layer.shape[1])}
        assert {tuple(x) for x in mine[:, 1:].tolist()} == grid
    assert torch.equal(kernel_coordinates([(2, 3)]), torch.tensor([[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0], [0, 1, 1], [0, 1, 2]]))


def _slow_chain(vectors: torch.Tensor, similarity=None) -> list[int]:
    unit = torch.nn.functional.normalize(vectors, dim=-1)
    similarity = similarity or (lambda i, j: float(unit[i] @ unit[j]))
    order, left = [0], set(range(1, len(vectors)))
    while left:
        sims = {j: similarity(order[-1], j) for j in left}
        nxt = max(sims, key=sims.get)
        order.append(nxt)
        left.remove(nxt)
    return order


def test_vectorised_chain_is_the_greedy_nearest_neighbour_chain():
    vectors = torch.randn(3, 12, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    chains = greedy_chains(vectors)
    for b in range(3):
        assert chains[b].tolist() == _slow_chain(vectors[b].float())


def test_clustered_chain_is_exact_when_it_searches_every_cluster():
    vectors = torch.randn(300, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert clustered_chain(vectors, cluster_size=20, searched=10**6).tolist() == _slow_chain(vectors)


def test_clustered_chain_is_within_one_percent_of_greedy_smoothness():
    vectors = torch.randn(4096, 9, generator=torch.Generator().manual_seed(4))
    unit = torch.nn.functional.normalize(vectors, dim=1)

    def smoothness(order: torch.Tensor) -> float:
        return (unit[order[1:]] * unit[order[:-1]]).sum().item()

    order = clustered_chain(vectors, cluster_size=16, searched=SEARCHED_CLUSTERS)
    assert sorted(order.tolist()) == list(range(4096))
    assert smoothness(order) >= 0.99 * smoothness(greedy_chains(vectors.unsqueeze(0))[0])


def test_infilter_orders_filters_by_the_sum_of_kernel_cosines():
    weight = torch.randn(7, 5, 3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    perm = layer_permutation(weight, "infilter").view(7, 5)
    kernels = weight.reshape(7, 5, 9)
    channel_orders = [_slow_chain(kernels[f]) for f in range(7)]
    assert [sorted(row) for row in (perm % 5).tolist()] == [list(range(5))] * 7
    assert (perm // 5)[:, 0].tolist() == (perm // 5)[:, -1].tolist()  # each rank row stays inside one filter
    units = [torch.nn.functional.normalize(kernels[f, order], dim=-1) for f, order in enumerate(channel_orders)]
    filter_order = _slow_chain(kernels.reshape(7, -1), lambda i, j: float((units[i] * units[j]).sum()))
    assert (perm // 5)[:, 0].tolist() == filter_order
    assert (perm % 5).tolist() == [channel_orders[f] for f in filter_order]


@pytest.mark.parametrize("mode", ["none", "infilter", "crossfilter"])
def test_permutations_are_bijections(mode):
    weight = torch.randn(6, 5, 3, 3, generator=torch.Generator().manual_seed(0))
    perm = layer_permutation(weight, mode)
    assert sorted(perm.tolist()) == list(range(30))
    inv = inverse_permutation(perm)
    assert torch.equal(perm[inv], torch.arange(30)) and torch.equal(inv[perm], torch.arange(30))


def test_permutations_make_neighbouring_kernels_more_similar():
    weight = torch.randn(16, 16, 3, 3, generator=torch.Generator().manual_seed(0))
    kernels = torch.nn.functional.normalize(weight.reshape(256, 9), dim=1)

    def neighbour_similarity(perm: torch.Tensor) -> float:
        ordered = kernels[perm]
        return (ordered[1:] * ordered[:-1]).sum(1).mean().item()

    plain = neighbour_similarity(layer_permutation(weight, "none"))
    assert neighbour_similarity(layer_permutation(weight, "crossfilter")) > plain + 0.3
    infilter = layer_permutation(weight, "infilter").view(16, 16)
    within = (kernels[infilter[:, 1:]] * kernels[infilter[:, :-1]]).sum(-1).mean().item()
    assert within > plain + 0.3
    with pytest.raises(ConfigError, match="permutation mode"):
        layer_permutation(weight, "sorted")


@pytest.mark.parametrize("mode", ["none", "infilter", "crossfilter"])
def test_exact_predictor_rebuilds_weights_bit_for_bit_through_permutations(mode):
    net = tiny_resnet()
    layers = select_layers(net, ["layer*.*.conv*", "*downsample.0"])
    assert any(l.shape[2] == 1 for l in layers)
    params = dict(net.named_parameters())
    layout = WeightLayout(layers, [layer_permutation(params[l.name].detach(), mode) for l in layers])
    table, _ = layout.targets(params)
    coords = layout.coordinates()
    offsets = torch.tensor(layout.offsets[:-1])
    channels = torch.tensor([l.shape[1] for l in layers])

    def lookup(c: torch.Tensor) -> torch.Tensor:
        return table[offsets[c[:, 0]] + c[:, 1] * channels[c[:, 0]] + c[:, 2]]

    rebuilt = layout.assemble(lookup(coords))
    for layer in layers:
        assert torch.equal(rebuilt[layer.name], params[layer.name])


def test_layer_selection_errors_are_clear():
    net = tiny_resnet()
    with pytest.raises(ConfigError, match="No conv layer matches"):
        select_layers(net, ["nothing*"])
    conv5 = nn.Sequential(nn.Conv2d(3, 4, 5))
    with pytest.raises(ConfigError, match="3×3"):
        select_layers(conv5, ["*"])


def test_distillation_losses_reach_the_predictor():
    net = tiny_resnet()
    layers = select_layers(net, ["layer*.*.conv*"])
    layout = WeightLayout(layers, [torch.arange(l.kernels) for l in layers])
    predictor = KernelPredictor(8, levels=4)
    frozen = {k: p.detach() for k, p in net.named_parameters()}
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    tap = FeatureTap(net, feature_modules(net))
    with torch.no_grad(), tap.recording() as teacher_maps:
        teacher = net(x)
    with tap.recording() as student_maps:
        student = functional_call(net, {**frozen, **layout.assemble(predictor(layout.coordinates()))}, (x,))
    assert len(student_maps) == len(teacher_maps) == len(tap.names) > 0
    maps = attention_loss([attention_map(s) for s in student_maps], [attention_map(t) for t in teacher_maps])
    for loss in (output_distillation_loss(student, teacher), maps):
        predictor.zero_grad()
        loss.backward(retain_graph=True)
        grads = [p.grad for p in predictor.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(g.abs().sum().item() for g in grads) > 0
    assert all(p.grad is None for p in net.parameters())


def test_output_distillation_is_the_kl_divergence():
    t, s = torch.randn(5, 4), torch.randn(5, 4)
    p, q = t.softmax(-1), s.softmax(-1)
    assert torch.allclose(output_distillation_loss(s, t), (p * (p.log() - q.log())).sum(-1).mean(), atol=1e-6)
    assert output_distillation_loss(t, t).abs() < 1e-6


def test_lookahead_interpolates_every_k_steps():
    p = nn.Parameter(torch.zeros(3))
    opt = Lookahead(torch.optim.SGD([p], lr=1.0), k=2, alpha=0.5)
    for _ in range(2):
        p.grad = -torch.ones(3)
        opt.step()
    assert torch.allclose(p.detach(), torch.full((3,), 1.0))  # fast reached 2, slow 0 -> 0 + 0.5·(2 − 0)
    p.grad = -torch.ones(3)
    opt.step()
    assert torch.allclose(p.detach(), torch.full((3,), 2.0))


def test_magnitude_aware_sampler_prefers_large_kernels():
    from oral6_nern.fitting import KernelSampler

    norms = torch.cat([torch.full((50,), 1e-9), torch.ones(50)])
    by_norm = KernelSampler(norms, 20, uniform_prob=0.0, seed=0)
    for _ in range(5):
        rows = by_norm.sample()
        assert len(set(rows.tolist())) == 20 and (rows >= 50).all()
    uniform = KernelSampler(norms, 20, uniform_prob=1.0, seed=0)
    assert any((uniform.sample() < 50).any() for _ in range(5))
    assert KernelSampler(norms, 100, 0.8, 0).sample() is None


def test_shapes_dataset_conforms_and_is_deterministic():
    from oral6_core.testing import check_component

    source = check_component("dataset", "shapes32", {"num_samples": 100})
    a, b = source.load(), source.load()
    assert a.input_shape == (3, 32, 32) and a.num_classes == 10
    assert torch.equal(a.train.x, b.train.x) and len(set(a.train.y.tolist())) == 10


def test_table_first_layer_equals_the_dense_encoding():
    predictor = KernelPredictor(16, levels=40)
    coords = torch.cat([kernel_coordinates([(8, 4), (16, 8)]), torch.tensor([[1, 15, 7]])])
    assert torch.allclose(predictor(coords), predictor.dense(coords), atol=1e-6)


def test_fused_attention_map_equals_the_formula_and_survives_huge_activations():
    from oral6_nern.losses import attention_map
    from oral6_nern.speed import square_attention_map

    features = torch.randn(3, 5, 4, 4, generator=torch.Generator().manual_seed(0))
    q = features.pow(2).mean(1).flatten(1)
    assert torch.allclose(attention_map(features), q / q.norm(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(square_attention_map(features), attention_map(features), atol=1e-6)
    assert torch.allclose(attention_map(features * 1e25), attention_map(features), atol=1e-6)


@pytest.mark.parametrize("chunk", [PredictorTrainer.chunk, 5])
def test_two_pass_step_takes_the_same_steps_as_one_pass_through_both(chunk):
    from itertools import repeat

    from oral6_nern.representation import NeRNConfig
    from oral6_nern.speed import OnePassTrainer

    net = tiny_resnet()
    params = dict(net.named_parameters())
    layers = select_layers(net, ["layer*.*.conv*", "*downsample.0"])
    layout = WeightLayout(layers, [layer_permutation(params[l.name].detach(), "crossfilter") for l in layers])
    config = NeRNConfig(hidden=8, levels=4, steps=3, warmup_steps=0, kernel_batch=64, distill_weight=0.1, attention_weight=0.1)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    trained = []
    for cls in (PredictorTrainer, OnePassTrainer):
        torch.manual_seed(0)
        predictor = KernelPredictor(8, levels=4)
        trainer = cls(predictor, layout, net, repeat(x), config)
        trainer.chunk = chunk
        losses = [trainer.step(s)["loss"].item() for s in (1, 2, 3)]
        trained.append((losses, [p.detach().clone() for p in predictor.parameters()]))
    assert trained[0][0] == pytest.approx(trained[1][0], rel=1e-4)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(trained[0][1], trained[1][1]))
    assert not all(torch.equal(a, b) for a, b in zip(trained[0][1], KernelPredictor(8, levels=4).parameters()))


def test_sampled_distillation_gradient_is_unbiased():
    from itertools import repeat

    from oral6_nern.representation import NeRNConfig

    net = tiny_resnet()
    layers = select_layers(net, ["layer*.*.conv*"])
    layout = WeightLayout(layers, [torch.arange(l.kernels) for l in layers])
    torch.manual_seed(0)
    predictor = KernelPredictor(8, levels=4)
    config = NeRNConfig(hidden=8, levels=4, steps=3, warmup_steps=0, kernel_batch=64)
    trainer = PredictorTrainer(predictor, layout, net, repeat(None), config)
    n = layout.num_kernels
    grad = torch.randn(n, 3, 3, generator=torch.Generator().manual_seed(1))

    def gradient() -> Tensor:
        predictor.zero_grad()
        trainer.backpropagate(grad)
        return torch.cat([p.grad.flatten() for p in predictor.parameters()])

    exact = gradient()
    expected = torch.autograd.grad((predictor(layout.coordinates()) * grad).sum(), list(predictor.parameters()))
    assert torch.allclose(exact, torch.cat([g.flatten() for g in expected]), atol=1e-5)
    config.distill_kernels = n // 4
    estimates = torch.stack([gradient() for _ in range(400)])
    single_error = (estimates[0] - exact).norm()
    assert single_error > 1e-2 * exact.norm()  # one sample is noisy ...
    assert (estimates.mean(0) - exact).norm() < 0.25 * single_error  # ... their mean converges to the exact gradient
