"""Tests of :mod:`stablesal.studies.consensus.test`.

The consensus map's tests and false-discovery control: exact nulls against enumeration, BH/BY
against SciPy, region scores against scipy.ndimage, a small calibration run, and a planted signal."""

import itertools
import math
import re
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage, stats
from torch import nn

import stablesal.studies.consensus.test as consensus_module
from stablesal.core.multiple_testing import benjamini_hochberg, benjamini_yekutieli, two_sample_permutation_p_values
from stablesal.core.seeding import derive
from stablesal.core.settings import StudySettings
from stablesal.explain.segmentation import make_segmenter
from stablesal.metrics import grey_maps
from stablesal.studies.consensus.test import (
    ConsensusMap, consensus_regions, consensus_test, false_discovery_proportions, model_ranks, model_seed,
    object_regions, permutation_calibration, permuted_ranks, region_ranks, region_scores, run_consensus,
    subset_calibration, write_mask_pngs,
)
from stablesal.studies.stability.run import explain_groupings, explainer_seed

from tests.helpers.basic_models import Spot, Spread


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
    from stablesal.studies.consensus.test import consensus_regions, model_ranks

    groupings, segments = consensus_regions(images, "grid", 4)
    trained_ranks, _ = model_ranks(models, images, targets, "saliency", groupings, segments, settings, "main")
    reference_ranks, _ = model_ranks(reference, images, targets, "saliency", groupings, segments, settings, "reference")
    pooled = np.concatenate([trained_ranks, reference_ranks])
    sums = np.stack([pooled[list(c)].sum(0) for c in itertools.combinations(range(12), 6)])
    exact = (sums >= trained_ranks.sum(0)).mean(0)
    np.testing.assert_allclose(learned.p_values, exact, rtol=1e-12)
    np.testing.assert_allclose(sampled.p_values, exact, atol=0.08)  # B = 400: SD <= 0.025


# ------------------------------ tests the mutation run asked for (marked mutation)
# Known answers for :mod:`stablesal.studies.consensus.test` that the mutation run asked for. Every expected value
# is recomputed here independently: region scores with scipy.ndimage, ranks with scipy.stats.rankdata,
# rank-sum p-values from an integer convolution, exact permutation p-values by enumeration, BH/BY
# with scipy.stats.false_discovery_control, intervals with scipy.stats.t, PNG pixels read back with
# matplotlib, and the seeds the docstrings state.


class Quarters(nn.Module):
    """Every quarter of the image counts, each with its own weight, through tanh: no two regions of
    a 2 × 2 grid tie."""

    def __init__(self, weights):
        super().__init__()
        self.weights = torch.tensor(weights, dtype=torch.float32)

    def forward(self, x):
        h, w = x.shape[2] // 2, x.shape[3] // 2
        quarters = [x[:, :, :h, :w], x[:, :, :h, w:], x[:, :, h:, :w], x[:, :, h:, w:]]
        logit = sum(wt * torch.tanh(q.square().flatten(1)).sum(1, keepdim=True) for wt, q in zip(self.weights, quarters))
        return torch.cat([logit, -logit], 1)


def quarter_models(seed: int, count: int, top: int | None = None):
    """``count`` models with random quarter weights; with ``top`` that quarter weighs most."""
    rng = np.random.default_rng(seed)
    models = []
    for _ in range(count):
        weights = rng.uniform(0.5, 1.5, 4)
        if top is not None:
            weights[top] = 4.0 + rng.uniform()
        models.append(Quarters(weights.tolist()).eval())
    return models


def rank_sum_tail(total: int, n_models: int, n_regions: int) -> float:
    """P(sum of n_models independent uniform ranks on 1..n_regions ≥ total), by integer counts."""
    counts = {0: 1}  # sum → number of rank tuples, Python integers (exact)
    for _ in range(n_models):
        step = {}
        for partial, ways in counts.items():
            for rank in range(1, n_regions + 1):
                step[partial + rank] = step.get(partial + rank, 0) + ways
        counts = step
    return sum(ways for value, ways in counts.items() if value >= total) / n_regions ** n_models


