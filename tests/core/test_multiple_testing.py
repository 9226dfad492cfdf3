"""Tests of :mod:`stablesal.core.multiple_testing`.

Known answers beyond the enumeration and SciPy checks at the end of this file: the Monte
Carlo branch of the two-sample permutation test (p = (1 + b) / (1 + B), never 0), checked by hand
and against a count of the drawn relabellings made with Python sets; the rank-sum null's edge
cases; the step-up procedures at their boundaries by hand."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from stablesal.core.multiple_testing import (
    benjamini_hochberg, benjamini_yekutieli, rank_sum_null, rank_sum_p_values, reject,
    two_sample_permutation_p_values,
)


def test_monte_carlo_p_value_with_one_relabelling_by_hand():
    """One trained and one reference model: C(2, 1) = 2 relabellings, so B = 1 is Monte Carlo.
    The one drawn relabelling labels either model "trained". Region 0 (trained 5, reference 3):
    b = 1 when the draw picks the trained model (5 ≥ 5), else 0, so p = (1 + b) / 2 is 1 or 1/2,
    never 0. Region 1 (trained 3, reference 5) and region 2 (4, 4): every draw reaches the observed
    sum, b = 1, p = 1."""
    trained = np.array([[5.0, 3.0, 4.0]])
    reference = np.array([[3.0, 5.0, 4.0]])
    seen = set()
    for seed in range(40):
        p = two_sample_permutation_p_values(trained, reference, n_permutations=1, seed=seed)
        assert p[0] in (0.5, 1.0) and p[1] == 1.0 and p[2] == 1.0
        seen.add(float(p[0]))
    assert seen == {0.5, 1.0}  # 40 fair draws: both outcomes occur


def drawn_relabellings(n_models: int, n_trained: int, n_permutations: int, seed: int, chunk: int) -> list[set]:
    """The relabellings the documented stream draws: per chunk of at most ``chunk`` rows, a
    ``default_rng(seed).random((rows, K + L))`` block; each row's ``n_trained`` smallest keys label
    the models trained (a uniformly random subset). Returned as Python sets of model indices."""
    rng = np.random.default_rng(seed)
    out, done = [], 0
    while done < n_permutations:
        rows = min(chunk, n_permutations - done)
        for keys in rng.random((rows, n_models)):
            out.append(set(sorted(range(n_models), key=lambda m: keys[m])[:n_trained]))
        done += rows
    return out


@pytest.mark.parametrize("n_permutations,chunk", [(19, 256), (600, 256), (37, 5)])
def test_monte_carlo_p_values_count_the_drawn_relabellings(n_permutations, chunk):
    """p = (1 + b) / (1 + B) with b the number of drawn relabellings whose trained-labelled sum
    reaches the observed one, counted here with Python sums over sets of models. 5 trained vs 7
    reference models: C(12, 5) = 792 > B relabellings, so the Monte Carlo branch runs."""
    rng = np.random.default_rng(2)
    trained = rng.integers(1, 9, (5, 7)).astype(float)
    reference = rng.integers(1, 9, (7, 7)).astype(float)
    trained[:, 0] = 20.0  # region 0: the trained models hold the five largest values
    pooled = np.concatenate([trained, reference])
    assert math.comb(12, 5) == 792 > n_permutations
    p = two_sample_permutation_p_values(trained, reference, n_permutations=n_permutations, seed=13, chunk=chunk)
    labellings = drawn_relabellings(12, 5, n_permutations, 13, chunk)
    assert len(labellings) == n_permutations
    observed = [sum(pooled[m, r] for m in range(5)) for r in range(7)]
    for region in range(7):
        b = sum(sum(pooled[m, region] for m in chosen) >= observed[region] for chosen in labellings)
        assert p[region] == pytest.approx((1 + b) / (1 + n_permutations), rel=1e-15)
    # region 0: only the observed labelling itself reaches the maximum, so b counts its redraws
    b0 = sum(chosen == set(range(5)) for chosen in labellings)
    assert p[0] == pytest.approx((1 + b0) / (1 + n_permutations))
    assert p.min() >= 1 / (1 + n_permutations) > 0


def test_monte_carlo_p_values_are_never_zero_for_an_extreme_region():
    """One trained model holding the top value against 99 references: C(100, 1) = 100 labellings,
    B = 19 draws; the chance that a draw picks the trained model is 1/100, so most seeds draw it
    never (b = 0). The p-value is then 1/20, not 0."""
    trained = np.array([[10.0, 0.0]])
    reference = np.tile([[1.0, 1.0]], (99, 1))
    smallest = []
    for seed in range(30):
        p = two_sample_permutation_p_values(trained, reference, n_permutations=19, seed=seed)
        labellings = drawn_relabellings(100, 1, 19, seed, 256)
        b = sum(chosen == {0} for chosen in labellings)
        assert p[0] == pytest.approx((1 + b) / 20)
        assert p[1] == 1.0  # the trained model holds the smallest value: every relabelling reaches it
        smallest.append(p[0])
    assert min(smallest) == pytest.approx(1 / 20)


def test_monte_carlo_agrees_with_the_exact_test_in_distribution():
    """B = 1000 random relabellings against the exact enumeration of all C(14, 5) = 2002: the
    Monte Carlo p-value is within 4 binomial standard errors of the exact one (plus the
    1 / (1 + B) shift of Phipson and Smyth)."""
    rng = np.random.default_rng(4)
    trained, reference = rng.normal(size=(5, 12)), rng.normal(size=(9, 12))
    trained[:, :3] += 1.5
    pooled = np.concatenate([trained, reference])
    observed = trained.sum(0)
    exact = np.mean([pooled[list(c)].sum(0) >= observed - 1e-9 for c in itertools.combinations(range(14), 5)],
                    axis=0)
    np.testing.assert_array_equal(two_sample_permutation_p_values(trained, reference, n_permutations=2002), exact)
    sampled = two_sample_permutation_p_values(trained, reference, n_permutations=1000, seed=3)
    tolerance = 4 * np.sqrt(exact * (1 - exact) / 1000) + 1 / 1001
    assert np.all(np.abs(sampled - exact) <= tolerance)
    assert np.all(sampled >= 1 / 1001) and exact.min() < 0.002 and exact.max() > 0.9  # both tails occur


def test_permutation_p_values_of_real_valued_scores_with_ties_within_rounding():
    """Scores that are not integers: a relabelling whose sum equals the observed one up to rounding
    (0.1 + 0.2 against 0.3) counts as reaching it."""
    trained = np.array([[0.1], [0.2]])
    reference = np.array([[0.3], [0.0]])
    # relabellings of 4 models into 2: sums 0.3 (obs), 0.4, 0.1, 0.5, 0.2, 0.3: four of six reach 0.3
    assert two_sample_permutation_p_values(trained, reference, n_permutations=6)[0] == pytest.approx(4 / 6)
    # far apart: only the sums above the observed one count
    big = np.array([[1e6], [2e6]])
    # the tolerance is relative (1e-9 of the observed 3e6): 3e6 − 0.001 still reaches it, 3e6 − 1 does not
    assert two_sample_permutation_p_values(big, np.array([[3e6 - 0.001], [0.0]]), n_permutations=6)[0] == \
        pytest.approx(4 / 6)
    assert two_sample_permutation_p_values(big, np.array([[3e6 - 1], [0.0]]), n_permutations=6)[0] == \
        pytest.approx(3 / 6)


def test_permutation_chunks_do_not_change_the_exact_test():
    rng = np.random.default_rng(8)
    trained, reference = rng.integers(1, 20, (3, 9)).astype(float), rng.integers(1, 20, (4, 9)).astype(float)
    pooled = np.concatenate([trained, reference])
    exact = np.mean([pooled[list(c)].sum(0) >= trained.sum(0) for c in itertools.combinations(range(7), 3)], axis=0)
    for chunk in (1, 4, 35, 1000):
        np.testing.assert_array_equal(two_sample_permutation_p_values(trained, reference, 35, chunk=chunk), exact)


def test_permutation_input_checks():
    with pytest.raises(ValueError, match="same regions"):
        two_sample_permutation_p_values(np.ones((3, 4)), np.ones((2, 5)))
    with pytest.raises(ValueError, match="same regions"):
        two_sample_permutation_p_values(np.ones(4), np.ones((2, 4)))
    with pytest.raises(ValueError, match="same regions"):
        two_sample_permutation_p_values(np.ones((3, 4)), np.ones(4))
    with pytest.raises(ValueError, match="n_permutations must be at least 1, got 0"):
        two_sample_permutation_p_values(np.ones((3, 4)), np.ones((2, 4)), n_permutations=0)
    # one permutation is allowed
    assert two_sample_permutation_p_values(np.ones((3, 4)), np.ones((2, 4)), n_permutations=1).shape == (4,)
    # a NaN in the reference also makes the region absent
    reference = np.ones((2, 4))
    reference[1, 3] = np.nan
    p = two_sample_permutation_p_values(np.ones((3, 4)), reference, n_permutations=10)
    assert np.isnan(p[3]) and np.all(p[:3] == 1.0)
    p = two_sample_permutation_p_values(np.ones((3, 4)), reference, n_permutations=5, seed=2)  # C(5, 3) = 10 > 5
    assert np.isnan(p[3]) and np.all(p[:3] == 1.0)


def test_rank_sum_null_edges_by_hand():
    # one model, one region: the rank is 1 with certainty
    np.testing.assert_array_equal(rank_sum_null(1, 1), [1.0])
    # two models, two regions: sums 2, 3, 3, 4 → P(T ≥ 2, 3, 4) = 1, 3/4, 1/4
    np.testing.assert_allclose(rank_sum_null(2, 2), [1.0, 0.75, 0.25], rtol=1e-15)
    survival = rank_sum_null(3, 5)
    assert survival.shape == (3 * 5 - 3 + 1,) and not survival.flags.writeable
    assert survival[0] == 1.0 and survival[-1] == pytest.approx(5.0 ** -3, rel=1e-12)
    # tiny tails stay exact: P(T = K·R) = R^-K
    assert rank_sum_null(40, 64)[-1] == pytest.approx(64.0 ** -40, rel=1e-9)
    for bad in ((0, 4), (3, 0), (-1, 2)):
        with pytest.raises(ValueError, match="n_models and n_regions must be at least 1"):
            rank_sum_null(*bad)


def test_rank_sum_p_values_input_checks_and_broadcast_counts():
    with pytest.raises(ValueError, match="ranks must be \\[models, images, regions\\], got shape \\(3, 4\\)"):
        rank_sum_p_values(np.ones((3, 4)), 4)
    ranks = np.array([[[1, 2, 3], [3, 2, 1]], [[2, 1, 3], [3, 1, 2]]], dtype=float)  # K = 2, N = 2, R = 3
    # sums: image 0 (3, 3, 6), image 1 (6, 3, 3); P(T ≥ 3) = 8/9, P(T ≥ 6) = 1/9 for two uniforms on 1..3
    np.testing.assert_allclose(rank_sum_p_values(ranks, 3), [[8 / 9, 8 / 9, 1 / 9], [1 / 9, 8 / 9, 8 / 9]])
    np.testing.assert_allclose(rank_sum_p_values(ranks.astype(int), np.array([3, 3])),
                               [[8 / 9, 8 / 9, 1 / 9], [1 / 9, 8 / 9, 8 / 9]])


def test_benjamini_hochberg_boundaries_by_hand():
    # m = 4, q = 0.1: thresholds 0.025, 0.05, 0.075, 0.1. Sorted p 0.01, 0.06, 0.075, 0.5:
    # the largest i with p_(i) ≤ i q / m is i = 3 (0.075 ≤ 0.075, equality rejects), so the first three
    p = np.array([0.5, 0.075, 0.01, 0.06])
    assert benjamini_hochberg(p, 0.1).tolist() == [False, True, True, True]
    # a p-value just above its threshold does not pass, but a later one can carry it
    assert benjamini_hochberg(np.array([0.0251, 0.9, 0.9, 0.9]), 0.1).tolist() == [False] * 4
    assert benjamini_hochberg(np.array([0.03, 0.04, 0.9, 0.9]), 0.1).tolist() == [True, True, False, False]
    # every test passes at the top threshold
    assert benjamini_hochberg(np.array([0.1, 0.1]), 0.1).tolist() == [True, True]
    # shape kept, NaN never rejected, q outside (0, 1) refused
    grid = np.array([[0.001, np.nan], [0.9, 0.002]])
    assert benjamini_hochberg(grid, 0.05).tolist() == [[True, False], [False, True]]
    assert benjamini_hochberg(np.array([]), 0.05).shape == (0,)
    for q in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="must be in \\(0, 1\\), got"):
            benjamini_hochberg(np.array([0.01]), q)


def test_benjamini_yekutieli_by_hand():
    # m = 3: c(m) = 1 + 1/2 + 1/3 = 11/6; q = 0.11: thresholds i · 0.11 / (3 · 11/6) = 0.02 i
    assert benjamini_yekutieli(np.array([0.0199, 0.9, 0.9]), 0.11).tolist() == [True, False, False]
    assert benjamini_yekutieli(np.array([0.0201, 0.9, 0.9]), 0.11).tolist() == [False, False, False]
    assert benjamini_yekutieli(np.array([0.03, 0.039, 0.059]), 0.11).tolist() == [True, True, True]
    # NaN entries are not tests: m counts the finite ones only (m = 1, c = 1: plain BH)
    assert benjamini_yekutieli(np.array([0.05, np.nan, np.nan]), 0.05).tolist() == [True, False, False]
    assert benjamini_yekutieli(np.array([np.nan]), 0.05).tolist() == [False]
    # BH's first threshold at q = 0.11, m = 3 is 0.0367, BY's 0.02: p = 0.03 passes BH only
    assert reject(np.array([0.03, 0.9, 0.9]), 0.11, "bh").tolist() == [True, False, False]
    assert reject(np.array([0.03, 0.9, 0.9]), 0.11, "by").tolist() == [False, False, False]
    assert reject(np.array([0.03, 0.9, 0.9])).tolist() == [False, False, False]  # q = 0.05, BH: 0.03 > 0.0167
    assert reject(np.array([0.016, 0.9, 0.9])).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="procedure must be one of \\('bh', 'by'\\), got 'holm'"):
        reject(np.array([0.01]), 0.05, "holm")


def test_permutation_tolerance_is_absolute_below_one():
    """Sums within 1e-9 · max(1, |observed|) of the observed one count as reaching it: for scores
    below 1 the tolerance is 1e-9 absolute. One trained and one reference model, both relabellings
    enumerated: p = 1 when the reference's sum counts, 1/2 when it does not."""
    trained = np.array([[1e-3, 1e-3, 1e-3]])
    reference = np.array([[1e-3 - 5e-10, 1e-3 - 1.5e-9, 1e-3 - 1e-12]])
    np.testing.assert_array_equal(two_sample_permutation_p_values(trained, reference, n_permutations=2),
                                  [1.0, 0.5, 1.0])


