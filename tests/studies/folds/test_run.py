"""Tests of :mod:`stablesal.studies.folds.run`.

MeGe and ReCo by Fel et al.'s fold protocol: the leave-fold-out plan, the samples, which pairs
count on which samples, and MeGe / ReCo against hand-computed distance sets."""

import math

import numpy as np
import pytest
import torch

from stablesal.metrics import mege, reco
from stablesal.models.training import split_indices
from stablesal.studies.folds.run import (
    eligible, fold_distance_arrays, fold_rows, fold_samples, fold_summary, retest_distances,
)


def test_fold_samples_come_from_their_folds():
    indices, fold_of = fold_samples(100, 4, per_fold=3, seed=5)
    folds = split_indices(100, 4, seed=0)
    assert fold_of.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    for index, fold in zip(indices.tolist(), fold_of.tolist()):
        assert index in folds[fold].tolist()
    assert len(set(indices.tolist())) == 12
    assert torch.equal(indices, fold_samples(100, 4, 3, seed=5)[0])
    assert not torch.equal(indices, fold_samples(100, 4, 3, seed=6)[0])
    with pytest.raises(ValueError, match="exceeds the smallest fold"):
        fold_samples(10, 4, per_fold=3, seed=0)


def test_eligible_pairs_are_those_holding_out_the_sample():
    mask = eligible(np.array([0, 2]), held_out=[0, 1, 2])
    # sample 0 (fold 0): pairs with model 0; sample 1 (fold 2): pairs with model 2
    assert mask[0, 0, 1] and mask[0, 0, 2] and not mask[0, 1, 2]
    assert mask[1, 0, 2] and mask[1, 1, 2] and not mask[1, 0, 1]


def _rows(table):
    return [{"image": i, "model_a": a, "model_b": b, "spearman": rho, "a_correct": ca, "b_correct": cb}
            for (i, a, b), (rho, ca, cb) in table.items()]


# three models holding out folds 0, 1, 2; one sample per fold
TABLE = {
    (0, 0, 1): (0.64, True, True),    # eligible (fold 0): S=, d = sqrt(0.36) = 0.6
    (0, 0, 2): (-0.19, False, True),  # eligible: S≠, d = sqrt(0.81) = 0.9 (|ρ|)
    (0, 1, 2): (1.0, True, True),     # sample 0 held out by neither 1 nor 2: ignored
    (1, 0, 1): (0.91, True, True),    # eligible (fold 1): S=, d = 0.3
    (1, 0, 2): (0.0, True, True),     # not eligible: ignored
    (1, 1, 2): (0.36, True, False),   # eligible: S≠, d = 0.8
    (2, 0, 1): (1.0, False, False),   # not eligible
    (2, 0, 2): (0.75, False, False),  # eligible but both wrong: in neither set
    (2, 1, 2): (0.96, True, True),    # eligible: S=, d = 0.2
}


def test_distance_sets_by_hand():
    same, different = fold_distance_arrays(_rows(TABLE), np.array([0, 1, 2]), [0, 1, 2], 3)
    assert sorted(same[np.isfinite(same)].round(6).tolist()) == [0.2, 0.3, 0.6]
    assert sorted(different[np.isfinite(different)].round(6).tolist()) == [0.8, 0.9]


def test_mege_and_reco_follow_the_fold_sets():
    result = {"method": "m", "grouping": "pixel", "n_models": 3, "rows": _rows(TABLE)}
    row = fold_summary(result, np.array([0, 1, 2]), [0, 1, 2])
    assert row["n_same"] == 3 and row["n_different"] == 2
    assert row["mege"] == pytest.approx(1 / (1 + (0.6 + 0.3 + 0.2) / 3))
    assert row["mege"] == pytest.approx(mege([0.6, 0.3, 0.2]))
    # S= ≤ 0.6 < S≠: a threshold separates them completely
    assert row["reco"] == pytest.approx(reco([0.6, 0.3, 0.2], [0.8, 0.9])) == pytest.approx(1.0)


