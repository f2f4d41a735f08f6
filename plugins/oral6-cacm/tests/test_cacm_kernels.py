"""The MMD and CORAL estimators and the vectorised grouped penalty."""

import itertools

import torch

from oral6_cacm.kernels import DOMAINBED_GAMMAS, coral_distance, gaussian_kernel, mmd2
from oral6_cacm.penalty import grouped_mmd, mixed_radix


def direct_mmd2(a, b, gammas):
    def k(u, v):
        return sum(torch.exp(-g * ((u - v) ** 2).sum()) for g in gammas)

    kaa = sum(k(u, v) for u in a for v in a) / len(a) ** 2
    kbb = sum(k(u, v) for u in b for v in b) / len(b) ** 2
    kab = sum(k(u, v) for u in a for v in b) / (len(a) * len(b))
    return kaa + kbb - 2 * kab


def test_mmd_matches_direct_pairwise_computation():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64) + 0.5
    for gammas in [(0.3,), DOMAINBED_GAMMAS]:
        assert torch.allclose(mmd2(a, b, gammas), direct_mmd2(a, b, gammas), atol=1e-10)
    assert torch.allclose(gaussian_kernel(a, a, (0.5,)).diagonal(), torch.ones(7, dtype=torch.float64))


def test_mmd_separates_equal_from_shifted_distributions():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g)
    same, shifted = mmd2(a, b, (0.5,)), mmd2(a, b + 1.5, (0.5,))
    assert same >= -1e-6 and shifted > 10 * same
    assert coral_distance(a, b * 3) > 10 * coral_distance(a, b)


def test_grouped_mmd_equals_sum_over_groups_and_value_pairs():
    g = torch.Generator().manual_seed(2)
    rep = torch.randn(60, 4, generator=g, dtype=torch.float64)
    strata, values = torch.randint(0, 3, (60,), generator=g), torch.randint(0, 3, (60,), generator=g)
    got, any_pair = grouped_mmd(rep, strata, values, 3, (0.2,))
    expected = 0.0
    for s in range(3):
        for a, b in itertools.combinations(range(3), 2):
            ra, rb = rep[(strata == s) & (values == a)], rep[(strata == s) & (values == b)]
            if len(ra) and len(rb):
                expected = expected + mmd2(ra, rb, (0.2,))
    assert bool(any_pair) and torch.allclose(got, expected)


def test_grouped_mmd_of_degenerate_groups_is_zero_not_nan():
    rep = torch.randn(8, 2, requires_grad=True)
    value, any_pair = grouped_mmd(rep, torch.arange(8) % 2, torch.arange(8) % 2, 2, (1.0,))
    assert not bool(any_pair) and value.item() == 0.0
    value.backward()
    assert torch.isfinite(rep.grad).all()


def test_mixed_radix_gives_one_code_per_joint_value():
    a, b = torch.tensor([0, 1, 0, 1, 2]), torch.tensor([0, 0, 1, 1, 1])
    codes = mixed_radix([a, b], [3, 2], a)
    assert len(set(codes.tolist())) == 5 and codes.max() < 6