def test_permutation_defaults_are_10000_draws_from_seed_0():
    """8 trained against 8 reference models: C(16, 8) = 12 870 relabellings exceed the default
    10 000, so the default call draws 10 000 of them from seed 0: p is a multiple of 1/10 001."""
    rng = np.random.default_rng(6)
    trained, reference = rng.normal(size=(8, 5)) + 0.5, rng.normal(size=(8, 5))
    default = two_sample_permutation_p_values(trained, reference)
    np.testing.assert_array_equal(default, two_sample_permutation_p_values(trained, reference, 10_000, seed=0))
    counts = default * 10_001
    np.testing.assert_allclose(counts, np.round(counts), rtol=0, atol=1e-7)
    assert not np.array_equal(default, two_sample_permutation_p_values(trained, reference, 10_000, seed=1))


def test_monte_carlo_draws_do_not_depend_on_the_chunk_size():
    """The relabellings are drawn from one stream row by row, so chunks of any size draw the same
    ones (the chunk only bounds memory)."""
    rng = np.random.default_rng(12)
    trained, reference = rng.normal(size=(4, 6)), rng.normal(size=(5, 6))
    reference_p = two_sample_permutation_p_values(trained, reference, n_permutations=100, seed=3)
    for chunk in (1, 7, 99, 100, 256, 257):
        np.testing.assert_array_equal(
            two_sample_permutation_p_values(trained, reference, n_permutations=100, seed=3, chunk=chunk), reference_p)