def test_mege_interval_on_a_larger_synthetic_study():
    """4 fold models, 8 samples per fold, distances around 0.5: the interval brackets MeGe and
    narrows when the distances vary less."""
    rng = np.random.default_rng(0)
    fold_of = np.repeat(np.arange(4), 8)
    widths = []
    for spread in (0.3, 0.05):
        table = {(i, a, b): (float(np.clip(0.75 + spread * rng.normal(), -1, 1)), True, bool(rng.random() < 0.8))
                 for i in range(32) for a in range(4) for b in range(a + 1, 4)}
        row = fold_summary({"method": "m", "grouping": "pixel", "n_models": 4, "rows": _rows(table)}, fold_of,
                           [0, 1, 2, 3])
        assert row["mege_ci_low"] < row["mege"] < row["mege_ci_high"]
        widths.append(row["mege_ci_high"] - row["mege_ci_low"])
    assert widths[1] < widths[0] / 2


def test_mege_above_the_random_map_on_the_same_samples():
    result = {"method": "m", "grouping": "pixel", "n_models": 3, "rows": _rows(TABLE)}
    null_table = {key: (0.0, ca, cb) for key, (_, ca, cb) in TABLE.items()}  # ρ = 0: d = 1 everywhere
    null = {"method": "random", "grouping": "pixel", "n_models": 3, "rows": _rows(null_table)}
    rows = fold_rows([result, null], np.array([0, 1, 2]), [0, 1, 2])
    assert rows[1]["mege"] == pytest.approx(0.5)
    assert rows[0]["mege_above_random"] == pytest.approx(1 / (1 + 1.1 / 3) - 0.5)
    assert "mege_above_random" not in rows[1]


def test_no_same_distances_gives_nan():
    table = {key: (rho, False, False) for key, (rho, _, _) in TABLE.items()}
    row = fold_summary({"method": "m", "grouping": "pixel", "n_models": 3, "rows": _rows(table)},
                       np.array([0, 1, 2]), [0, 1, 2])
    assert row["n_same"] == 0 and math.isnan(row["mege"]) and math.isnan(row["reco"])


def test_fold_samples_boundaries():
    parts = split_indices(40, 4, seed=0)
    smallest = min(len(p) for p in parts)
    assert fold_samples(40, 4, per_fold=1, seed=0)[0].numel() == 4
    assert fold_samples(40, 4, per_fold=smallest, seed=0)[0].numel() == 4 * smallest
    with pytest.raises(ValueError, match="per_fold must be a positive integer"):
        fold_samples(40, 4, per_fold=0, seed=0)


def test_summary_names_its_row_and_leaves_empty_sets_blank():
    row = fold_summary({"method": "m", "grouping": "pixel", "n_models": 3, "rows": _rows(TABLE)},
                       np.array([0, 1, 2]), [0, 1, 2])
    assert row["method"] == "m" and row["grouping"] == "pixel"
    nobody = {key: (rho, False, False) for key, (rho, _, _) in TABLE.items()}
    row = fold_summary({"method": "m", "grouping": "pixel", "n_models": 3, "rows": _rows(nobody)},
                       np.array([0, 1, 2]), [0, 1, 2])
    assert math.isnan(row["mege_ci_low"]) and math.isnan(row["mege_ci_high"])
    everybody = {key: (rho, True, True) for key, (rho, _, _) in TABLE.items()}   # S≠ empty, S= not
    row = fold_summary({"method": "m", "grouping": "pixel", "n_models": 3, "rows": _rows(everybody)},
                       np.array([0, 1, 2]), [0, 1, 2])
    assert row["n_different"] == 0 and row["n_same"] > 0 and math.isnan(row["reco"])


def test_every_method_is_compared_with_the_null_on_its_same_set():
    """The null listed first, two methods after it; the null's S= and S≠ distances differ, so
    reading the wrong set of the null changes the difference."""
    null_table = {key: (0.0 if (ca and cb) else 0.99, ca, cb) for key, (_, ca, cb) in TABLE.items()}
    null = {"method": "random", "grouping": "pixel", "n_models": 3, "rows": _rows(null_table)}
    methods = [{"method": name, "grouping": "pixel", "n_models": 3, "rows": _rows(TABLE)} for name in ("a", "b")]
    rows = fold_rows([null] + methods, np.array([0, 1, 2]), [0, 1, 2])
    for row in rows[1:]:
        # the null's S= distances are all √(1 − 0) = 1: its MeGe is 0.5
        assert row["mege_above_random"] == pytest.approx(1 / (1 + 1.1 / 3) - 0.5)