def independent_ranks(models, model_set, images, targets, method, segments, settings):
    """Ranks [K, N, R] from the raw maps: ndimage region means of |a| summed over channels, then
    rankdata (the models here give no ties)."""
    out = []
    for index, model in enumerate(models):
        seed = model_seed(settings, model_set, index)
        maps = explain_groupings(method, model, seed, images, targets, {"grid": segments}, settings)["grid"]
        magnitude = maps.detach().double().abs().sum(1).numpy()
        per_image = []
        for image in range(images.shape[0]):
            labels = segments[image].numpy()
            scores = ndimage.mean(magnitude[image], labels=labels, index=np.arange(4))
            assert len(set(np.round(scores, 12))) == 4
            per_image.append(stats.rankdata(scores))
        out.append(per_image)
    return np.array(out, dtype=float)


def bh_by(p_values: np.ndarray, q: float, procedure: str) -> np.ndarray:
    return stats.false_discovery_control(p_values, method=procedure) <= q


def images_and_grid(n_images=3):
    images = torch.rand(n_images, 3, 8, 8, generator=torch.Generator().manual_seed(2)) + 0.5
    segments = make_segmenter("grid", n_segments=4)(images)
    return images, torch.zeros(n_images, dtype=torch.long), segments


@pytest.mark.mutation
def test_region_scores_of_grey_maps_and_single_pixel_regions_against_ndimage():
    generator = torch.Generator().manual_seed(4)
    maps = torch.randn(2, 5, 6, generator=generator)  # [N, H, W]: no channel axis to sum
    segments = torch.randint(0, 3, (2, 5, 6), generator=generator)
    segments[:, 0, 0] = 3  # a one-pixel region
    segments[1][segments[1] == 2] = 1  # image 1 does not use id 2
    scores = region_scores(maps, segments)
    assert scores.shape == (2, 4)
    for image in range(2):
        labels = segments[image].numpy()
        for region in range(4):
            if (labels == region).any():
                assert scores[image, region] == pytest.approx(
                    ndimage.mean(np.abs(maps[image].double().numpy()), labels=labels, index=region), rel=1e-12)
            else:
                assert np.isnan(scores[image, region])
    assert scores[0, 3] == pytest.approx(abs(float(maps[0, 0, 0])), rel=1e-12)


@pytest.mark.mutation
def test_object_regions_skip_absent_ids_and_count_single_pixels():
    segments = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 3], [0, 0, 1, 1]]])  # id 2 absent, id 3 one pixel
    mask = torch.zeros(1, 3, 4, dtype=torch.bool)
    mask[0, 1, 3] = True
    assert object_regions(segments, mask).tolist() == [[False, False, False, True]]
    assert object_regions(segments, torch.zeros_like(mask), threshold=0.0).tolist() == [[True, True, False, True]]


@pytest.mark.mutation
def test_model_seeds_are_the_stated_streams():
    independent = StudySettings(seed=11)
    for model_set, index, repeat in (("main", 2, 1), ("reference", 0, 3)):
        assert model_seed(independent, model_set, index, repeat) == explainer_seed(independent, model_set, index, repeat)
        assert model_seed(independent, model_set, index, repeat) == derive(11, "explainer", model_set, index, repeat)
    common = StudySettings(seed=11, draws="common")
    assert model_seed(common, "main", 2, 1) == derive(11, "consensus", "main", 2, 1)
    assert model_seed(common, "reference", 2, 0) == derive(11, "consensus", "reference", 2, 0)
    assert model_seed(common, "main", 2) == derive(11, "consensus", "main", 2, 0)


@pytest.mark.mutation
def test_pixel_maps_are_tested_on_a_grid_of_the_asked_size():
    images = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    groupings, segments = consensus_regions(images, "pixel", 4)
    assert groupings == {"pixel": None}
    assert torch.equal(segments, make_segmenter("grid", n_segments=4)(images)) and int(segments.max()) == 3


