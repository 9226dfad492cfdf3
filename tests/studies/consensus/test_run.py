"""Tests of :mod:`stablesal.studies.consensus.run`.

The consensus map's tests and false-discovery control: exact nulls against enumeration, BH/BY
against SciPy, region scores against scipy.ndimage, a small calibration run, and a planted signal."""

import numpy as np
import pytest
import torch
from torch import nn

from stablesal.core.settings import StudySettings

from tests.helpers.basic_models import Spot, Spread


def test_consensus_unit_reports_tests_calibration_power_and_planner(tmp_path):
    from stablesal.studies.consensus.run import consensus_unit, run_consensus_stage, smallest_p
    from stablesal.core.settings import ConsensusSettings

    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    targets = torch.zeros(4, dtype=torch.long)
    trained = [Spot(0.5 + 0.05 * k).eval() for k in range(11)]
    # untrained stand-ins: every quarter weighted alike, so no region is preferred
    untrained = [Spread(k).eval() for k in range(8)]
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[:, :4, :4] = True
    study = StudySettings(n_segments=4, n_samples=4)
    settings = ConsensusSettings(methods=["smoothgrad"], groupings=["grid"], n_models=6, calibration_studies=20,
                                 n_permutations=999)
    unit = consensus_unit(trained, untrained, images, targets, masks, "smoothgrad", "grid", study, settings,
                          out_dir=tmp_path)
    tests = {row["test"]: row for row in unit["tests"]}
    assert set(tests) == {"rank-sum", "trained vs untrained"}
    assert tests["rank-sum"]["power"] == pytest.approx(1.0) and tests["rank-sum"]["on_object"] == pytest.approx(1.0)
    # 6 trained vs 8 untrained: C(14, 6) = 3003 relabellings, B = 999: (1 + 999/3003) / 1000
    assert tests["trained vs untrained"]["smallest_p"] == pytest.approx((1 + 999 / 3003) / 1000)
    assert tests["trained vs untrained"]["lone_region_threshold"] == pytest.approx(0.05 / 4)
    assert tests["trained vs untrained"]["can_find_lone_region"] and 0 < tests["trained vs untrained"]["power"] <= 1
    assert tests["rank-sum"]["smallest_p"] == pytest.approx(4.0 ** -6)
    assert smallest_p("permutation", 4, 4, 64, 10_000) == pytest.approx(1 / 70)  # exact: every relabelling
    assert smallest_p("permutation", 4, 4, 64, 69) == pytest.approx((1 + 69 / 70) / 70)  # Monte Carlo
    nulls = {(row["null"], row["test"]) for row in unit["calibration"]}
    assert nulls == {("permuted", "rank-sum"), ("permuted", "trained vs untrained"), ("pool", "rank-sum"),
                     ("pool", "trained vs untrained")}
    # the planner: 3 pilot models, 8 held out: validation at K' = 4 only, at the pilot's 4 samples and at 8
    assert [(row["models"], row["samples"]) for row in unit["validation"]] == [(4, 4), (4, 8)]
    for row in unit["validation"]:
        assert row["error"] == pytest.approx(row["predicted"] - row["observed"])
        assert 0 <= row["observed"] <= 1 and 0 <= row["predicted"] <= 1
        # without the noise correction V_μ is larger, so the uncorrected prediction is at least as high
        assert row["predicted_uncorrected"] >= row["predicted"] - 1e-12
    assert unit["random"] and set(unit["components"]) == {"V_mu", "E_m", "E_s"}
    deterministic = consensus_unit(trained, untrained, images, targets, masks, "saliency", "grid", study, settings)
    assert [(row["models"], row["samples"]) for row in deterministic["validation"]] == [(4, None)]
    assert deterministic["components"]["E_s"] == 0 and deterministic["recommendation"]["samples"] is None
    assert sorted(unit["files"]) == sorted(f.name for f in tmp_path.iterdir())
    # resumed from the cache while the files exist; recomputed when they are gone
    again = run_consensus_stage(trained, untrained, images, targets, masks, study, settings, cache_dir=tmp_path / "c",
                                out_dir=tmp_path / "o", progress=False)
    assert again[0]["tests"][0]["power"] == unit["tests"][0]["power"]
    with pytest.raises(ValueError, match="between 3 and the 11 trained models"):
        consensus_unit(trained, untrained, images, targets, masks, "smoothgrad", "grid", study,
                       ConsensusSettings(n_models=12))


def test_reachability_follows_benjamini_hochberg():
    """BH rejects p_(i) ≤ q·i/R: nothing is reachable when the smallest p exceeds q, a lone region
    when it is at most q/R, and in between only many regions at once (checked on BH itself)."""
    from stablesal.studies.consensus.run import models_for_lone_region, reachability, smallest_p
    from stablesal.core.multiple_testing import benjamini_hochberg

    row = {"n_models": 6, "n_reference": 6}
    # C(12, 6) = 924 ≤ B = 10^4 relabellings, enumerated: smallest p = 1/924 ≈ 0.00108, between q/R = 0.00078 and q
    reach = reachability(row, "permutation", 64, 0.05, 10_000)
    assert reach["can_discover"] and not reach["can_find_lone_region"]
    smallest = reach["smallest_p"]
    lone = np.full(64, 0.5)
    lone[0] = smallest
    assert not benjamini_hochberg(lone).any()           # a lone extreme region: not found
    many = np.full(64, 0.5)
    many[:2] = smallest
    assert benjamini_hochberg(many)[:2].all()            # two of them: both found (0.00108 ≤ 0.05·2/64)
    assert reach["models_for_lone_region"] == 7          # C(14, 7) = 3432 ≤ 10^4 relabellings: 1/3432 ≤ 0.00078
    assert smallest_p("permutation", 7, 7, 0, 10_000) <= 0.05 / 64 < smallest_p("permutation", 6, 6, 0, 10_000)
    blocked = reachability({"n_models": 3, "n_reference": 2}, "permutation", 64, 0.05, 999)
    assert not blocked["can_discover"]                   # C(5, 3) = 10 relabellings: p >= 0.1 > q
    sampled = reachability({"n_models": 3, "n_reference": 3}, "permutation", 64, 0.05, 19)
    assert not sampled["can_discover"]                   # B = 19 < C(6, 3) = 20: (1 + 19/20)/20 = 0.0975 > q
    assert models_for_lone_region(0.05 / 1000, 10_000) is None  # then the permutation count is the bound
    assert reachability({"n_models": 3, "n_reference": 0}, "rank-sum", 64, 0.05, 0)["can_find_lone_region"]