def _retest_rows(table):
    return [{"image": i, "model": k, "spearman": rho, "correct": right} for (i, k), (rho, right) in table.items()]


# one retest value per sample × fold model; wrong answers and |ρ| as in S=
RETEST = {
    (0, 0): (0.96, True),    # d = 0.2
    (0, 1): (-0.91, True),   # d = 0.3 (|ρ|)
    (0, 2): (0.0, False),    # model wrong: ignored
    (1, 0): (0.99, True),    # d = 0.1
    (1, 1): (0.84, True),    # d = 0.4
    (1, 2): (0.75, True),    # d = 0.5
    (2, 0): (0.19, False),   # ignored
    (2, 1): (1.0, True),     # d = 0
    (2, 2): (0.19, True),    # d = 0.9 (mean 2.4 / 7 ≠ median 0.3)
}


def test_mege_ceiling_from_the_test_retest_runs_by_hand():
    result = {"method": "m", "grouping": "pixel", "n_models": 3, "random": True, "rows": _rows(TABLE),
              "retest_rows": _retest_rows(RETEST)}
    row = fold_summary(result, np.array([0, 1, 2]), [0, 1, 2])
    ceiling = 1 / (1 + (0.2 + 0.3 + 0.1 + 0.4 + 0.5 + 0.0 + 0.9) / 7)
    assert row["mege_retest"] == pytest.approx(ceiling)
    assert row["mege_below_retest"] == pytest.approx(ceiling - 1 / (1 + 1.1 / 3))
    assert row["mege_retest_ci_low"] < row["mege_retest"] < row["mege_retest_ci_high"]


def test_mege_ceiling_of_deterministic_and_unrepeated_explainers():
    deterministic = {"method": "m", "grouping": "pixel", "n_models": 3, "random": False, "rows": _rows(TABLE),
                     "retest_rows": []}
    row = fold_summary(deterministic, np.array([0, 1, 2]), [0, 1, 2])
    assert row["mege_retest"] == row["mege_retest_ci_low"] == row["mege_retest_ci_high"] == 1.0
    assert row["mege_below_retest"] == pytest.approx(1 - 1 / (1 + 1.1 / 3))
    # the deterministic gap's interval is 1 minus MeGe's (NaN here: 3 models leave S= empty on deletion)
    assert math.isnan(row["mege_below_retest_ci_low"]) and math.isnan(row["mege_below_retest_ci_high"])
    unrepeated = dict(deterministic, random=True)
    row = fold_summary(unrepeated, np.array([0, 1, 2]), [0, 1, 2])
    assert math.isnan(row["mege_retest"]) and math.isnan(row["mege_below_retest_ci_low"])
    nobody_right = dict(unrepeated, retest_rows=_retest_rows({key: (rho, False) for key, (rho, _) in RETEST.items()}))
    assert math.isnan(fold_summary(nobody_right, np.array([0, 1, 2]), [0, 1, 2])["mege_retest"])


def _synthetic_fold_study(retest_rho: float, seed: int = 1, random: bool = True):
    """4 fold models, 8 samples per fold; between-model ρ ≈ 0.5 (all right), retest ρ ≈ retest_rho
    with a quarter of the retest samples wrong."""
    rng = np.random.default_rng(seed)
    table = {(i, a, b): (float(np.clip(0.5 + 0.1 * rng.normal(), -1, 1)), True, True)
             for i in range(32) for a in range(4) for b in range(a + 1, 4)}
    retest = {(i, k): (float(np.clip(retest_rho + 0.1 * rng.normal(), -1, 1)), bool(rng.random() < 0.75))
              for i in range(32) for k in range(4)}
    return {"method": "m", "grouping": "pixel", "n_models": 4, "random": random, "rows": _rows(table),
            "retest_rows": _retest_rows(retest)}, table, retest