@pytest.mark.mutation
def test_model_ranks_mean_map_and_tie_seeds():
    """The mean map is the plain mean of the models' grey maps; tied regions are ordered by
    region_ranks with image_seeds(images, derive(seed, "ties"))."""
    from tests.helpers.basic_models import Spot

    images, targets, segments = images_and_grid()
    settings = StudySettings(n_segments=4, seed=5)
    models = [Spot(0.4 + 0.3 * k).eval() for k in range(4)]  # three zero regions per map: ties
    ranks, mean_map = model_ranks(models, images, targets, "saliency", {"grid": segments}, segments, settings, "main")
    greys = []
    for index, model in enumerate(models):
        seed = model_seed(settings, "main", index)
        maps = explain_groupings("saliency", model, seed, images, targets, {"grid": segments}, settings)["grid"]
        greys.append(grey_maps(maps).double().numpy())
        magnitude = maps.detach().double().abs().sum(1).numpy()
        for image in range(3):
            scores = ndimage.mean(magnitude[image], labels=segments[image].numpy(), index=np.arange(4))
            assert np.sum(scores == 0) == 3 and ranks[index, image, 0] == 4
            # the zero regions: ordered by uniform keys from the image's tie seed
            from stablesal.core.seeding import image_seeds

            tie_seed = image_seeds(images, derive(seed, "ties"))[image]
            keys = np.random.default_rng(tie_seed).random(4)
            zero = [1, 2, 3]
            expected = 1 + np.argsort(np.argsort(keys[zero]))
            np.testing.assert_array_equal(ranks[index, image, zero], expected)
    np.testing.assert_allclose(mean_map.double().numpy(), np.mean(greys, axis=0), rtol=1e-6, atol=1e-7)
    assert mean_map.dtype == torch.float32


@pytest.mark.mutation
def test_model_ranks_mean_map_is_the_plain_mean_of_different_grey_maps():
    images, targets, segments = images_and_grid()
    settings = StudySettings(n_segments=4, seed=5)
    models = quarter_models(7, 4)
    _, mean_map = model_ranks(models, images, targets, "saliency", {"grid": segments}, segments, settings, "main")
    greys = np.stack([grey_maps(explain_groupings("saliency", model, model_seed(settings, "main", index), images,
                                                  targets, {"grid": segments}, settings)["grid"]).double().numpy()
                      for index, model in enumerate(models)])
    assert np.abs(greys - greys[0]).max() > 0.05  # the models' grey maps differ
    np.testing.assert_allclose(mean_map.double().numpy(), greys.mean(0), rtol=1e-6, atol=1e-6)


@pytest.mark.mutation
def test_run_consensus_rank_sum_against_an_independent_computation():
    images, targets, segments = images_and_grid()
    settings = StudySettings(n_segments=4, seed=3)
    models = quarter_models(0, 5, top=1)
    result = run_consensus(models, images, targets, "saliency", grouping="grid", settings=settings, q=0.01,
                           procedure="by", scope="set")
    ranks = independent_ranks(models, "main", images, targets, "saliency", segments, settings)
    totals = ranks.sum(0)
    expected_p = np.vectorize(lambda t: rank_sum_tail(int(t), 5, 4))(totals)
    np.testing.assert_allclose(result.p_values, expected_p, rtol=1e-12)
    # region 1 tops every map: p = 4^-5 ≈ 0.00098 in each image. At q = 0.01 BH per image (0.0025),
    # BY per image (0.0012) and BH over the set (3 · 0.01 / 12) find it; BY over the 12 regions
    # (3 · 0.01 / (12 · 3.10) = 0.00081) does not
    assert np.allclose(expected_p[:, 1], 4.0 ** -5)
    expected = {(procedure, scope): (bh_by(expected_p.ravel(), 0.01, procedure).reshape(3, 4) if scope == "set" else
                                     np.stack([bh_by(row, 0.01, procedure) for row in expected_p]))
                for procedure in ("bh", "by") for scope in ("image", "set")}
    assert not expected["by", "set"].any() and all(expected[key][:, 1].all() for key in expected if key != ("by", "set"))
    np.testing.assert_array_equal(result.significant, expected["by", "set"])
    assert (result.method, result.grouping, result.n_models, result.q, result.procedure, result.scope, result.test,
            result.n_reference) == ("saliency", "grid", 5, 0.01, "by", "set", "rank-sum", 0)
    three = run_consensus(models[:3], images, targets, "saliency", grouping="grid", settings=settings)  # the fewest
    assert three.n_models == 3
    assert torch.equal(result.segments, segments)
    # per image, BH at q = 0.3
    per_image = run_consensus(models, images, targets, "saliency", grouping="grid", settings=settings, q=0.3)
    np.testing.assert_array_equal(per_image.significant, np.stack([bh_by(row, 0.3, "bh") for row in expected_p]))
    assert (per_image.q, per_image.procedure, per_image.scope) == (0.3, "bh", "image")