def test_rank_sum_null_matches_enumeration():
    for n_models, n_regions in [(1, 5), (3, 4), (4, 3), (2, 7)]:
        sums = np.array([sum(c) for c in itertools.product(range(1, n_regions + 1), repeat=n_models)])
        survival = rank_sum_null(n_models, n_regions)
        expected = [np.mean(sums >= t) for t in range(n_models, n_models * n_regions + 1)]
        np.testing.assert_allclose(survival, expected, rtol=1e-12, atol=0)


def test_rank_sum_p_values_by_hand():
    # 3 models, 4 regions: region 0 always top (sum 12: p = 1/64), region 1 ranks 1, 2, 3 (sum 6)
    ranks = np.array([[[4, 1, 2, 3]], [[4, 2, 1, 3]], [[4, 3, 1, 2]]], dtype=float)
    p = rank_sum_p_values(ranks, 4)
    assert p[0, 0] == pytest.approx(1 / 64)
    # P(sum of three uniforms on 1..4 >= 6) = 1 - P(sum <= 5) = 1 - (1 + 3 + 6) / 64
    assert p[0, 1] == pytest.approx(1 - 10 / 64)
    # absent regions stay NaN and images may have different region counts
    ragged = np.array([[[3, 1, 2, np.nan], [4, 3, 2, 1]]] * 3, dtype=float)
    p = rank_sum_p_values(ragged, np.array([3, 4]))
    assert np.isnan(p[0, 3]) and p[0, 0] == pytest.approx(1 / 27) and p[1, 0] == pytest.approx(1 / 64)