class WeightedSpot(nn.Module):
    """:class:`Spot` with its scale as a parameter, so that the models differ in their state."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, x):
        quarter = x[:, :, : x.shape[2] // 2, : x.shape[3] // 2]
        logit = torch.tanh(self.scale * quarter.square().flatten(1)).sum(1, keepdim=True)
        return torch.cat([logit, -logit], 1)


def test_consensus_reads_the_maps_the_stability_study_kept(tmp_path, monkeypatch):
    """The stability study keeps the main and untrained models' maps of the consensus images; the
    consensus then runs no explainer for them and gives exactly the numbers it computes alone.
    A map drawn under other settings, for other targets, or by another model is never read."""
    import stablesal.studies.consensus.test as consensus_module
    from stablesal.studies.consensus.test import consensus_regions, model_seed
    from stablesal.studies.consensus.run import consensus_unit
    from stablesal.studies.stability.map_store import MapStore
    from stablesal.core.settings import ConsensusSettings
    from stablesal.studies.stability.run import explainer_seed, run_study

    images = torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(0)) + 0.5
    targets = torch.zeros(10, dtype=torch.long)
    trained = [WeightedSpot(0.5 + 0.05 * k).eval() for k in range(4)]
    untrained = [Spread(k).eval() for k in range(4)]
    study = StudySettings(methods=["smoothgrad", "gradient_shap"], groupings=["pixel", "grid"], n_segments=4,
                          n_samples=4, sanity=False, mu_fidelity_subsets=8)
    settings = ConsensusSettings(methods=["smoothgrad", "gradient_shap"], groupings=["grid", "pixel"],
                                 calibration_studies=10, n_permutations=999, n_images=8)
    store = MapStore(tmp_path / "maps", settings.n_images, settings.groupings, settings.methods)
    run_study({"main": trained, "untrained": untrained}, images, targets, None, study, progress=False,
              include_random=False, store=store)
    # per method: main first and repeat draws, untrained first draws; two groupings each
    assert len(list((tmp_path / "maps").glob("*.pt"))) == 2 * (4 * 2 + 4) * 2
    few, few_targets = images[:8], targets[:8]
    for method in ("smoothgrad", "gradient_shap"):
        for grouping in ("grid", "pixel"):
            alone = consensus_unit(trained, untrained, few, few_targets, None, method, grouping, study, settings)
            calls = []
            original = consensus_module.explain_groupings
            monkeypatch.setattr(consensus_module, "explain_groupings",
                                lambda *a, **k: calls.append(a) or original(*a, **k))
            kept = consensus_unit(trained, untrained, few, few_targets, None, method, grouping, study, settings,
                                  store=store)
            monkeypatch.undo()
            assert not calls  # every map came from the store
            assert kept["tests"] == alone["tests"] and kept["calibration"] == alone["calibration"]
            assert kept["curve"] == alone["curve"]
    # a hit needs everything that shapes the map: the same query with one part changed misses
    seed = model_seed(study, "main", 0)
    assert seed == explainer_seed(study, "main", 0)
    _, segments = consensus_regions(few, "grid", 4)
    assert store.get("smoothgrad", trained[0], seed, study, "grid", few, few_targets, segments) is not None
    more = StudySettings(methods=["smoothgrad"], groupings=["pixel", "grid"], n_segments=4, n_samples=5)
    assert store.get("smoothgrad", trained[0], seed, more, "grid", few, few_targets, segments) is None
    assert store.get("smoothgrad", trained[0], seed, study, "grid", few, 1 - few_targets, segments) is None
    assert store.get("smoothgrad", trained[1], seed, study, "grid", few, few_targets, segments) is None
    assert store.get("smoothgrad", trained[0], seed + 1, study, "grid", few, few_targets, segments) is None
    counter = StudySettings(methods=["smoothgrad", "gradient_shap"], groupings=["pixel", "grid"], n_segments=4,
                            n_samples=4, sanity=False, mu_fidelity_subsets=8, rng="counter")  # other streams
    assert store.get("smoothgrad", trained[0], seed, counter, "grid", few, few_targets, segments) is None
    # GradientSHAP's references come from the batch's first 8 images: a smaller store keeps none
    assert not MapStore(tmp_path / "small", 4, ["grid"]).wants("gradient_shap", "grid")
    # common draws: the consensus keeps independent streams of its own (its nulls need them)
    common = StudySettings(draws="common")
    assert model_seed(common, "main", 0) != model_seed(common, "main", 1)
