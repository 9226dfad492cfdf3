"""Tests of :mod:`stablesal.studies.stability.run`."""

import json

import numpy as np
import pytest
import torch

from stablesal.core.intervals import design_interval, pair_mean, rows_to_pair_array
from stablesal.studies.stability.run import StudySettings, compute_partitions, explainer_seed, run_study
from stablesal.studies.stability.statistics import grid_contrast_rows, summarise, variance_reduction_rows


@pytest.fixture(scope="module")
def three_models(tiny_shapes):
    from stablesal.models.training import TrainConfig, train_seeds

    runs = train_seeds(tiny_shapes, k=3, vary="seed", config=TrainConfig(epochs=1, model_options={"width": 4}),
                       progress=False)
    return [r.model for r in runs]


def untrained(tiny_shapes, seeds):
    from stablesal.models import build_model

    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = build_model("small_cnn", 3, tiny_shapes.num_classes, tiny_shapes.mean, tiny_shapes.std, width=4)
        models.append(model.eval().requires_grad_(False))
    return models


class ConstantOutput(torch.nn.Module):
    """A classifier whose logits never depend on the input."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.linspace(-1, 1, classes), requires_grad=False)
        self.eval()

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


def test_study_units_cache_and_resume(tiny_shapes, three_models, tmp_path):
    images, labels, masks = tiny_shapes.test_images[:6], tiny_shapes.test_labels[:6], tiny_shapes.test_masks[:6]
    settings = StudySettings(methods=["saliency", "smoothgrad"], groupings=["pixel", "fastslic", "grid"],
                             n_samples=3, n_steps=3, n_segments=16)
    first = run_study({"main": three_models}, images, labels, masks, settings, cache_dir=tmp_path, progress=False)
    assert len(first) == 3 * 3  # (2 methods + random control) × (pixel, fastslic, grid@fastslic)
    assert {r["grouping"] for r in first} == {"pixel", "fastslic", "grid@fastslic"}
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 3
    # an interrupted run: one unit missing; the re-run recomputes only that one, identically
    stamps = {f: f.stat().st_mtime_ns for f in files}
    files[0].unlink()
    again = run_study({"main": three_models}, images, labels, masks, settings, cache_dir=tmp_path, progress=False)
    assert sum(1 for f in files[1:] if f.stat().st_mtime_ns != stamps[f]) == 0
    strip = lambda results: [{k: v for k, v in r.items() if k not in ("seconds", "explain_seconds_per_model")}  # noqa
                             for r in results]
    assert json.dumps(strip(first), sort_keys=True) == json.dumps(strip(again), sort_keys=True)
    # one row per image × model pair, and a retest row per image × model for the random method only
    pixel = {r["method"]: r for r in first if r["grouping"] == "pixel"}
    assert len(pixel["saliency"]["rows"]) == 6 * 3
    assert pixel["saliency"]["retest_rows"] == [] and len(pixel["smoothgrad"]["retest_rows"]) == 6 * 3


def test_explainer_seeds_are_independent_per_model_and_repeat():
    independent, common = StudySettings(), StudySettings(draws="common")
    seeds = {explainer_seed(independent, s, k, r) for s in ("main", "control") for k in range(4) for r in (0, 1)}
    assert len(seeds) == 16
    assert explainer_seed(common, "main", 0) == explainer_seed(common, "untrained", 3)
    assert explainer_seed(common, "main", 0, 1) != explainer_seed(common, "main", 0, 0)
    with pytest.raises(ValueError, match="draws must be one of"):
        StudySettings(draws="shared")
    with pytest.raises(ValueError, match="rng must be one of"):
        StudySettings(rng="philox")


def _mean_spearman(sets, images, labels, preset, draws):
    settings = StudySettings(methods=[preset], groupings=["pixel"], n_samples=120, sanity=False,
                             retest_sets=(), draws=draws)
    results = run_study(sets, images, labels, None, settings, progress=False, include_random=False)
    for result in results:
        assert all(row["draws"] == draws for row in result["rows"])
    assert all(row["draws"] == draws for row in summarise(results))
    # a map of exact zeros (LIME's ridge on a constant output) has no ranking: no similarity either
    return {r["model_set"]: float(np.nan_to_num([row["spearman"] for row in r["rows"]]).mean()) for r in results}


@pytest.mark.parametrize("preset", ["rise", "lime", "kernel_shap"])
def test_null_pairs_under_independent_and_common_draws(tiny_shapes, preset):
    """A constant-output pair: with independent draws the maps share nothing, so their rank
    similarity is near zero; with common draws RISE's shared masks alone make them identical.
    An untrained pair: near zero for RISE and KernelSHAP under independent draws, and clearly
    higher under common ones. LIME's untrained agreement is the same under both (it is not made by
    the draws but by architecture and input: removing a large segment moves any network's output
    more), which is what the untrained-network null of the report measures."""
    images, labels = tiny_shapes.test_images[:16], tiny_shapes.test_labels[:16]
    sets = {"main": [ConstantOutput(), ConstantOutput()], "untrained": untrained(tiny_shapes, [11, 12])}
    independent = _mean_spearman(sets, images, labels, preset, "independent")
    common = _mean_spearman(sets, images, labels, preset, "common")
    assert abs(independent["main"]) < 0.1, independent
    if preset == "rise":  # the constant model's RISE map is the density of its masks
        assert common["main"] > 0.99
    if preset in ("rise", "kernel_shap"):
        assert abs(independent["untrained"]) < 0.2 and common["untrained"] > independent["untrained"] + 0.15, \
            (independent, common)
    else:
        assert abs(common["untrained"] - independent["untrained"]) < 0.1 and independent["untrained"] > 0.2


def test_retest_ceiling_and_corrected_similarity(tiny_shapes, three_models):
    images, labels = tiny_shapes.test_images[:6], tiny_shapes.test_labels[:6]
    settings = StudySettings(methods=["saliency", "smoothgrad"], groupings=["pixel"], n_samples=3, sanity=False)
    results = run_study({"main": three_models}, images, labels, None, settings, progress=False, include_random=False)
    summary = {r["method"]: r for r in summarise(results)}
    assert summary["saliency"]["retest_exact"] and summary["saliency"]["spearman_retest"] == 1.0
    assert summary["saliency"]["spearman_corrected"] == pytest.approx(summary["saliency"]["spearman"])
    smooth = next(r for r in results if r["method"] == "smoothgrad")
    retest = np.array([[row["spearman"] for row in smooth["retest_rows"] if row["model"] == k] for k in range(3)])
    between = np.array([row["spearman"] for row in smooth["rows"]])
    row = summary["smoothgrad"]
    assert not row["retest_exact"] and row["spearman_retest"] == pytest.approx(retest.mean())
    assert row["spearman_retest"] < 1.0  # 3 noisy samples: two runs differ
    assert row["spearman_corrected"] == pytest.approx(between.mean() / retest.mean())
    # the summary's interval is the design interval over images and models on Fisher's z (Spearman's
    # range is [-1, 1]), computed directly
    direct = design_interval(lambda w: pair_mean(rows_to_pair_array(smooth["rows"], "spearman", 6, 3), w, "main"),
                             6, {"main": 3}, bounds=(-1.0, 1.0))
    assert (row["spearman_ci_low"], row["spearman_ci_high"]) == pytest.approx((direct.low, direct.high))


def test_grid_control_matches_superpixel_size(tiny_shapes):
    images = tiny_shapes.test_images[:6]
    partitions = compute_partitions(images, ["pixel", "fastslic", "felzenszwalb", "grid"], 16)
    assert set(partitions) == {"fastslic", "grid@fastslic", "felzenszwalb", "grid@felzenszwalb"}
    pixels = images.shape[2] * images.shape[3]
    for name in ("fastslic", "felzenszwalb"):
        counts = (partitions[name].flatten(1).max(1).values + 1).double()
        superpixel_size = (pixels / counts).mean().item()
        grid_size = pixels / (partitions[f"grid@{name}"].max().item() + 1)
        assert abs(grid_size - superpixel_size) <= 0.1 * superpixel_size, name


def test_variance_reduction_of_random_maps_is_the_segment_size(tiny_shapes, three_models):
    """I.i.d. random maps: measured and predicted reductions are d/m (within their intervals)."""
    images, labels = tiny_shapes.test_images[:12], tiny_shapes.test_labels[:12]
    settings = StudySettings(methods=["saliency"], groupings=["pixel", "grid"], n_segments=16, sanity=False)
    results = run_study({"main": three_models}, images, labels, None, settings, progress=False)
    assert {r["method"]: r["family"] for r in results} == {"saliency": "gradient", "random": "control"}
    rows = {r["method"]: r for r in variance_reduction_rows(results)}
    random = rows["random"]
    assert random["mean_segment_size"] == 16.0
    assert random["measured_ci_low"] < 16.0 < random["measured_ci_high"]
    assert random["predicted_ci_low"] < 16.0 < random["predicted_ci_high"]
    assert random["measured"] == pytest.approx(16.0, rel=0.15)
    # the real method's pixels vary together: its projection cannot reach d/m
    assert rows["saliency"]["measured"] < 16.0
    for row in rows.values():
        assert row["measured_over_predicted"] == pytest.approx(row["measured"] / row["predicted"])
    # 'grid' without super-pixels is a plain grid: no matched-grid contrast exists
    assert grid_contrast_rows(results) == []


def test_untrained_null_and_difference(tiny_shapes, three_models):
    images, labels = tiny_shapes.test_images[:6], tiny_shapes.test_labels[:6]
    settings = StudySettings(methods=["saliency"], groupings=["pixel"], sanity=False)
    sets = {"main": three_models, "untrained": untrained(tiny_shapes, [1, 2, 3])}
    results = run_study(sets, images, labels, None, settings, progress=False, include_random=False,
                        varies={"main": "seed", "untrained": "init"})
    row = next(r for r in summarise(results) if r["model_set"] == "main")
    null = next(r for r in results if r["model_set"] == "untrained")
    assert row["spearman_untrained"] == pytest.approx(np.mean([r["spearman"] for r in null["rows"]]))
    assert row["spearman_above_untrained"] == pytest.approx(row["spearman"] - row["spearman_untrained"])
    assert row["spearman_above_untrained_ci_low"] < row["spearman_above_untrained"] < \
        row["spearman_above_untrained_ci_high"]
    # deterministic saliency: everything between models is 'seed' (main varies seed), explainer 0
    assert row["share_explainer"] == 0.0 and row["share_seed"] == pytest.approx(1.0)


class Votes(torch.nn.Module):
    """A small nonlinear model that always predicts class ``winner`` (a large bias), so which
    images it gets right is known: those labelled ``winner``."""

    def __init__(self, winner: int, classes: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Linear(4, classes)
        with torch.no_grad():
            self.head.bias.zero_()
            self.head.bias[winner] = 100.0

    def forward(self, x):
        return self.head(torch.tanh(self.conv(x)).mean(dim=(2, 3)))


def test_retest_runs_on_the_sets_asked_for_with_each_models_own_correctness(tiny_shapes):
    images, labels = tiny_shapes.test_images[:8], tiny_shapes.test_labels[:8]
    classes = tiny_shapes.num_classes
    winners = [int(labels[0]), int(labels[1]) if int(labels[1]) != int(labels[0]) else (int(labels[0]) + 1) % classes]
    torch.manual_seed(0)
    fold = [Votes(w, classes).eval() for w in winners]
    main = [Votes(winners[0], classes).eval() for _ in range(2)]
    settings = StudySettings(methods=["smoothgrad"], groupings=["pixel"], n_samples=2, sanity=False,
                             retest_sets=("fold",))
    results = run_study({"main": main, "fold": fold}, images, labels, None, settings, progress=False,
                        include_random=False)
    by_set = {r["model_set"]: r for r in results}
    assert by_set["main"]["retest_rows"] == []   # main is not in retest_sets here
    rows = by_set["fold"]["retest_rows"]
    assert len(rows) == 8 * 2
    for row in rows:
        assert row["correct"] == (int(labels[row["image"]]) == winners[row["model"]])
        assert 0 <= row["sq_distance"] and -1 <= row["spearman"] <= 1


def test_run_study_rejects_bad_designs(tiny_shapes, three_models):
    images, labels = tiny_shapes.test_images[:2], tiny_shapes.test_labels[:2]
    settings = StudySettings(methods=["saliency"], groupings=["pixel"])
    with pytest.raises(ValueError, match="at least one set"):
        run_study({}, images, labels, None, settings, progress=False)
    with pytest.raises(ValueError, match="needs at least 2"):
        run_study({"main": three_models[:1]}, images, labels, None, settings, progress=False)
    with pytest.raises(ValueError, match="varies"):
        run_study({"main": three_models}, images, labels, None, settings, progress=False, varies={"main": "seeds"})


def test_output_drops_are_computed_once_per_model_and_follow_its_weights():
    """µFidelity's drops do not depend on the explanation: every method × grouping reuses them, and
    a model with other weights (or other images) gets its own."""
    from stablesal.metrics import output_drops, random_cell_subsets
    from stablesal.studies.stability.run import _output_drops

    calls = []

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                           torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))

        def forward(self, x):
            calls.append(len(x))
            return self.net(x)

    torch.manual_seed(0)
    model = Counting().eval()
    images, targets = torch.rand(4, 3, 16, 16), torch.zeros(4, dtype=torch.long)
    subsets = random_cell_subsets(16, 16, 32, seed=0)
    first = _output_drops(model, images, targets, subsets)
    count = len(calls)
    assert torch.equal(first, output_drops(model, images, targets, subsets))
    calls.clear()
    assert torch.equal(_output_drops(model, images, targets, subsets), first) and not calls  # reused
    with torch.no_grad():
        model.net[0].weight.add_(0.1)
    changed = _output_drops(model, images, targets, subsets)
    assert len(calls) == count and not torch.equal(changed, first)
    assert torch.equal(changed, output_drops(model, images, targets, subsets))
    other = _output_drops(model, images.flip(3), targets, subsets)
    assert torch.equal(other, output_drops(model, images.flip(3), targets, subsets))


def test_the_random_map_control_is_a_registered_explainer_with_the_old_draws(tiny_shapes):
    """The control goes through the explainers' path and draws what the study's null always drew:
    per image, uniform maps from a generator seeded with image_seeds(images, seed)."""
    from stablesal.core.seeding import image_seeds
    from stablesal.explain.explainers import describe
    from stablesal.explain.grouping import Partition
    from stablesal.studies.stability.run import compute_partitions, explain_groupings
    from stablesal.studies.stability.statistics import family

    images, labels = tiny_shapes.test_images[:4], tiny_shapes.test_labels[:4]
    expected = torch.stack([torch.rand(image.shape, generator=torch.Generator().manual_seed(s))
                            for image, s in zip(images, image_seeds(images, 11))])
    grid = compute_partitions(images, ["grid"], 16)["grid"]
    maps = explain_groupings("random", torch.nn.Identity().eval(), 11, images, labels, {"pixel": None, "grid": grid},
                             StudySettings())
    assert torch.equal(maps["pixel"], expected) and torch.equal(maps["grid"], Partition(grid).project(expected))
    control = describe("random")
    assert family("random") == "control" and control.random and control.budget is None and not control.needs_baselines


def test_fidelity_is_computed_up_to_64_px_unless_asked_and_never_when_off():
    """Issue #31: at 224 px model 0's fidelity metrics took 80 % of a study unit although nobody
    asked for them. ``fidelity = "auto"`` computes them up to 64 px a side; "on" and "off" decide."""
    from stablesal.core.settings import FIDELITY_AUTO_MAX_SIDE
    from stablesal.studies.stability.run import _image_metrics

    from tests.helpers.basic_models import small_model

    assert FIDELITY_AUTO_MAX_SIDE == 64
    auto, on, off = (StudySettings(fidelity=choice, deletion_steps=4, mu_fidelity_subsets=8)
                     for choice in ("auto", "on", "off"))
    assert [s.computes_fidelity(side) for s in (auto, on, off) for side in (64, 65)] == [
        True, False, True, True, False, False]
    with pytest.raises(ValueError, match=r"StudySettings.fidelity must be one of \('auto', 'on', 'off'\), got 'yes'"):
        StudySettings(fidelity="yes")
    fidelity_keys = {"deletion_auc", "insertion_auc", "mu_fidelity"}
    for side, settings, computed in ((16, auto, True), (72, auto, False), (72, on, True), (16, off, False)):
        images = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(side))
        model, masks = small_model(side=side), torch.zeros(2, side, side, dtype=torch.bool)
        masks[:, :4, :4] = True
        out = _image_metrics(model, images, torch.tensor([0, 1]), masks, torch.rand(2, 1, side, side), settings)
        assert fidelity_keys & set(out) == (fidelity_keys if computed else set()), (side, settings.fidelity)
        assert {"relevance_mass", "pointing_game"} <= set(out)  # localisation is cheap: always computed


def test_constant_models_are_flagged_not_perfectly_stable():
    """Issue #28: two models whose output ignores the image got SSIM 1.00 for every gradient method
    (their maps are constant) and Sparsified SmoothGrad Spearman 1.00 (top-k ties broken by
    position). Pairs with a constant map are left out of every similarity and counted."""
    import math

    class Constant(torch.nn.Module):
        def forward(self, x):
            return x.sum((1, 2, 3))[:, None] * 0 + torch.tensor([[1.0, 0.0, 0.0]])

    images = torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    labels = torch.zeros(4, dtype=torch.long)
    settings = StudySettings(methods=["saliency", "smoothgrad", "sparsified_smoothgrad"], groupings=["pixel"],
                             n_samples=8, sanity=False, fidelity="off")
    results = run_study({"main": [Constant().eval(), Constant().eval(), Constant().eval()]}, images, labels, None, settings,
                        progress=False, include_random=False)
    rows = {r["method"]: r for r in summarise(results)}
    for method in ("saliency", "smoothgrad"):
        row = rows[method]
        assert row["degenerate_maps"] == 4 * 3 and row["degenerate_pairs"] == 4 * 3  # images × maps, × pairs
        assert math.isnan(row["ssim"]) and math.isnan(row["spearman"]), row["ssim"]  # not 1.00
    unit = next(r for r in results if r["method"] == "smoothgrad")
    assert all(r["degenerate"] and math.isnan(r["ssim"]) for r in unit["rows"] + unit["retest_rows"])
    sparse = rows["sparsified_smoothgrad"]
    assert sparse["degenerate_pairs"] == 0 and abs(sparse["spearman"]) < 0.2, sparse["spearman"]  # not 1.00


def test_every_random_explainer_of_a_study_takes_its_n_samples():
    """One budget name: a perturbation preset's samples and a gradient method's noise draws are both
    the study's ``n_samples``; a preset without a budget (occlusion) takes none."""
    from stablesal.studies.stability.run import make_explainer
    from tests.helpers.basic_models import Spot

    settings = StudySettings(n_samples=7)
    assert make_explainer("rise", Spot(0.5).eval(), settings).n_samples == 7
    assert make_explainer("lime", Spot(0.5).eval(), settings).n_samples == 7
    assert make_explainer("smoothgrad", Spot(0.5).eval(), settings).sampler.n_samples == 7
    assert make_explainer("occlusion", Spot(0.5).eval(), settings).budget is None