def test_two_sample_permutation_matches_exact_enumeration():
    rng = np.random.default_rng(0)
    trained, reference = rng.integers(1, 9, (3, 6)).astype(float), rng.integers(1, 9, (3, 6)).astype(float)
    pooled = np.concatenate([trained, reference])
    observed = trained.sum(0)
    exact = np.mean([pooled[list(c)].sum(0) >= observed for c in itertools.combinations(range(6), 3)], axis=0)
    p = two_sample_permutation_p_values(trained, reference, n_permutations=19, seed=1)  # Monte Carlo: B < C
    assert p.min() >= 1 / 20 and set(np.round(p * 20).astype(int)) <= set(range(1, 21))
    # C(6, 3) = 20 relabellings: with B >= 20 each is used once, the exact test itself
    np.testing.assert_array_equal(two_sample_permutation_p_values(trained, reference, n_permutations=20), exact)
    np.testing.assert_array_equal(two_sample_permutation_p_values(trained, reference, n_permutations=10_000, seed=5),
                                  exact)
    few = two_sample_permutation_p_values(trained, reference, n_permutations=3, seed=1)
    assert set(np.round(few * 4).astype(int)) <= {1, 2, 3, 4}  # (1 + b) / (1 + B)
    with_gap = trained.copy()
    with_gap[:, 2] = np.nan
    assert np.isnan(two_sample_permutation_p_values(with_gap, reference, 10)[2])