@pytest.mark.mutation
def test_run_consensus_against_reference_models_exact_and_monte_carlo():
    images, targets, segments = images_and_grid(2)
    settings = StudySettings(n_segments=4, seed=9)
    models, reference = quarter_models(1, 3, top=0), quarter_models(2, 1)  # one reference model is enough
    trained_ranks = independent_ranks(models, "main", images, targets, "saliency", segments, settings)
    reference_ranks = independent_ranks(reference, "reference", images, targets, "saliency", segments, settings)
    monte_carlo_with_random_explainer(images, targets, segments)
    pooled = np.concatenate([trained_ranks, reference_ranks])
    sums = np.stack([pooled[list(c)].sum(0) for c in itertools.combinations(range(4), 3)])
    exact = (sums >= trained_ranks.sum(0)).mean(0)
    result = run_consensus(models, images, targets, "saliency", grouping="grid", settings=settings,
                           reference_models=reference, n_permutations=4, q=0.5)
    np.testing.assert_allclose(result.p_values, exact, rtol=1e-12)
    np.testing.assert_array_equal(result.significant, np.stack([bh_by(row, 0.5, "bh") for row in exact]))
    assert result.test == "trained vs reference (permutation)" and result.n_reference == 1
    # C(4, 3) = 4 > 3 draws: Monte Carlo, from the seed derive(settings.seed, "permutations")
    sampled = run_consensus(models, images, targets, "saliency", grouping="grid", settings=settings,
                            reference_models=reference, n_permutations=3)
    expected = two_sample_permutation_p_values(trained_ranks.reshape(3, -1), reference_ranks.reshape(1, -1),
                                               n_permutations=3, seed=derive(9, "permutations")).reshape(2, 4)
    np.testing.assert_array_equal(sampled.p_values, expected)
    assert set(np.round(sampled.p_values.ravel() * 4, 9)) <= {1.0, 2.0, 3.0, 4.0}


def monte_carlo_with_random_explainer(images, targets, segments):
    """The random-map null (maps drawn from each model's own seed only), 3 trained and 3 reference
    models: C(6, 3) = 20 > 10 draws, Monte Carlo from derive(settings.seed, "permutations")."""
    settings = StudySettings(n_segments=4, seed=9, n_samples=4)
    models, reference = quarter_models(11, 3, top=3), quarter_models(12, 3)
    trained_ranks = independent_ranks(models, "main", images, targets, "random", segments, settings)
    reference_ranks = independent_ranks(reference, "reference", images, targets, "random", segments, settings)
    result = run_consensus(models, images, targets, "random", grouping="grid", settings=settings,
                           reference_models=reference, n_permutations=10)

    def monte_carlo(seed):
        return two_sample_permutation_p_values(trained_ranks.reshape(3, -1), reference_ranks.reshape(3, -1),
                                               n_permutations=10, seed=seed).reshape(2, 4)

    np.testing.assert_array_equal(result.p_values, monte_carlo(derive(9, "permutations")))
    assert not np.array_equal(monte_carlo(derive(9)), monte_carlo(derive(9, "permutations")))  # the seed matters
    # the reference models draw from their own streams: their ranks under the "main" seeds differ
    assert not np.array_equal(reference_ranks, independent_ranks(reference, "main", images, targets, "random",
                                                                 segments, settings))


@pytest.mark.mutation
def test_run_consensus_default_permutation_count_and_grouping():
    images, targets, _ = images_and_grid(1)
    settings = StudySettings(n_segments=4, seed=1)
    models, reference = quarter_models(3, 8, top=2), quarter_models(4, 8)
    # C(16, 8) = 12 870 > 10 000 relabellings: the default draws 10 000 of them
    default = run_consensus(models, images, targets, "saliency", grouping="grid", settings=settings,
                            reference_models=reference)
    explicit = run_consensus(models, images, targets, "saliency", grouping="grid", settings=settings,
                             reference_models=reference, n_permutations=10_000)
    np.testing.assert_array_equal(default.p_values, explicit.p_values)
    counts = default.p_values * 10_001
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)
    # the default grouping is fast-SLIC super-pixels
    slic = run_consensus(models[:3], images, targets, "saliency", settings=settings)
    assert slic.grouping == "fastslic"
    assert torch.equal(slic.segments, make_segmenter("fastslic", n_segments=4)(images).cpu())


