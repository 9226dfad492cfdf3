"""Tests of :mod:`stablesal.metrics.agreement`.

Known-answer tests: each formula against an independent computation (SciPy, scikit-learn,
autograd written out, or a value derived by hand), so that a wrong constant or operator fails."""

import math

import pytest
import torch

from stablesal.metrics import kendall_tau_matrix, mean_ci, mege, reco


def test_mege_and_reco_on_known_distance_sets():
    same, different = [0.1, 0.2, 0.6], [0.5, 0.7, 0.8]
    assert mege(same) == pytest.approx(1 / 1.3)
    # γ = 0.2: TPR 2/3, TNR 1; γ = 0.6: TPR 1, TNR 2/3; nothing better
    assert reco(same, different) == pytest.approx(2 / 3)
    assert reco([0.9], [0.1]) == 0.0  # inverted sets: no threshold separates them


def test_kendall_and_spearman_against_scipy():
    from scipy.stats import kendalltau, spearmanr

    from stablesal.metrics import kendall_tau_matrix, spearman

    a, b = torch.rand(2, 50, generator=torch.Generator().manual_seed(8))
    assert spearman(a[None], b[None]).item() == pytest.approx(spearmanr(a, b).statistic)
    scores = {"x": {"m1": 0.1, "m2": 0.4, "m3": 0.9, "m4": 0.5}, "y": {"m1": 0.2, "m2": 0.3, "m3": 0.8, "m4": 0.6}}
    row = kendall_tau_matrix(scores, {"x": True, "y": True})[0]
    expected = kendalltau([0.1, 0.4, 0.9, 0.5], [0.2, 0.3, 0.8, 0.6]).statistic
    assert row["tau"] == pytest.approx(expected) and math.isfinite(row["p_value"])


def test_kendall_tau_matrix_orients_every_metric_and_uses_shared_methods():
    from scipy.stats import kendalltau

    from stablesal.metrics import kendall_tau_matrix

    scores = {"faithful": {"a": 0.9, "b": 0.5, "c": 0.1, "d": 0.4},
              "error": {"a": 0.1, "b": 0.6, "c": 0.9},          # lower is better; d missing
              "other": {"a": 0.2, "b": 0.3, "c": 0.25, "d": 0.8}}
    rows = {(r["metric_a"], r["metric_b"]): r for r in kendall_tau_matrix(
        scores, {"faithful": True, "error": False, "other": True})}
    assert set(rows) == {("faithful", "error"), ("faithful", "other"), ("error", "other")}
    # faithful and error rank a, b, c the same way once error's direction is flipped
    assert rows[("faithful", "error")]["tau"] == pytest.approx(1.0)
    assert rows[("faithful", "error")]["n_methods"] == 3
    assert rows[("error", "other")]["tau"] == pytest.approx(kendalltau([-0.1, -0.6, -0.9], [0.2, 0.3, 0.25]).statistic)
    expected = kendalltau([0.9, 0.5, 0.1, 0.4], [0.2, 0.3, 0.25, 0.8]).statistic
    assert rows[("faithful", "other")]["tau"] == pytest.approx(expected) and rows[("faithful", "other")]["n_methods"] == 4
    assert kendall_tau_matrix({"x": {"a": 1, "b": 2}, "y": {"a": 1, "b": 2}}, {"x": True, "y": True}) == []


def test_mean_ci_small_samples():
    from scipy import stats

    from stablesal.metrics import mean_ci

    assert mean_ci([2.0]) == (2.0, 2.0, 2.0)
    assert all(math.isnan(v) for v in mean_ci([float("nan")]))
    low, high = stats.t.interval(0.95, 1, loc=2.0, scale=stats.sem([1.0, 3.0]))
    assert mean_ci([1.0, 3.0]) == pytest.approx((2.0, low, high))


def test_kendall_skips_pairs_with_too_few_shared_methods():
    from stablesal.metrics import kendall_tau_matrix

    scores = {"sparse": {"a": 1.0, "b": 2.0}, "x": {"a": 0.1, "b": 0.2, "c": 0.3}, "y": {"a": 0.3, "b": 0.2, "c": 0.1}}
    rows = kendall_tau_matrix(scores, {"sparse": True, "x": True, "y": True})
    assert [(r["metric_a"], r["metric_b"]) for r in rows] == [("x", "y")] and rows[0]["tau"] == pytest.approx(-1.0)


def test_kendall_tau_between_metric_rankings():
    scores = {"a": {"m1": 1.0, "m2": 2.0, "m3": 3.0}, "b": {"m1": 3.0, "m2": 2.0, "m3": 1.0}}
    rows = kendall_tau_matrix(scores, {"a": True, "b": False})
    assert rows[0]["tau"] == pytest.approx(1.0)  # b is lower-is-better: the same ranking


def test_mean_ci_and_mege_reco():
    mean, low, high = mean_ci([1.0, 2.0, 3.0, float("nan")])
    assert mean == 2.0 and low < 2.0 < high
    assert mege([0.0, 0.0]) == 1.0 and mege([1.0]) == 0.5
    assert reco([0.1, 0.2], [0.8, 0.9]) == 1.0  # perfectly separated
    assert reco([0.5, 0.5], [0.5, 0.5]) == 0.0


# ------------------------------ tests the mutation run asked for (marked mutation)
# Tests written against the survivors of `make mutation` (see mutation/*.md): each checks
# a known answer or a property computed independently of the code under test (a value derived by
# hand, NumPy or SciPy), so that a changed constant, operator or argument fails. Every test is fast.


@pytest.mark.mutation
def test_kendall_tau_matrix_goes_on_after_a_pair_with_too_few_methods():
    from stablesal.metrics import kendall_tau_matrix

    scores = {"x": {"a": 0.1, "b": 0.2, "c": 0.3}, "sparse": {"a": 1.0, "b": 2.0}, "y": {"a": 0.3, "b": 0.2, "c": 0.1}}
    rows = kendall_tau_matrix(scores, {"x": True, "sparse": True, "y": True})
    assert [(r["metric_a"], r["metric_b"]) for r in rows] == [("x", "y")] and rows[0]["tau"] == pytest.approx(-1.0)
