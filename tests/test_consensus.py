"""The consensus map's tests and false-discovery control: exact nulls against enumeration, BH/BY
against SciPy, region scores against scipy.ndimage, a small calibration run, and a planted signal."""

import itertools

import numpy as np
import pytest
import torch
from scipy import ndimage, stats
from torch import nn

from stablesal.consensus import (
    ConsensusMap, consensus_test, false_discovery_proportions, object_regions, permutation_calibration,
    permuted_ranks, region_ranks, region_scores, run_consensus, subset_calibration,
)
from stablesal.multiple_testing import (
    benjamini_hochberg, benjamini_yekutieli, rank_sum_null, rank_sum_p_values, reject, two_sample_permutation_p_values,
)
from stablesal.settings import StudySettings


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


def test_region_scores_match_scipy_ndimage():
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(2, 3, 6, 7, generator=generator)
    segments = torch.randint(0, 5, (2, 6, 7), generator=generator)
    segments[1][segments[1] == 3] = 4  # image 1 does not use id 3
    scores = region_scores(maps, segments)
    magnitude = maps.double().abs().sum(1).numpy()
    for image in range(2):
        labels = segments[image].numpy()
        for region in range(5):
            if (labels == region).any():
                assert scores[image, region] == pytest.approx(
                    ndimage.mean(magnitude[image], labels=labels, index=region), rel=1e-12)
            else:
                assert np.isnan(scores[image, region])


def test_region_ranks_match_rankdata_and_break_ties_uniformly():
    scores = np.array([[0.3, 0.1, np.nan, 0.9, 0.2]])
    np.testing.assert_array_equal(region_ranks(scores, [0])[0, [0, 1, 3, 4]], stats.rankdata([0.3, 0.1, 0.9, 0.2]))
    tied = np.array([[1.0, 1.0, 1.0, 0.0]])
    first = [region_ranks(tied, [seed])[0] for seed in range(600)]
    assert all(r[3] == 1 and sorted(r[:3]) == [2, 3, 4] for r in first)
    share_top = np.mean([r[0] == 4 for r in first])
    assert abs(share_top - 1 / 3) < 0.06  # each tied region is on top a third of the time
    assert np.array_equal(region_ranks(tied, [5]), region_ranks(tied, [5]))


def test_object_regions_by_hand():
    segments = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]]])
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2, 1:3] = True  # half of region 0, half of region 1, none of region 2
    assert object_regions(segments, mask).tolist() == [[True, True, False]]
    assert object_regions(segments, mask, threshold=0.6).tolist() == [[False, False, False]]


def test_planted_consistent_region_is_found_and_nothing_else():
    rng = np.random.default_rng(1)
    n_models, n_images, n_regions = 10, 4, 30
    ranks = np.stack([np.stack([rng.permutation(n_regions) + 1.0 for _ in range(n_images)])
                      for _ in range(n_models)])
    # region 0 of every image: top-3 under every model
    for k in range(n_models):
        for i in range(n_images):
            top = rng.integers(n_regions - 2, n_regions + 1)
            swap = np.nonzero(ranks[k, i] == top)[0][0]
            ranks[k, i, swap], ranks[k, i, 0] = ranks[k, i, 0], top
    p, significant = consensus_test(ranks, np.full(n_images, n_regions))
    assert significant[:, 0].all()
    assert significant[:, 1:].sum() <= 2
    with pytest.raises(ValueError, match="at least 3 models"):
        consensus_test(ranks[:2], np.full(n_images, n_regions))
    with pytest.raises(ValueError, match="scope"):
        consensus_test(ranks, np.full(n_images, n_regions), scope="images")


def test_small_calibration_run_keeps_the_false_discovery_rate():
    # the permutation null on ranks of a strongly structured map set (every model agrees)
    agree = np.tile(np.arange(1.0, 41.0), (8, 12, 1))
    assert consensus_test(agree, np.full(12, 40))[1].all(axis=0)[-3:].all()  # the real maps: found
    calibration = permutation_calibration(agree, n_studies=200, seed=4)
    assert calibration["fdr_high"] <= 0.08 and calibration["fdr"] <= 0.065
    shuffled = permuted_ranks(agree, seed=0)
    assert (np.sort(shuffled, axis=2) == np.arange(1.0, 41.0)).all()  # each map keeps its ranks
    pool = np.stack([np.stack([np.random.default_rng(k * 100 + i).permutation(40) + 1.0 for i in range(12)])
                     for k in range(12)])
    two_sample = subset_calibration(pool, 4, n_reference=4, n_studies=30, n_permutations=199, seed=1)
    assert two_sample["fdr"] <= 0.1 and two_sample["test"].startswith("trained vs reference")
    with pytest.raises(ValueError, match="pool holds 12"):
        subset_calibration(pool, 8, n_reference=8)