@pytest.mark.mutation
def test_bad_arguments_are_refused_before_any_model_is_explained(monkeypatch):
    images, targets, _ = images_and_grid(1)
    models = quarter_models(5, 3)
    calls = []
    monkeypatch.setattr(consensus_module, "explain_groupings", lambda *a, **k: calls.append(a))
    for bad in ({"q": 0.0}, {"q": 1.0}, {"q": 1.5}, {"scope": "all"}, {"procedure": "holm"},
                {"reference_models": []}):
        with pytest.raises(ValueError):
            run_consensus(models, images, targets, "saliency", grouping="grid", **bad)
    with pytest.raises(ValueError, match="at least 3 retrained models, got 2"):
        run_consensus(models[:2], images, targets, "saliency", grouping="grid")
    messages = {"scope": "^scope must be one of \\('image', 'set'\\), got 'all'$",
                "procedure": "^procedure must be one of \\('bh', 'by'\\), got 'holm'$",
                "reference_models": "^reference_models: give at least one reference model, or None for the rank-sum "
                                    "test$"}
    for key, value in (("scope", "all"), ("procedure", "holm"), ("reference_models", [])):
        with pytest.raises(ValueError, match=messages[key]):
            run_consensus(models, images, targets, "saliency", grouping="grid", **{key: value})
    assert not calls


@pytest.mark.mutation
def test_consensus_test_checks_defaults_and_empty_input():
    rng = np.random.default_rng(0)
    ranks = np.stack([np.stack([rng.permutation(4) + 1.0 for _ in range(5)]) for _ in range(8)])  # [8, 5, 4]
    reference = np.stack([np.stack([rng.permutation(4) + 1.0 for _ in range(5)]) for _ in range(8)])
    counts = np.full(5, 4)
    with pytest.raises(ValueError, match="^a consensus test needs at least 3 models, got 2$"):
        consensus_test(ranks[:2], counts)
    for bad in (reference[:, :4], reference[:0]):  # other images; no reference model at all
        message = f"reference_ranks must be [L >= 1, N, R] with N, R as ranks (5, 4), got {bad.shape}"
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            consensus_test(ranks, counts, bad)
    # C(16, 8) = 12 870 > 10 000: the default draws 10 000 relabellings from seed 0
    default = consensus_test(ranks, counts, reference)
    explicit = consensus_test(ranks, counts, reference, q=0.05, procedure="bh", scope="image", n_permutations=10_000,
                              seed=0)
    np.testing.assert_array_equal(default[0], explicit[0])
    np.testing.assert_array_equal(default[0], two_sample_permutation_p_values(
        ranks.reshape(8, -1), reference.reshape(8, -1), n_permutations=10_000, seed=0).reshape(5, 4))
    # no images: empty arrays of the right types
    p, significant = consensus_test(ranks[:, :0], np.zeros(0, dtype=int))
    assert p.shape == (0, 4) and significant.shape == (0, 4) and significant.dtype == bool


def hand_result():
    segments = torch.tensor([[[0, 0, 1, 1], [2, 2, 3, 3]], [[0, 1, 1, 1], [0, 1, 2, 2]], [[0, 0, 0, 0], [1, 1, 1, 1]]])
    p_values = np.array([[0.001, 0.5, 0.002, 0.9], [0.01, 0.02, 0.8, np.nan], [0.003, 0.7, np.nan, np.nan]])
    significant = np.array([[True, False, True, False], [True, True, False, False], [False, False, False, False]])
    return ConsensusMap(method="smoothgrad", grouping="grid", n_models=5, q=0.1, procedure="by", scope="set",
                        test="rank-sum", mean_map=torch.rand(3, 2, 4), segments=segments, p_values=p_values,
                        significant=significant, n_reference=2)


def t_interval(values):
    values = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return values.mean(), values.mean() - half, values.mean() + half


