"""The consensus against a generic null family (issue #28, item 4): the reference named by its
set (the test "trained vs <set>", the map store read under that set), the rank-sum test read as
agreement, the pool calibrations run only when the pool can give more than one study (else a
reason is recorded), and how many reference models would make a region reachable."""

import json
import math

import numpy as np
import pytest
import torch

from stablesal.core.settings import ConsensusSettings, StudySettings
from stablesal.studies.consensus import run as consensus_run
from stablesal.studies.consensus.run import (
    consensus_unit, pool_calibrations, reachability, reference_models_needed, smallest_p, two_sample_name,
)

from tests.helpers.basic_models import Spot, Spread


def null_ranks(pool, n_images=6, n_regions=8, seed=0):
    """Ranks ``[P, N, R]`` of a pool of null models: every map a uniform random permutation."""
    rng = np.random.default_rng(seed)
    return np.stack([[rng.permutation(n_regions) + 1.0 for _ in range(n_images)] for _ in range(pool)])


SETTINGS = ConsensusSettings(methods=["saliency"], groupings=["grid"], calibration_studies=5, n_permutations=99)


def test_the_pool_calibration_runs_only_when_the_pool_is_larger_than_the_models_drawn():
    # a pool of 4 and K = 4: every study would draw the same 4 models (the default report's 4 of 4)
    rows, skipped = pool_calibrations(null_ranks(4), 4, SETTINGS, seed=0, reference_name="random_label")
    assert rows == []
    rank_sum = next(row for row in skipped if row["test"] == "rank-sum")
    assert rank_sum["pool"] == 4 and rank_sum["reference"] == "random_label"
    assert "holds 4 models, not more than the 4 each study draws" in rank_sum["reason"]
    assert "one study repeated 5 times" in rank_sum["reason"]
    # the two halves need two disjoint groups of at least 3: a pool of 4 has not
    halves = next(row for row in skipped if row["test"] == "trained vs random_label")
    assert "at least 6 random_label models, there are 4" in halves["reason"]
    # a pool of 5 > K = 4: the rank-sum pool study runs, over C(5, 4) = 5 distinct draws
    rows, skipped = pool_calibrations(null_ranks(5), 4, SETTINGS, seed=0, reference_name="random_label")
    assert [(row["null"], row["test"], row["distinct_draws"]) for row in rows] == [("pool", "rank-sum", 5)]
    assert [row["test"] for row in skipped] == ["trained vs random_label"]
    # a pool of 6: both run; the halves are 3 + 3, C(6, 3) · C(3, 3) = 20 distinct draws (pool ≥ 2 · size)
    rows, skipped = pool_calibrations(null_ranks(6), 4, SETTINGS, seed=0, reference_name="random_label")
    assert skipped == []
    halves = rows[1]
    assert (halves["test"], halves["n_models"], halves["n_reference"], halves["distinct_draws"]) == (
        "trained vs random_label", 3, 3, 20)
    assert halves["pool"] >= halves["n_models"] + halves["n_reference"]


def test_the_unit_names_its_reference_and_reads_the_map_store_under_that_set(monkeypatch):
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    targets = torch.zeros(4, dtype=torch.long)
    trained = [Spot(0.5 + 0.05 * k).eval() for k in range(4)]
    reference = [Spread(k).eval() for k in range(4)]
    study = StudySettings(n_segments=4, n_samples=4)
    sets = []
    original = consensus_run.model_ranks
    monkeypatch.setattr(consensus_run, "model_ranks", lambda *a, **k: sets.append(a[7]) or original(*a, **k))
    unit = consensus_unit(trained, reference, images, targets, None, "saliency", "grid", study, SETTINGS,
                          reference_name="random_label")
    assert sets == ["main", "random_label"]  # the store's set names, and the explainer seeds' streams
    assert unit["reference"] == "random_label" and unit["n_reference"] == 4 and unit["n_untrained"] == 0
    tests = {row["test"]: row for row in unit["tests"]}
    assert set(tests) == {"rank-sum", "trained vs random_label"}
    assert tests["rank-sum"]["reads"] == "agreement"
    assert tests["trained vs random_label"]["reads"] == "learning beyond random_label"
    assert tests["trained vs random_label"]["reference"] == "random_label"
    assert {row["test"] for row in unit["calibration"]} == {"rank-sum", "trained vs random_label"}
    # 4 trained models and a pool of 4: no pool calibration, and the unit says why
    assert not any(row["null"] == "pool" for row in unit["calibration"])
    assert {row["test"] for row in unit["calibration_skipped"]} == {"rank-sum", "trained vs random_label"}
    assert all(row["reason"] for row in unit["calibration_skipped"])
    # the planner plans beyond the same null
    assert unit["plan"]["null"] == "random_label" and unit["plan"]["null_models"] == 4
    assert unit["recommendation"]["quantity"].endswith("the random_label null's mean map partialled out")
    assert "beyond the random_label null" in unit["sentence"] or "no plan" in unit["sentence"]
    # the untrained reference keeps the name results before the null families carry
    assert two_sample_name("untrained") == "trained vs untrained"
    monkeypatch.undo()
    json.dumps(unit)  # JSON-serialisable