@pytest.mark.parametrize("method", ["bh", "by"])
def test_step_up_procedures_match_scipy(method):
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = np.concatenate([rng.uniform(size=40), rng.uniform(0, 0.01, size=rng.integers(0, 10))])
        adjusted = stats.false_discovery_control(p, method=method)
        for q in (0.05, 0.2):
            np.testing.assert_array_equal(reject(p, q, method), adjusted <= q)
    assert benjamini_hochberg(np.array([np.nan, 0.001]), 0.05).tolist() == [False, True]
    assert not benjamini_yekutieli(np.array([np.nan, np.nan]), 0.05).any()
    with pytest.raises(ValueError, match="q"):
        benjamini_hochberg(np.array([0.1]), 1.0)


def test_holm_adjusted_p_values_by_hand():
    """Sorted 0.005, 0.01, 0.03, 0.04 of m = 4: 4·0.005, 3·0.01, 2·0.03, 1·0.04 = 0.02, 0.03, 0.06,
    0.04, then the running maximum: 0.02, 0.03, 0.06, 0.06; a NaN is no test; capped at 1."""
    from stablesal.core.multiple_testing import holm
    adjusted = holm(np.array([0.01, 0.04, 0.03, np.nan, 0.005]))
    np.testing.assert_allclose(adjusted[[0, 1, 2, 4]], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adjusted[3])
    assert holm(np.array([0.6, 0.7])).tolist() == [1.0, 1.0]
    assert np.isnan(holm(np.array([np.nan]))).all() and holm(np.array([])).size == 0


def test_holm_controls_the_family_wise_error_under_the_global_null():
    """10 000 families of 20 independent uniform p-values: the share with any rejection at 0.05 is
    at most 0.05 (Bonferroni's bound; Holm rejects at least as much as Bonferroni)."""
    from stablesal.core.multiple_testing import holm
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(10_000, 20))
    any_rejection = np.array([(holm(row) <= 0.05).any() for row in p])
    bonferroni = (p * 20 <= 0.05).any(axis=1)
    assert any_rejection.mean() <= 0.056 and (any_rejection >= bonferroni).all()


@pytest.mark.mutation
def test_holm_of_one_test_is_its_p_value():
    from stablesal.core.multiple_testing import holm

    assert holm(np.array([0.03])).tolist() == [0.03]
    np.testing.assert_array_equal(holm(np.array([np.nan, 0.03])), [np.nan, 0.03])