@pytest.mark.mutation
def test_counts_and_summary_word_for_word():
    result = hand_result()
    # image 0: regions 0 and 2 (2 + 2 of 8 pixels); image 1: regions 0 and 1 (2 + 4 of 8); image 2: none
    assert result.counts() == [{"image": 0, "regions": 4, "significant": 2, "area": 0.5},
                               {"image": 1, "regions": 3, "significant": 2, "area": 0.75},
                               {"image": 2, "regions": 2, "significant": 0, "area": 0.0}]
    masks = torch.zeros(3, 2, 4, dtype=torch.bool)
    masks[0, 0, :] = True      # image 0: regions 0 and 1 are on the object; found: region 0
    masks[1, :, 0] = True      # image 1: region 0 (2 of 2 pixels); found: region 0
    masks[1, 1, 1] = True      # region 1: 1 of 4 pixels, below half
    # image 2: no object region, no discovery: left out of power and of on_object
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = result.summary(masks)
    expected = {"method": "smoothgrad", "grouping": "grid", "n_models": 5, "q": 0.1, "procedure": "by", "scope": "set",
                "test": "rank-sum", "n_reference": 2, "n_images": 3}
    for key, values in (("regions", [4, 3, 2]), ("significant", [2, 2, 0]), ("area", [0.5, 0.75, 0.0]),
                        ("power", [1 / 2, 1 / 1]), ("on_object", [1 / 2, 1 / 2])):
        expected[key], expected[f"{key}_low"], expected[f"{key}_high"] = t_interval(values)
    expected["object_regions"] = (2 + 1 + 0) / 3
    expected["images_with_regions"], expected["share_with_regions"] = 2, 2 / 3  # images 0 and 1 have a discovery
    assert set(row) == set(expected)
    for key, value in expected.items():
        assert row[key] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), key
    # without masks: the design and the counts only
    assert set(result.summary()) == set(expected) - {"object_regions", "power", "power_low", "power_high",
                                                     "on_object", "on_object_low", "on_object_high"}


@pytest.mark.mutation
def test_save_keeps_every_array(tmp_path):
    result = hand_result()
    result.save(tmp_path / "c.npz")
    saved = np.load(tmp_path / "c.npz")
    assert sorted(saved.files) == ["mask", "mean_map", "p_values", "segments", "significant"]
    np.testing.assert_array_equal(saved["mean_map"], result.mean_map.numpy())
    np.testing.assert_array_equal(saved["p_values"], result.p_values)
    np.testing.assert_array_equal(saved["significant"], result.significant)
    np.testing.assert_array_equal(saved["segments"], result.segments.numpy())
    mask = np.stack([result.significant[i][result.segments[i].numpy()] for i in range(3)])
    np.testing.assert_array_equal(saved["mask"], mask)


@pytest.mark.mutation
def test_mask_pngs_are_black_and_white_with_the_stated_names(tmp_path):
    from matplotlib.image import imread

    result = hand_result()
    masks = result.mask().numpy()
    assert not masks[2].any()  # an all-black image; add an all-white one
    masks = np.concatenate([masks, np.ones((1, 2, 4), dtype=bool)])
    paths = write_mask_pngs(masks, tmp_path)
    assert [p.name for p in paths] == ["mask_0000.png", "mask_0001.png", "mask_0002.png", "mask_0003.png"]
    assert all(p.parent == tmp_path for p in paths)
    for path, mask in zip(paths, masks):
        pixels = np.round(imread(path) * 255).astype(int)  # RGBA in [0, 1]
        np.testing.assert_array_equal(pixels[..., :3], np.repeat(mask[..., None] * 255, 3, axis=2))
    saved = result.save_masks_png(tmp_path / "out")
    assert [p.name for p in saved] == ["mask_0000.png", "mask_0001.png", "mask_0002.png"]
    named = result.save_masks_png(tmp_path / "named", prefix="consensus")
    assert [p.name for p in named] == ["consensus_0000.png", "consensus_0001.png", "consensus_0002.png"]
    assert all(p.parent == tmp_path / "named" for p in named)


def independent_fdr(significant_per_study):
    per_study = [float(np.mean(s)) for s in significant_per_study]
    return t_interval(per_study)


def ragged_ranks(seed=0, n_models=4, n_images=3):
    """Ranks [K, N, R] with R = 6 slots: image 0 uses 6 regions, image 1 five, image 2 four (NaN
    beyond)."""
    rng = np.random.default_rng(seed)
    out = np.full((n_models, n_images, 6), np.nan)
    for k in range(n_models):
        for image, used in enumerate((6, 5, 4)[:n_images]):
            out[k, image, 0] = used                                   # region 0 on top under every model
            out[k, image, 1:used] = rng.permutation(used - 1) + 1.0   # the others in random order
    return out


def rank_sum_family(ranks, q, procedure, scope):
    """Discoveries under the rank-sum test, from integer-count p-values and SciPy's BH/BY."""
    n_models = ranks.shape[0]
    counts = np.isfinite(ranks[0]).sum(1)
    p = np.full(ranks.shape[1:], np.nan)
    for image in range(ranks.shape[1]):
        for region in range(ranks.shape[2]):
            if np.isfinite(ranks[0, image, region]):
                p[image, region] = rank_sum_tail(int(ranks[:, image, region].sum()), n_models, int(counts[image]))
    return discoveries(p, q, procedure, scope)