def test_a_larger_pool_runs_the_pool_calibrations_in_the_unit():
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)) + 0.5
    targets = torch.zeros(4, dtype=torch.long)
    trained = [Spot(0.5 + 0.05 * k).eval() for k in range(3)]
    reference = [Spread(k).eval() for k in range(6)]
    unit = consensus_unit(trained, reference, images, targets, None, "saliency", "grid",
                          StudySettings(n_segments=4, n_samples=4), SETTINGS, reference_name="untrained")
    pools = {(row["test"], row["pool"], row["n_models"]) for row in unit["calibration"] if row["null"] == "pool"}
    assert pools == {("rank-sum", 6, 3), ("trained vs untrained", 6, 3)}
    assert unit["calibration_skipped"] == [] and unit["n_untrained"] == 6


def test_the_planner_refuses_when_the_trained_models_are_the_reference_family():
    """Trained and reference models of one family (Spread networks: every quarter weighted at
    random): nothing lies beyond the null, so no plan; Spot models (one quarter) get one."""
    images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(2)) + 0.5
    targets = torch.zeros(6, dtype=torch.long)
    study = StudySettings(n_segments=4, n_samples=4)
    settings = ConsensusSettings(methods=["saliency"], groupings=["pixel"], calibration_studies=2, n_permutations=99,
                                 pilot_models=5)
    same = consensus_unit([Spread(k).eval() for k in range(5)], [Spread(100 + k).eval() for k in range(8)], images,
                          targets, None, "saliency", "pixel", study, settings, reference_name="random_label")
    assert same["plan"]["refused"] and same["recommendation"]["models"] is None
    assert same["sentence"].startswith("saliency with pixel: no plan, because")


def test_reference_models_needed_by_hand():
    # K = 4, a lone region among 64 at q = 0.05: 1/C(4 + R, 4) ≤ 0.05/64 ⇔ C ≥ 1280: C(15, 4) = 1365 → R = 11
    assert reference_models_needed(4, 0.05 / 64, 10_000) == 11
    assert math.comb(14, 4) < 1280 <= math.comb(15, 4)
    # K = 3, any region at q = 0.05 (p ≤ q): C(3 + R, 3) ≥ 20 → R = 3 (C(6, 3) = 20)
    assert reference_models_needed(3, 0.05, 999) == 3
    # the permutation count is the bound: p ≥ 1/(B + 1) > threshold
    assert reference_models_needed(3, 0.001, 99) is None
    # the Monte Carlo branch: B = 99, threshold 0.015: C ≤ 99 gives p = 1/C ≥ 1/99 ≈ 0.0101 ≤ 0.015 first
    r = reference_models_needed(3, 0.015, 99)
    assert smallest_p("permutation", 3, r, 0, 99) <= 0.015 < smallest_p("permutation", 3, r - 1, 0, 99)


def test_reachability_says_how_many_reference_models_fix_the_design():
    # 3 trained vs 2 reference: C(5, 3) = 10 relabellings, p ≥ 0.1 > q: nothing reachable
    blocked = reachability({"n_models": 3, "n_reference": 2}, "permutation", 64, 0.05, 10_000)
    assert not blocked["can_discover"]
    assert blocked["reference_for_discovery"] == 3            # C(6, 3) = 20: p = 0.05 ≤ q
    assert blocked["reference_for_lone_region"] == reference_models_needed(3, 0.05 / 64, 10_000)
    assert smallest_p("permutation", 3, blocked["reference_for_lone_region"], 0, 10_000) <= 0.05 / 64
    # 4 vs 4 (the default report): a region, but no lone one; 11 references make a lone one reachable
    limited = reachability({"n_models": 4, "n_reference": 4}, "permutation", 64, 0.05, 10_000)
    assert limited["can_discover"] and "reference_for_discovery" not in limited
    assert limited["reference_for_lone_region"] == 11
    # reachable designs and the rank-sum test carry no counts
    assert "reference_for_lone_region" not in reachability({"n_models": 4, "n_reference": 11}, "permutation", 64,
                                                           0.05, 10_000)
    assert "reference_for_discovery" not in reachability({"n_models": 3, "n_reference": 0}, "rank-sum", 64, 0.05, 0)


@pytest.mark.parametrize("name", ["random_label", "bn_calibrated", "untrained"])
def test_the_two_sample_test_is_named_by_its_reference_set(name):
    assert two_sample_name(name) == f"trained vs {name}"