def test_gap_interval_is_the_paired_two_way_jackknife_of_an_independent_computation():
    """The gap's interval is the design interval of ceiling − MeGe computed together under the same
    sample and model weights (paired; both terms see every deletion), here with the distances and
    weighted means written out in NumPy from the tables."""
    from stablesal.core.intervals import design_interval

    result, table, retest = _synthetic_fold_study(0.8)
    fold_of = np.repeat(np.arange(4), 8)
    row = fold_summary(result, fold_of, [0, 1, 2, 3])
    same = np.full((32, 4, 4), np.nan)
    for (i, a, b), (rho, _, _) in table.items():
        if fold_of[i] in (a, b):
            same[i, a, b] = np.sqrt(1 - abs(rho))
    again = np.full((32, 4), np.nan)
    for (i, k), (rho, right) in retest.items():
        if right:
            again[i, k] = np.sqrt(1 - abs(rho))

    def gap(weights):
        w_pair = weights.images[:, None, None] * weights.models["fold"][None, :, None] * \
            weights.models["fold"][None, None, :]
        keep = np.isfinite(same) & (w_pair > 0)
        mege = 1 / (1 + (np.where(keep, same, 0) * w_pair).sum() / (w_pair * keep).sum())
        w_model = weights.images[:, None] * weights.models["fold"][None, :]
        kept = np.isfinite(again) & (w_model > 0)
        ceiling = 1 / (1 + (np.where(kept, again, 0) * w_model).sum() / (w_model * kept).sum())
        return ceiling - mege

    expected = design_interval(gap, 32, {"fold": 4})
    assert row["mege_below_retest"] == pytest.approx(expected.estimate)
    assert row["mege_below_retest_ci_low"] == pytest.approx(expected.low)
    assert row["mege_below_retest_ci_high"] == pytest.approx(expected.high)
    deterministic = fold_summary(dict(result, random=False), fold_of, [0, 1, 2, 3])
    assert deterministic["mege_below_retest_ci_low"] == pytest.approx(1 - deterministic["mege_ci_high"])
    assert deterministic["mege_below_retest_ci_high"] == pytest.approx(1 - deterministic["mege_ci_low"])


def test_gap_to_the_ceiling_is_resolved_when_retraining_adds_instability():
    """4 fold models, 8 samples per fold: between-model ρ ≈ 0.5, test–retest ρ ≈ 0.95; the gap's
    interval excludes 0. With retest ρ equal in law to the between-model ρ it does not."""
    rng = np.random.default_rng(1)
    fold_of = np.repeat(np.arange(4), 8)
    table = {(i, a, b): (float(np.clip(0.5 + 0.1 * rng.normal(), -1, 1)), True, True)
             for i in range(32) for a in range(4) for b in range(a + 1, 4)}
    excluded = []
    for retest_rho in (0.95, 0.5):
        retest = {(i, k): (float(np.clip(retest_rho + 0.1 * rng.normal(), -1, 1)), True)
                  for i in range(32) for k in range(4)}
        result = {"method": "m", "grouping": "pixel", "n_models": 4, "random": True, "rows": _rows(table),
                  "retest_rows": _retest_rows(retest)}
        row = fold_summary(result, fold_of, [0, 1, 2, 3])
        excluded.append(row["mege_below_retest_ci_low"] > 0)
    assert excluded == [True, False]


def test_a_unit_that_does_not_say_whether_it_is_random_gets_no_ceiling():
    """Only a unit marked deterministic is credited the exact ceiling 1; without the mark (and
    without test–retest rows) the ceiling is unknown."""
    row = fold_summary({"method": "m", "grouping": "pixel", "n_models": 3, "rows": _rows(TABLE)},
                       np.array([0, 1, 2]), [0, 1, 2])
    assert math.isnan(row["mege_retest"]) and math.isnan(row["mege_below_retest"])


def test_rank_correlations_rounded_above_one_count_as_distance_zero():
    """ρ = 1 + 1e-12 (round-off of a perfect rank correlation) is distance 0, not NaN: the pair
    stays in S= and the retest sample in the ceiling."""
    table = dict(TABLE)
    table[(0, 0, 1)] = (1 + 1e-12, True, True)
    same, _ = fold_distance_arrays(_rows(table), np.array([0, 1, 2]), [0, 1, 2], 3)
    assert sorted(same[np.isfinite(same)].round(6).tolist()) == [0.0, 0.2, 0.3]
    retest = dict(RETEST)
    retest[(0, 0)] = (1 + 1e-12, True)
    result = {"method": "m", "grouping": "pixel", "n_models": 3, "random": True, "rows": _rows(TABLE),
              "retest_rows": _retest_rows(retest)}
    distances = retest_distances(result, 3)
    assert distances[0, 0] == 0.0 and np.isfinite(distances).sum() == 7