def discoveries(p, q, procedure, scope):
    out = np.zeros(p.shape, dtype=bool)
    if scope == "set":
        finite = np.isfinite(p)
        out[finite] = bh_by(p[finite], q, procedure)
        return out
    for image in range(p.shape[0]):
        finite = np.isfinite(p[image])
        out[image, finite] = bh_by(p[image, finite], q, procedure)
    return out


def fdp(significant, scope):
    """Every region is null: a family's false-discovery proportion is 1 with any discovery."""
    if scope == "set":
        return float(significant.any())
    return float(np.mean(significant.any(axis=1)))


@pytest.mark.mutation
@pytest.mark.parametrize("q,procedure,scope", [(0.9, "by", "set"), (0.6, "bh", "image")])
def test_permutation_calibration_against_an_independent_computation(q, procedure, scope):
    ranks = ragged_ranks()
    got = permutation_calibration(ranks, n_studies=12, q=q, procedure=procedure, scope=scope, seed=7)
    per_study = []
    for study in range(12):
        null = permuted_ranks(ranks, derive(7, "calibration", study))
        per_study.append(fdp(rank_sum_family(null, q, procedure, scope), scope))
    fdr, low, high = t_interval(per_study)
    assert np.std(per_study) > 0  # the studies differ, so the seeds matter
    expected = {"null": "permuted", "n_studies": 12, "q": q, "procedure": procedure, "scope": scope, "n_models": 4,
                "n_images": 3, "fdr": fdr, "fdr_low": low, "fdr_high": high}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), key


@pytest.mark.mutation
def test_permutation_calibration_defaults():
    ranks = ragged_ranks(seed=1, n_models=3, n_images=2)
    default = permutation_calibration(ranks)
    assert default == permutation_calibration(ranks, n_studies=200, q=0.05, procedure="bh", scope="image", seed=0)
    assert default["n_studies"] == 200


@pytest.mark.mutation
@pytest.mark.parametrize("n_models,n_reference,q,procedure,scope", [(3, 0, 0.45, "by", "image"),
                                                                     (4, 4, 0.5, "bh", "set"),
                                                                     (4, 4, 0.9, "bh", "set")])
def test_subset_calibration_against_an_independent_computation(n_models, n_reference, q, procedure, scope):
    pool = np.stack([ragged_ranks(seed=10 + k, n_models=1)[0] for k in range(10)])  # [10, 3, 6]
    for k in (1, 3, 5, 7, 9):  # these pool models put region 0 at the bottom: the draw of models matters
        pool[k, :, 0] = 1.0
        pool[k, :, 1:] = np.where(np.isnan(pool[k, :, 1:]), np.nan, pool[k, :, 1:] + 1.0)
    got = subset_calibration(pool, n_models, n_reference=n_reference, n_studies=10, q=q, procedure=procedure,
                             scope=scope, seed=4, n_permutations=30)
    rng = np.random.default_rng(derive(4, "subsets"))
    per_study = []
    for study in range(10):
        chosen = rng.choice(10, size=n_models + n_reference, replace=False)
        assert len(set(chosen.tolist())) == n_models + n_reference
        if n_reference:
            # C(8, 4) = 70 > 30 draws: the Monte Carlo test from derive(seed, "permutations", study)
            trained, reference = pool[chosen[:n_models]], pool[chosen[n_models:]]
            p = two_sample_permutation_p_values(trained.reshape(n_models, -1), reference.reshape(n_reference, -1),
                                                n_permutations=30, seed=derive(4, "permutations", study)).reshape(3, 6)
            per_study.append(fdp(discoveries(p, q, procedure, scope), scope))
        else:
            per_study.append(fdp(rank_sum_family(pool[chosen], q, procedure, scope), scope))
    fdr, low, high = t_interval(per_study)
    assert np.std(per_study) > 0  # studies differ, so the draws of models (and permutations) matter
    expected = {"null": "pool", "pool": 10, "n_studies": 10, "q": q, "procedure": procedure, "scope": scope,
                "n_models": n_models, "n_reference": n_reference, "n_images": 3, "fdr": fdr, "fdr_low": low,
                "fdr_high": high, "test": "trained vs reference (permutation)" if n_reference else "rank-sum"}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == (pytest.approx(value, rel=1e-12, nan_ok=True) if isinstance(value, float) else value), key