def test_false_discovery_proportions():
    significant = np.array([[True, False, True], [False, False, False]])
    null = np.array([[True, False, False], [True, True, True]])
    np.testing.assert_allclose(false_discovery_proportions(significant, null), [0.5, 0.0])
    np.testing.assert_allclose(false_discovery_proportions(significant, null, scope="set"), [0.5])
    np.testing.assert_allclose(false_discovery_proportions(significant), [1.0, 0.0])


class Spot(nn.Module):
    """A nonlinear model whose class-0 logit depends on the top-left quarter only, through tanh."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        quarter = x[:, :, : x.shape[2] // 2, : x.shape[3] // 2]
        logit = torch.tanh(self.scale * quarter.square().flatten(1)).sum(1, keepdim=True)
        return torch.cat([logit, -logit], 1)


def test_run_consensus_finds_the_region_every_model_uses(tmp_path):
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    models = [Spot(0.5 + 0.1 * k).eval() for k in range(6)]
    settings = StudySettings(n_segments=4)
    result = run_consensus(models, images, torch.zeros(3, dtype=torch.long), "saliency", grouping="grid",
                           settings=settings)
    assert isinstance(result, ConsensusMap) and result.p_values.shape == (3, 4)
    # region 0 (top-left) is always the top region: p = (1/4)^6
    np.testing.assert_allclose(result.p_values[:, 0], 0.25 ** 6)
    assert result.significant[:, 0].all() and not result.significant[:, 1:].any()
    assert result.mask()[:, :4, :4].all() and not result.mask()[:, 4:, :].any()
    assert [c["significant"] for c in result.counts()] == [1, 1, 1]
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[:, :4, :] = True  # the object covers regions 0 and 1
    summary = result.summary(masks)
    assert summary["power"] == pytest.approx(0.5) and summary["on_object"] == pytest.approx(1.0)
    from skimage.io import imread

    paths = result.save_masks_png(tmp_path / "png")
    assert len(paths) == 3 and (imread(paths[0])[..., 0] > 127).tolist() == result.mask()[0].tolist()
    result.save(tmp_path / "consensus.npz")
    saved = np.load(tmp_path / "consensus.npz")
    assert saved["mask"].shape == (3, 8, 8) and saved["mask"].sum() == 3 * 16
    with pytest.raises(ValueError, match="at least 3 retrained models"):
        run_consensus(models[:2], images, torch.zeros(3, dtype=torch.long), "saliency", grouping="grid")
    with pytest.raises(ValueError, match="q"):
        run_consensus(models, images, torch.zeros(3, dtype=torch.long), "saliency", grouping="grid", q=0.0)


def test_consensus_unit_reports_tests_calibration_power_and_planner(tmp_path):
    from stablesal.consensus_study import consensus_unit, run_consensus_stage, smallest_p
    from stablesal.settings import ConsensusSettings

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


class Spread(nn.Module):
    """Every quarter of the image counts alike, with a random weight per network."""

    def __init__(self, seed: int):
        super().__init__()
        self.weights = torch.rand(4, generator=torch.Generator().manual_seed(seed))

    def forward(self, x):
        h, w = x.shape[2] // 2, x.shape[3] // 2
        quarters = [x[:, :, :h, :w], x[:, :, :h, w:], x[:, :, h:, :w], x[:, :, h:, w:]]
        logit = sum(wt * torch.tanh(q.square().flatten(1)).sum(1, keepdim=True) for wt, q in zip(self.weights, quarters))
        return torch.cat([logit, -logit], 1)


def test_permuted_ranks_keep_each_map_and_its_gaps_and_shuffle_uniformly():
    ranks = np.array([[[1.0, np.nan, 3.0, 2.0]]] * 2)
    shuffled = [permuted_ranks(ranks, seed) for seed in range(900)]
    for out in shuffled[:20]:
        assert np.isnan(out[:, :, 1]).all()
        assert sorted(out[0, 0, [0, 2, 3]]) == [1.0, 2.0, 3.0] and sorted(out[1, 0, [0, 2, 3]]) == [1.0, 2.0, 3.0]
    first = np.array([out[0, 0, 0] for out in shuffled])
    assert all(abs(np.mean(first == value) - 1 / 3) < 0.06 for value in (1.0, 2.0, 3.0))
    # the two models are shuffled independently
    assert 0.2 < np.mean([out[0, 0, 0] == out[1, 0, 0] for out in shuffled]) < 0.47


def test_consensus_of_a_perturbation_method():
    """Perturbation presets go through the same test: occlusion maps projected on the regions."""
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) + 0.5
    models = [Spot(0.5 + 0.1 * k).eval() for k in range(5)]
    result = run_consensus(models, images, torch.zeros(2, dtype=torch.long), "occlusion", grouping="grid",
                           settings=StudySettings(n_segments=4))
    # only the top-left quarter changes the output: it is every model's top region, p = (1/4)^5
    np.testing.assert_allclose(result.p_values[:, 0], 0.25 ** 5)
    assert result.significant[:, 0].all() and not result.significant[:, 1:].any()


def test_reachability_follows_benjamini_hochberg():
    """BH rejects p_(i) ≤ q·i/R: nothing is reachable when the smallest p exceeds q, a lone region
    when it is at most q/R, and in between only many regions at once (checked on BH itself)."""
    from stablesal.consensus_study import models_for_lone_region, reachability, smallest_p
    from stablesal.multiple_testing import benjamini_hochberg

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


def test_set_scope_by_procedure_and_reference_models_through_run_consensus():
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    targets = torch.zeros(3, dtype=torch.long)
    models = [Spot(0.5 + 0.1 * k).eval() for k in range(6)]
    settings = StudySettings(n_segments=4)
    per_image = run_consensus(models, images, targets, "saliency", grouping="grid", settings=settings)
    whole_set = run_consensus(models, images, targets, "saliency", grouping="grid", settings=settings, scope="set")
    np.testing.assert_array_equal(whole_set.p_values, per_image.p_values)
    np.testing.assert_array_equal(whole_set.significant, benjamini_hochberg(per_image.p_values))
    by = run_consensus(models, images, targets, "saliency", grouping="grid", settings=settings, procedure="by")
    np.testing.assert_array_equal(by.significant, np.stack([benjamini_yekutieli(r) for r in per_image.p_values]))
    reference = [Spread(k).eval() for k in range(6)]
    learned = run_consensus(models, images, targets, "saliency", grouping="grid", settings=settings,
                            reference_models=reference, n_permutations=999)  # >= 924: every relabelling once
    sampled = run_consensus(models, images, targets, "saliency", grouping="grid", settings=settings,
                            reference_models=reference, n_permutations=400)   # < 924: Monte Carlo
    assert learned.n_reference == 6 and learned.test.startswith("trained vs reference")
    # against the exact relabelling distribution, enumerated over all C(12, 6) = 924 relabellings
    from stablesal.consensus import consensus_regions, model_ranks

    groupings, segments = consensus_regions(images, "grid", 4)
    trained_ranks, _ = model_ranks(models, images, targets, "saliency", groupings, segments, settings, "main")
    reference_ranks, _ = model_ranks(reference, images, targets, "saliency", groupings, segments, settings, "reference")
    pooled = np.concatenate([trained_ranks, reference_ranks])
    sums = np.stack([pooled[list(c)].sum(0) for c in itertools.combinations(range(12), 6)])
    exact = (sums >= trained_ranks.sum(0)).mean(0)
    np.testing.assert_allclose(learned.p_values, exact, rtol=1e-12)
    np.testing.assert_allclose(sampled.p_values, exact, atol=0.08)  # B = 400: SD <= 0.025


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
    import stablesal.consensus as consensus_module
    from stablesal.consensus import consensus_regions, model_seed
    from stablesal.consensus_study import consensus_unit
    from stablesal.map_store import MapStore
    from stablesal.settings import ConsensusSettings
    from stablesal.stability import explainer_seed, run_study

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
