"""Tests of :mod:`stablesal.explain.perturbation.samplers`.

Known-answer tests: each formula against an independent computation (SciPy, scikit-learn,
autograd written out, or a value derived by hand), so that a wrong constant or operator fails."""

import math

import pytest
import torch

from stablesal.explain.gradient.sampling import GaussianNoise, Suppression
from stablesal.explain.perturbation.samplers import ShapSampler


def test_shapley_kernel_values():
    """(M − 1) / (C(M, k) k (M − k)) in float64; the empty and full coalitions get the large weight."""
    from stablesal.explain.perturbation.samplers import LARGE_WEIGHT, shapley_kernel

    weights = shapley_kernel(torch.tensor([0, 1, 2, 3, 4]), 4)
    assert weights[1].item() == pytest.approx(3 / (4 * 1 * 3), rel=1e-12)
    assert weights[2].item() == pytest.approx(3 / (6 * 2 * 2), rel=1e-12)
    assert weights[3].item() == pytest.approx(3 / (4 * 3 * 1), rel=1e-12)
    assert weights[0].item() == weights[4].item() == LARGE_WEIGHT
    assert shapley_kernel(torch.tensor([7]), 30).item() == pytest.approx(29 / (math.comb(30, 7) * 7 * 23), rel=1e-12)


def test_probability_sampler_bounds_and_keep_probability():
    from stablesal.explain.perturbation.samplers import ProbabilitySampler

    default = ProbabilitySampler()
    assert (default.low, default.high, default.keep_probability) == (0.0, 1.0, 0.5)
    assert ProbabilitySampler(0.2, 0.6).keep_probability == pytest.approx(0.4)
    for low, high in ((0.5, 0.5), (0.2, 1.5), (-0.1, 0.5)):
        with pytest.raises(ValueError, match="need 0 <= low < high <= 1"):
            ProbabilitySampler(low, high)
    z, _ = ProbabilitySampler(0.2, 0.6).draw(4000, 50, torch.Generator().manual_seed(0))
    assert z.float().mean().item() == pytest.approx(0.4, abs=0.01)


def test_uniform_weights_and_unique_random_limits():
    from stablesal.explain.perturbation.samplers import UniqueRandom

    assert torch.allclose(GaussianNoise(n_samples=8).weights(), torch.full((8,), 1 / 8))
    rows, _ = UniqueRandom(0.5).draw(14, 4, torch.Generator().manual_seed(4))  # every proper, non-empty subset
    assert len({tuple(r.tolist()) for r in rows}) == 14 and rows.sum(1).min() > 0 and rows.sum(1).max() < 4
    with pytest.raises(ValueError, match="cannot draw 15 distinct samples"):
        UniqueRandom(0.5).draw(15, 4, torch.Generator())
    assert UniqueRandom(0.3).keep_probability == 0.3
    for p in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="p must be in"):
            UniqueRandom(p)


def test_shap_sampler_enumerates_then_samples_by_kernel_mass():
    """KernelSHAP's sampler on 6 features: the sizes 0, 6, 1, 5 are enumerated (14 rows with
    their exact kernel weights); the rest of the budget draws sizes 2, 3, 4 in proportion to their
    total kernel weight C(6, k)·w_k, each random row carrying an equal share of that weight."""
    from stablesal.explain.perturbation.samplers import ShapSampler, shapley_kernel

    rows, weights = ShapSampler().draw(14 + 29, 6, torch.Generator().manual_seed(5))  # sizes 2 and 4 need 30
    assert rows.shape == (43, 6) and weights.dtype == torch.float64
    sizes = rows.sum(1)
    assert sorted(sizes[:14].tolist()) == [0, 1, 1, 1, 1, 1, 1, 5, 5, 5, 5, 5, 5, 6]
    assert len({tuple(r.tolist()) for r in rows[:14]}) == 14
    mass = {k: float(shapley_kernel(torch.tensor([k]), 6)[0]) * math.comb(6, k) for k in (2, 3, 4)}
    total = sum(mass.values())
    assert weights[14:].sum().item() == pytest.approx(total, rel=1e-9)
    assert torch.allclose(weights[1:14][sizes[1:14] == 1],
                          torch.full((6,), float(shapley_kernel(torch.tensor([1]), 6)[0]), dtype=torch.float64))
    drawn = torch.cat([ShapSampler().draw(43, 6, torch.Generator().manual_seed(seed))[0][14:].sum(1)
                       for seed in range(100)])
    for k in (2, 3, 4):
        assert (drawn == k).float().mean().item() == pytest.approx(mass[k] / total, abs=0.03)
    # a budget that leaves exactly one random row still draws it
    one, _ = ShapSampler().draw(15, 6, torch.Generator().manual_seed(6))
    assert one.shape[0] == 15 and one[14].sum().item() in (2, 3, 4)