@pytest.mark.mutation
def test_subset_calibration_defaults_and_message(monkeypatch):
    pool = np.stack([ragged_ranks(seed=20 + k, n_models=1)[0] for k in range(14)])  # [14, 3, 6]
    # the documented defaults reach the test: 1000 permutations, seeds derive(0, "permutations", study)
    seen = []
    original = consensus_module.consensus_test
    monkeypatch.setattr(consensus_module, "consensus_test",
                        lambda *a, **k: seen.append((k["n_permutations"], k["seed"])) or original(*a, **k))
    subset_calibration(pool, 7, n_reference=7, n_studies=3)
    monkeypatch.undo()
    assert seen == [(1000, derive(0, "permutations", study)) for study in range(3)]
    # C(14, 7) = 3432 > 1000: the default permutation count is drawn
    default = subset_calibration(pool, 7, n_reference=7, n_studies=3)
    assert default == subset_calibration(pool, 7, n_reference=7, n_studies=3, q=0.05, procedure="bh", scope="image",
                                         seed=0, n_permutations=1000)
    plain = subset_calibration(pool[:5], 3, n_studies=4)
    assert plain == subset_calibration(pool[:5], 3, n_reference=0, n_studies=4, seed=0)
    assert subset_calibration(pool[:5], 3)["n_studies"] == 200
    with pytest.raises(ValueError, match="^the pool holds 14 models, fewer than n_models \\+ n_reference = 15$"):
        subset_calibration(pool, 8, n_reference=7)


@pytest.mark.mutation
def test_false_discovery_proportions_with_known_nulls_per_set():
    significant = np.array([[True, True, False], [True, False, False]])
    null = np.array([[True, False, False], [True, True, True]])
    # per image: 1/2 and 1/1; over the set: 2 false of 3 found
    np.testing.assert_allclose(false_discovery_proportions(significant, null), [0.5, 1.0])
    np.testing.assert_allclose(false_discovery_proportions(significant, null, scope="set"), [2 / 3])


@pytest.mark.mutation
def test_consensus_test_forwards_q_procedure_and_scope():
    ranks = ragged_ranks(seed=5)
    for q, procedure, scope in ((0.3, "by", "set"), (0.5, "bh", "image")):
        _, significant = consensus_test(ranks, np.isfinite(ranks[0]).sum(1), q=q, procedure=procedure, scope=scope)
        np.testing.assert_array_equal(significant, rank_sum_family(ranks, q, procedure, scope))


@pytest.mark.mutation
def test_permuted_ranks_follow_the_stated_stream_with_many_regions():
    """permuted_ranks draws one uniform key per entry from default_rng(seed) (absent entries get +inf),
    orders each map's values by key and puts the present ones back at the present positions in
    increasing order. Checked with 64 regions, where NumPy's default sort is not stable."""
    rng = np.random.default_rng(3)
    ranks = np.stack([np.stack([rng.permutation(64) + 1.0 for _ in range(2)]) for _ in range(3)])  # [3, 2, 64]
    ranks[:, 0, rng.choice(64, 20, replace=False)] = np.nan
    ranks[:, 1, 50:] = np.nan
    got = permuted_ranks(ranks, seed=8)
    keys = np.random.default_rng(8).random(ranks.shape)
    expected = np.full(ranks.shape, np.nan)
    for k in range(3):
        for image in range(2):
            present = [r for r in range(64) if np.isfinite(ranks[k, image, r])]
            by_key = sorted(present, key=lambda r: keys[k, image, r])
            for position, source in zip(present, by_key):
                expected[k, image, position] = ranks[k, image, source]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.mutation
def test_an_image_with_one_region_found_counts_as_an_image_with_regions():
    """One image, one significant region of four: it is an image with regions (count 1, share 1)."""
    from stablesal.studies.consensus.test import ConsensusMap

    segments = torch.arange(4).repeat_interleave(4).view(1, 4, 4)
    result = ConsensusMap("saliency", "grid", 3, 0.05, "bh", "image", "trained_vs_reference",
                          torch.zeros(1, 4, 4), segments, np.array([[0.01, 0.5, 0.6, 0.7]]),
                          np.array([[True, False, False, False]]))
    row = result.summary()
    assert row["images_with_regions"] == 1 and row["share_with_regions"] == 1.0 and row["n_images"] == 1