def test_unique_random_is_seeded_and_suppression_checks_its_arguments():
    from stablesal.explain.perturbation.samplers import UniqueRandom

    first, _ = UniqueRandom(0.4).draw(30, 8, torch.Generator().manual_seed(7))
    again, _ = UniqueRandom(0.4).draw(30, 8, torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    default = Suppression()
    assert (default.n_samples, default.mode, default.unit, default.patch_size, default.keep_rate, default.fill) == (
        50, "bernoulli", "pixel", 4, 0.5, 0.0)
    for bad in ({"keep_rate": 1.5}, {"keep_rate": -0.1}, {"mode": "erase"}, {"unit": "row"}):
        with pytest.raises(ValueError):
            Suppression(**bad)


def test_shap_sampler_enumerates_all_coalitions_when_budget_allows():
    z, weights = ShapSampler().draw(64, 5, torch.Generator().manual_seed(0))
    assert len({tuple(row.tolist()) for row in z[:32]}) == 32  # all 2^5 coalitions, each once
    assert torch.isfinite(weights).all() and (weights > 0).all()


# ------------------------------ tests the mutation run asked for (marked mutation)
# Tests written against the survivors of `make mutation` (see mutation/*.md): each checks
# a known answer or a property computed independently of the code under test (a value derived by
# hand, NumPy or SciPy), so that a changed constant, operator or argument fails. Every test is fast.


@pytest.mark.mutation
def test_random_sampler_probability_bounds():
    from stablesal.explain.perturbation.samplers import RandomSampler

    for p in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="p must be in"):
            RandomSampler(p)
    assert RandomSampler(0.3).keep_probability == 0.3


@pytest.mark.mutation
def test_keep_decisions_are_strictly_below_the_probability():
    """A feature is kept when its uniform u is strictly below p, so P(keep) = p exactly on
    float32 uniforms (u = p is not kept). The probability is set to one of the uniforms drawn."""
    from stablesal.explain.perturbation.samplers import ProbabilitySampler, RandomSampler, UniqueRandom

    uniforms = torch.rand(3, 8, generator=torch.Generator().manual_seed(5))
    p = uniforms[1, 4].item()
    rows, _ = RandomSampler(p).draw(3, 8, torch.Generator().manual_seed(5))
    assert torch.equal(rows, uniforms < p) and not rows[1, 4]
    # unique-random: the first candidate batch is 64 rows; its first row is accepted
    batch = torch.rand(64, 8, generator=torch.Generator().manual_seed(5))
    p = batch[0].median().item()
    first, _ = UniqueRandom(p).draw(1, 8, torch.Generator().manual_seed(5))
    assert torch.equal(first[0], batch[0] < p) and not first[0][batch[0] == p].any()
    # random-p with U(0, 1): each sample's p is its own first uniform; seed 32 draws a tie with it
    generator = torch.Generator().manual_seed(32)
    own_p = torch.rand(1, 1, generator=generator)
    uniforms = torch.rand(1, 1 << 19, generator=generator)
    assert (uniforms == own_p).any()
    rows, _ = ProbabilitySampler(0.0, 1.0).draw(1, 1 << 19, torch.Generator().manual_seed(32))
    assert torch.equal(rows, uniforms < own_p)


@pytest.mark.mutation
def test_probability_sampler_draws_one_probability_per_sample():
    """The kept share of 64 features varies across samples like U(0, 1) (sd ≈ 0.29), far more
    than one shared probability would give (binomial sd ≤ 0.07)."""
    from stablesal.explain.perturbation.samplers import ProbabilitySampler

    rows, _ = ProbabilitySampler().draw(300, 64, torch.Generator().manual_seed(0))
    shares = rows.double().mean(1)
    assert 0.24 < shares.std().item() < 0.34
