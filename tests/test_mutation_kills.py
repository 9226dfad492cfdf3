"""Tests written against the survivors of `make mutation` (see mutation/*.md): each checks
a known answer or a property computed independently of the code under test (a value derived by
hand, NumPy or SciPy), so that a changed constant, operator or argument fails. Every test is fast."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from stablesal.intervals import Weights, bootstrap_interval, image_mean


# --------------------------------------------------------------------------------------
# intervals.bootstrap_interval
# --------------------------------------------------------------------------------------

class _Recorder:
    """A statistic that records the weights it is called with and returns a weighted mean of
    fixed per-image values plus a per-model term, or NaN where ``nan_when`` says so."""

    def __init__(self, values, model_values=None, nan_when=None):
        self.values, self.model_values, self.nan_when = np.asarray(values, float), model_values, nan_when
        self.calls = []

    def __call__(self, weights):
        self.calls.append(Weights(weights.images.copy(), {k: v.copy() for k, v in weights.models.items()}))
        if self.nan_when is not None and self.nan_when(weights):
            return float("nan")
        result = float((weights.images * self.values).sum() / weights.images.sum())
        for name, per_model in (self.model_values or {}).items():
            w = weights.models[name]
            result += float((w * np.asarray(per_model, float)).sum() / w.sum())
        return result


def test_bootstrap_resamples_images_and_models_with_replacement():
    """Every replicate's weights are multiplicities of a resample of size n (images) and K
    (each model set): non-negative integers of the right length that sum to n and K; every
    index is drawn somewhere and the mean multiplicity is 1 (E of a multinomial count)."""
    n, counts = 7, {"main": 4, "other": 3}
    recorder = _Recorder(np.arange(n), {"main": [0.0, 1.0, 2.0, 3.0], "other": [5.0, 0.0, 1.0]})
    n_boot = 400
    interval = bootstrap_interval(recorder, n, counts, n_boot=n_boot, seed=3)
    # first call: the estimate, at unit weights
    first = recorder.calls[0]
    assert np.array_equal(first.images, np.ones(n))
    assert set(first.models) == set(counts)
    for name, count in counts.items():
        assert np.array_equal(first.models[name], np.ones(count))
    assert interval.estimate == pytest.approx(np.mean(np.arange(n)) + 1.5 + 2.0)
    replicates = recorder.calls[1:]
    assert len(replicates) == n_boot
    images = np.stack([w.images for w in replicates])
    assert images.shape == (n_boot, n)
    assert images.dtype == np.float64
    assert np.all(images == np.round(images)) and np.all(images >= 0)
    assert np.all(images.sum(1) == n)
    assert np.all(images.max(0) > 0)  # every image (the first and the last too) is drawn at some point
    assert images.mean(0) == pytest.approx(np.ones(n), abs=0.2)
    for name, count in counts.items():
        models = np.stack([w.models[name] for w in replicates])
        assert models.shape == (n_boot, count)
        assert np.all(models == np.round(models)) and np.all(models >= 0)
        assert np.all(models.sum(1) == count)
        assert np.all(models.max(0) > 0)
        assert models.mean(0) == pytest.approx(np.ones(count), abs=0.2)


def test_bootstrap_interval_is_the_percentile_interval_of_its_replicates():
    """low/high are NumPy's quantiles (1 ∓ confidence)/2 of the finite replicates, se their
    standard deviation with ddof = 1; df is NaN; the fields name the method and confidence."""
    values = np.random.default_rng(0).normal(size=9)
    for confidence in (0.95, 0.8, 0.5):
        recorder = _Recorder(values, {"main": [0.0, 0.3, -0.2]})
        interval = bootstrap_interval(recorder, 9, {"main": 3}, n_boot=60, seed=4, confidence=confidence)
        replicates = np.array([recorder(w) for w in recorder.calls[1:61]])
        low, high = np.quantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2])
        assert interval.low == pytest.approx(low, abs=1e-12)
        assert interval.high == pytest.approx(high, abs=1e-12)
        assert interval.se == pytest.approx(np.std(replicates, ddof=1), abs=1e-12)
        assert math.isnan(interval.df)
        assert interval.confidence == confidence
        assert interval.method == "bootstrap"
        assert interval.estimate == pytest.approx(values.mean() + 0.1 / 3)


def test_bootstrap_interval_drops_undefined_replicates():
    """Replicates where the statistic is NaN (here: image 0 not drawn) are left out; the interval
    is that of the others."""
    values = np.linspace(0.0, 1.0, 6)
    recorder = _Recorder(values, nan_when=lambda w: w.images[0] == 0)
    interval = bootstrap_interval(recorder, 6, {}, n_boot=80, seed=1, confidence=0.9)
    replicates = np.array([recorder(w) for w in recorder.calls[1:81]])
    finite = replicates[np.isfinite(replicates)]
    assert 10 < finite.size < 80  # some replicates were undefined, most were not
    low, high = np.quantile(finite, [0.05, 0.95])
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=1e-12)
    assert interval.se == pytest.approx(np.std(finite, ddof=1), abs=1e-12)


def test_bootstrap_interval_needs_two_finite_replicates():
    """With exactly two replicates the interval exists; with one (or none) it is NaN, keeping
    the estimate, the confidence and the method."""
    values = np.array([0.0, 1.0, 3.0])
    two = bootstrap_interval(lambda w: image_mean(values, w), 3, {}, n_boot=2, seed=0, confidence=0.9)
    assert math.isfinite(two.low) and math.isfinite(two.high) and math.isfinite(two.se)
    one = bootstrap_interval(lambda w: image_mean(values, w), 3, {}, n_boot=1, seed=0, confidence=0.9)
    assert math.isnan(one.low) and math.isnan(one.high) and math.isnan(one.se) and math.isnan(one.df)
    assert one.estimate == pytest.approx(4 / 3)
    assert one.confidence == 0.9 and one.method == "bootstrap"


def test_bootstrap_interval_defaults():
    """Defaults: 1000 replicates, seed 0 (the same result as seed=0), 95 % confidence."""
    recorder = _Recorder(np.arange(5.0))
    interval = bootstrap_interval(recorder, 5, {})
    assert len(recorder.calls) == 1 + 1000
    assert interval.confidence == 0.95
    seeded = bootstrap_interval(_Recorder(np.arange(5.0)), 5, {}, seed=0)
    assert (seeded.low, seeded.high, seeded.se) == (interval.low, interval.high, interval.se)
    replicates = np.array([recorder(w) for w in recorder.calls[1:]])
    assert (interval.low, interval.high) == pytest.approx(tuple(np.quantile(replicates, [0.025, 0.975])))


def test_bootstrap_interval_reads_float32_statistics_in_float64():
    """A statistic that returns NumPy float32 numbers (a mean of float32 data) is read in float64:
    the percentile ends and the standard error are those of the float64 replicates."""
    data = np.random.default_rng(2).normal(size=11).astype(np.float32)
    calls = []

    def statistic(weights):
        value = np.float32((weights.images.astype(np.float32) * data).sum() / np.float32(weights.images.sum()))
        calls.append(value)
        return value

    interval = bootstrap_interval(statistic, 11, {}, n_boot=50, seed=6, confidence=0.9)
    replicates = np.array(calls[1:], dtype=np.float64)
    low, high = np.quantile(replicates, [0.05, 0.95])
    assert interval.low == low and interval.high == high
    assert interval.se == np.std(replicates, ddof=1)


def test_rows_to_model_array_fills_missing_entries_with_nan():
    from stablesal.intervals import rows_to_model_array

    rows = [{"image": 0, "model": 1, "x": 0.5}, {"image": 1, "model": 0, "x": None}]
    array = rows_to_model_array(rows, "x", 2, 3)
    assert array.dtype == np.float64
    assert array[0, 1] == 0.5 and np.isnan(array).sum() == 5


# --------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------

def test_metric_metadata_is_attached():
    from stablesal.metrics import METRICS, mege, normalised_l2, pairwise_metrics, reco, spearman, ssim

    assert ssim.info.name == "ssim" and ssim.info.higher_is_better and (ssim.info.low, ssim.info.high) == (-1.0, 1.0)
    assert spearman.info.name == "spearman" and normalised_l2.info.higher_is_better is False
    assert mege.info.name == "mege" and reco.info.name == "reco"
    assert pairwise_metrics() == ("ssim", "spearman", "normalised_l2", "topk_intersection")
    assert all(METRICS[name].info.name == name for name in pairwise_metrics())
    assert METRICS.info("insertion_auc", "info").higher_is_better and not METRICS.info("deletion_auc", "info").higher_is_better


def test_unit_maps_by_hand():
    """Each image's channel-summed map divided by its own L2 norm; [B, H, W] maps are read as they
    are; a map with a norm below 1 is scaled up too."""
    from stablesal.metrics import unit_maps

    maps = torch.tensor([[[3.0, 0.0], [0.0, 4.0]], [[0.0, 0.06], [0.08, 0.0]]])  # norms 5 and 0.1
    expected = torch.tensor([[[0.6, 0.0], [0.0, 0.8]], [[0.0, 0.6], [0.8, 0.0]]])
    assert torch.allclose(unit_maps(maps), expected)
    channels = torch.stack([maps, maps], 1) / 2                                   # [B, 2, H, W]: sums to maps
    assert torch.allclose(unit_maps(channels), expected)


def test_rows_per_call_measures_in_the_images_dtype_and_checks_its_argument():
    """``batch_size="auto"`` measures the model on inputs of the images' dtype (a float64 model
    fails on float32 inputs); a bool or a non-integer is not a batch size."""
    from stablesal.metrics import deletion_insertion

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 5 * 3, 3)).double().eval()
    images = torch.rand(2, 2, 5, 3, dtype=torch.float64)
    maps = torch.rand(2, 5, 3, dtype=torch.float64)
    target = torch.tensor([0, 2])
    auto, _ = deletion_insertion(model, images, maps, target, steps=3, batch_size="auto")
    fixed, _ = deletion_insertion(model, images, maps, target, steps=3, batch_size=1)
    assert torch.allclose(auto, fixed)
    for bad in (True, 2.5, 0, "many"):
        with pytest.raises(ValueError, match="batch_size must be a positive int or 'auto'"):
            deletion_insertion(model, images, maps, target, steps=3, batch_size=bad)


def test_randomised_copy_resets_only_modules_that_own_parameters():
    """A module with parameters but no ``reset_parameters`` is copied as it is (not an error);
    a container's own ``reset_parameters`` is not called (it owns no parameter)."""
    from stablesal.metrics import randomised_copy

    class Scale(nn.Module):  # owns a parameter, has no reset_parameters
        def __init__(self):
            super().__init__()
            self.factor = nn.Parameter(torch.tensor(3.0))

        def forward(self, x):
            return x * self.factor

    class Block(nn.Module):  # owns no parameter; its children do
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 4)
            self.resets = 0

        def reset_parameters(self):
            self.resets += 1

        def forward(self, x):
            return self.linear(x)

    model = nn.Sequential(Block(), Scale())
    copy = randomised_copy(model, seed=1)
    assert copy[1].factor.item() == 3.0
    assert copy[0].resets == 0
    assert not torch.equal(copy[0].linear.weight, model[0].linear.weight)


def test_normalise_curve_by_hand():
    """(p_t − p_T)/(p_0 − p_T): a decreasing and an increasing curve both run from 1 to 0; a
    flat curve (p_0 = p_T) is 0 everywhere, not a division by zero."""
    from stablesal.metrics.fidelity import _normalise_curve

    curves = torch.tensor([[0.9, 0.5, 0.1], [0.2, 0.5, 0.8], [0.4, 0.7, 0.4]])
    expected = torch.tensor([[1.0, 0.5, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(_normalise_curve(curves), expected)


def test_localisation_metrics_read_three_dimensional_maps_as_they_are():
    """Maps [B, H, W] are the channel-summed maps themselves (not summed over rows)."""
    from stablesal.metrics import iou_top, pointing_game, relevance_mass

    maps = torch.tensor([[[4.0, 0.0, 0.0], [0.0, 1.0, -2.0]]])
    mask = torch.tensor([[[1, 0, 0], [0, 1, 0]]])
    assert relevance_mass(maps, mask).tolist() == pytest.approx([1.0])   # positive mass 5, all inside
    assert pointing_game(maps, mask).tolist() == [1.0]
    assert iou_top(maps, mask).tolist() == [1.0]                        # top-2 pixels = the mask
    other = torch.tensor([[[0, 1, 1], [1, 0, 1]]])
    assert relevance_mass(maps, other).tolist() == pytest.approx([0.0])


def test_kendall_tau_matrix_goes_on_after_a_pair_with_too_few_methods():
    from stablesal.metrics import kendall_tau_matrix

    scores = {"x": {"a": 0.1, "b": 0.2, "c": 0.3}, "sparse": {"a": 1.0, "b": 2.0}, "y": {"a": 0.3, "b": 0.2, "c": 0.1}}
    rows = kendall_tau_matrix(scores, {"x": True, "sparse": True, "y": True})
    assert [(r["metric_a"], r["metric_b"]) for r in rows] == [("x", "y")] and rows[0]["tau"] == pytest.approx(-1.0)


# --------------------------------------------------------------------------------------
# grouping
# --------------------------------------------------------------------------------------

def test_partition_checks_its_segments():
    from stablesal.grouping import Partition

    with pytest.raises(ValueError, match="segments must be an integer tensor"):
        Partition(torch.zeros(4, 4, dtype=torch.long))          # no batch dimension
    with pytest.raises(ValueError, match="segments must be an integer tensor"):
        Partition(torch.zeros(1, 4, 4))                          # float ids


def test_grouping_keeps_half_precision():
    """Segment means of float16/bfloat16 maps stay in that dtype (the counts are cast to it)."""
    from stablesal.grouping import group_attributions

    segments = torch.tensor([[[0, 0, 1], [0, 1, 1]]])
    values = torch.tensor([[[[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]]])
    for dtype in (torch.float16, torch.bfloat16):
        grouped = group_attributions(values.to(dtype), segments)
        assert grouped.dtype == dtype
        assert grouped.float().tolist() == [[[[2.0, 2.0, 4.0], [2.0, 4.0, 4.0]]]]


def test_grouped_wrapper_passes_its_reduction():
    from stablesal.grouping import Grouped

    class Constant:
        def attribute(self, inputs, **kwargs):
            return inputs

    images = torch.tensor([[[[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]]])
    segments = torch.tensor([[[0, 0, 1], [0, 1, 1]]])
    summed = Grouped(Constant(), reduce="sum").attribute(images, segments=segments)
    assert summed.tolist() == [[[[6.0, 6.0, 12.0], [6.0, 12.0, 12.0]]]]
    assert Grouped(Constant()).attribute(images, segments=segments).tolist() == [[[[2.0, 2.0, 4.0], [2.0, 4.0, 4.0]]]]


def test_stationary_projection_energy_of_one_unbatched_map():
    """A single map [H, W] with its weights [2H, 2W]: a constant map lies in the range of the
    projection, so the predicted kept energy is all of ‖x‖² (docstring: a constant keeps everything)."""
    from stablesal.grouping import lag_weights, stationary_projection_energy

    segments = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3]]])
    weights = lag_weights(segments)[0]
    constant = torch.full((3, 4), 0.5, dtype=torch.float64)
    energy = stationary_projection_energy(constant, weights)
    assert energy.shape == () and energy.item() == pytest.approx(12 * 0.25)
    batched = stationary_projection_energy(constant[None], weights[None])
    assert batched.tolist() == pytest.approx([12 * 0.25])


# --------------------------------------------------------------------------------------
# perturbation calculators
# --------------------------------------------------------------------------------------

def test_single_feature_calculators_check_their_sampler():
    from stablesal.perturbation.calculators import ContextualImportance
    from stablesal.perturbation.samplers import RandomSampler, SingleFeature

    ContextualImportance().check(SingleFeature())
    for sampler in (RandomSampler(0.5), object()):          # a sampler that does not say it is single-feature
        with pytest.raises(ValueError, match="needs single-feature samples"):
            ContextualImportance().check(sampler)


def test_rise_names():
    from stablesal.perturbation.calculators import RiseScore

    assert str(RiseScore()) == "rise" and str(RiseScore("mean")) == "rise(normalise=mean)"


def test_lime_ridge_matches_a_float64_reference_to_rounding():
    """LIME's kernel ridge recomputed with NumPy: rows [Z; 1], cosine distance to the full row
    (k kept of S: k / (√k √S), 0 for the empty row), kernel sqrt(exp(−d²/w²)), weighted ridge
    with an unpenalised intercept. Agreement to 1e-14: rows that keep one feature have norm 1
    exactly and must not be nudged
    (that moves the scores by ~3e-13; rounding differences are ~1e-16)."""
    from stablesal.perturbation.calculators import LimeKernelRidge, Observations

    z = torch.tensor([[1, 0], [0, 1], [0, 0], [1, 0], [0, 1], [1, 0]], dtype=torch.float64)
    y = torch.tensor([0.7, 0.2, 0.05, 0.72, 0.18, 0.69], dtype=torch.float64)
    ours = LimeKernelRidge()(Observations(z, y, 0.9, 0.05)).numpy()
    design = np.vstack([z.numpy(), np.ones((1, 2))])
    outputs = np.append(y.numpy(), 0.9)
    kept = design.sum(1)
    cosine = np.where(kept > 0, kept / (np.sqrt(np.maximum(kept, 1)) * np.sqrt(2)), 0.0)
    kernel = np.sqrt(np.exp(-(1 - cosine) ** 2 / 0.25 ** 2))
    w = kernel / kernel.sum()
    zc, yc = design - w @ design, outputs - w @ outputs
    reference = np.linalg.solve((zc * kernel[:, None]).T @ zc + np.eye(2), (zc * kernel[:, None]).T @ yc)
    assert np.abs(ours - reference).max() < 3e-14


def test_prediction_difference_by_hand():
    """PDA: y_full − mean of the outputs of the samples where the feature is removed; a feature
    never removed scores 0. N ≠ S and unequal removal counts."""
    from stablesal.perturbation.calculators import Observations, PredictionDifference

    z = torch.tensor([[0, 1, 1], [0, 0, 1], [1, 0, 1], [0, 1, 1]], dtype=torch.float64)
    y = torch.tensor([0.4, 0.1, 0.6, 0.7], dtype=torch.float64)
    scores = PredictionDifference()(Observations(z, y, y_full=0.9, y_empty=0.0))
    # feature 0 removed in rows 0, 1, 3: mean 0.4; feature 1 in rows 1, 2: mean 0.35; feature 2 never
    assert scores.tolist() == pytest.approx([0.5, 0.55, 0.0])


def test_ciu_message_is_exact():
    from stablesal.perturbation.calculators import ContextualImportance, Observations

    z = torch.ones(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^CIU needs exactly one single-feature sample per feature$"):
        ContextualImportance()(Observations(z, torch.zeros(2, dtype=torch.float64), 0.9, 0.1))


# --------------------------------------------------------------------------------------
# perturbation samplers
# --------------------------------------------------------------------------------------

def test_random_sampler_probability_bounds():
    from stablesal.perturbation.samplers import RandomSampler

    for p in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(ValueError, match="p must be in"):
            RandomSampler(p)
    assert RandomSampler(0.3).keep_probability == 0.3


def test_keep_decisions_are_strictly_below_the_probability():
    """A feature is kept when its uniform u is strictly below p, so P(keep) = p exactly on
    float32 uniforms (u = p is not kept). The probability is set to one of the uniforms drawn."""
    from stablesal.perturbation.samplers import ProbabilitySampler, RandomSampler, UniqueRandom

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


def test_probability_sampler_draws_one_probability_per_sample():
    """The kept share of 64 features varies across samples like U(0, 1) (sd ≈ 0.29), far more
    than one shared probability would give (binomial sd ≤ 0.07)."""
    from stablesal.perturbation.samplers import ProbabilitySampler

    rows, _ = ProbabilitySampler().draw(300, 64, torch.Generator().manual_seed(0))
    shares = rows.double().mean(1)
    assert 0.24 < shares.std().item() < 0.34


# --------------------------------------------------------------------------------------
# sampling (gradient samplers)
# --------------------------------------------------------------------------------------

def test_sampler_counts_names_and_defaults():
    from stablesal.sampling import BaselineDistribution, GaussianNoise, Identity, Suppression

    for bad in (0, -3, 2.5, "8"):
        with pytest.raises(ValueError, match="n_samples must be a positive integer"):
            GaussianNoise(n_samples=bad)
    assert str(GaussianNoise(8, 0.2)) == "gaussian(n=8,sigma=0.2)"
    assert str(Suppression(4, unit="patch", patch_size=2)) == "suppression(fill=0.0,mode=bernoulli,n=4,patch=2,unit=patch)"
    assert (GaussianNoise().n_samples, GaussianNoise().noise_level) == (50, 0.15)
    assert BaselineDistribution().n_samples == 50
    assert Identity().n_samples == 1 and Identity().weights().tolist() == [1.0]


def test_identity_draws_any_range_of_samples():
    from stablesal.sampling import Identity

    x = torch.arange(6.0).view(1, 2, 3)
    samples, delta = Identity().draw(x, 2, 5, None)
    assert samples.shape == (3, 1, 2, 3) and delta.shape == (3, 1, 2, 3)
    assert torch.equal(samples, x.expand(3, 1, 2, 3)) and torch.equal(delta, samples)
    inputs = torch.stack([x, x + 1])
    batch, batch_delta = Identity().draw_batch(inputs, 2, 5, None)
    assert batch.shape == (2, 3, 1, 2, 3) and torch.equal(batch[1, 2], x + 1) and torch.equal(batch_delta, batch)


def test_suppression_messages():
    from stablesal.sampling import Suppression

    with pytest.raises(ValueError, match="mode must be one of"):
        Suppression(mode="erase")
    with pytest.raises(ValueError, match="unit must be 'pixel', 'patch' or 'segment'"):
        Suppression(unit="row")
    with pytest.raises(ValueError, match=r"keep_rate must be in \[0, 1\]"):
        Suppression(keep_rate=1.5)


def test_suppression_keeps_a_unit_only_strictly_below_the_rate():
    """Fixed rate π: a pixel is kept when its uniform u < π (P = π exactly); a pixel whose u
    equals π is erased. π is set to one of the uniforms the sampler draws."""
    from stablesal.sampling import Suppression

    uniforms = torch.rand((2, 12), generator=torch.Generator().manual_seed(4))
    rate = uniforms[0, 5].item()
    drawn, _ = Suppression(2, mode="fixed", keep_rate=rate).draw(torch.ones(1, 3, 4), 0, 2,
                                                                 torch.Generator().manual_seed(4))
    assert torch.equal(drawn.view(2, 12), (uniforms < rate).float()) and drawn.view(2, 12)[0, 5] == 0


def test_gradient_shap_samples_from_the_generator_stream():
    """x̂ = x' + α (x − x') (+ σε), recomputed from the image's generator in the documented order
    (baseline index, α, then the noise), in the images' dtype, over two consecutive blocks; with
    σ = 0 no noise is drawn, so the second block starts where the first one's α ended."""
    from stablesal.sampling import BaselineDistribution

    x = torch.rand(2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    references = torch.rand(5, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for sigma in (0.0, 0.2):
        sampler = BaselineDistribution(n_samples=6, noise_level=sigma, input_range=(-1.0, 1.0))
        generator, replay = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
        for start, stop in ((0, 4), (4, 6)):
            samples, delta = sampler.draw(x, start, stop, generator, baseline=references)
            count = stop - start
            pick = torch.randint(0, 5, (count,), generator=replay)
            alpha = torch.rand((count, 1, 1, 1), generator=replay, dtype=torch.float64)
            chosen = references[pick]
            expected = chosen + alpha * (x - chosen)
            if sigma > 0:
                expected = expected + 2 * sigma * torch.randn(expected.shape, generator=replay, dtype=torch.float64)
            assert samples.dtype == torch.float64
            assert torch.allclose(samples, expected, rtol=0, atol=1e-12)
            assert torch.allclose(delta, x - chosen, rtol=0, atol=0)


def test_gradient_shap_noise_is_a_fraction_of_the_input_range():
    """σ = noise_level × (high − low): 0.5 of the range (−1, 1) is σ = 1."""
    from stablesal.sampling import BaselineDistribution

    x = torch.zeros(1, 32, 32)
    references = torch.zeros(1, 1, 32, 32)
    noisy, _ = BaselineDistribution(n_samples=16, noise_level=0.5, input_range=(-1.0, 1.0)).draw(
        x, 0, 16, torch.Generator().manual_seed(3), baseline=references)
    assert noisy.std().item() == pytest.approx(1.0, rel=0.05)


def test_gradient_shap_message_is_exact():
    from stablesal.sampling import BaselineDistribution

    with pytest.raises(ValueError, match=r"^GradientSHAP needs baselines=<tensor \[M, C, H, W\]> \(a set of reference images\)$"):
        BaselineDistribution().draw(torch.zeros(1, 2, 2), 0, 1, torch.Generator(), baseline=None)


def test_noise_samplers_draw_in_the_images_dtype():
    """SmoothGrad's Gaussian (and uniform) noise is drawn in the images' dtype: float64 images get
    the generator's float64 normals, recomputed here from the same seed."""
    from stablesal.sampling import GaussianNoise, UniformNoise

    x = torch.rand(2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    samples, _ = GaussianNoise(4, 0.1).draw(x, 0, 4, torch.Generator().manual_seed(2))
    noise = torch.randn((4, 2, 3, 3), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert samples.dtype == torch.float64 and torch.allclose(samples, x + 0.1 * noise, rtol=0, atol=1e-15)
    samples, _ = UniformNoise(4, 0.1).draw(x, 0, 4, torch.Generator().manual_seed(2))
    uniform = torch.rand((4, 2, 3, 3), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert samples.dtype == torch.float64 and torch.allclose(samples, x + 0.1 * (2 * uniform - 1), rtol=0, atol=1e-15)


def test_suppression_keeps_the_images_dtype():
    """x̂ = m ⊙ x + (1 − m) ⊙ fill in the images' dtype: half-precision images stay half, float64
    images get the fill in float64 (continuous mode: m ~ U(0, 1) per pixel)."""
    from stablesal.sampling import Suppression

    x = torch.rand(1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    drawn, _ = Suppression(3, mode="continuous", fill=0.3).draw(x, 0, 3, torch.Generator().manual_seed(6))
    mask = torch.rand((3, 16), generator=torch.Generator().manual_seed(6)).double().view(3, 1, 4, 4)
    assert drawn.dtype == torch.float64
    assert torch.allclose(drawn, mask * x + (1 - mask) * 0.3, rtol=0, atol=1e-15)
    half, _ = Suppression(3).draw(x.half(), 0, 3, torch.Generator().manual_seed(6))
    assert half.dtype == torch.float16


def test_kernel_shap_and_lime_ols_match_a_float64_least_squares_reference():
    """Both fits recomputed with NumPy's least squares on [Z, 1] in float64: LIME-OLS adds the
    full row (output y_full), KernelSHAP the full and empty rows with weight 10⁶. y_full and
    y_empty carry more digits than float32 holds (rounding them to float32 moves the scores by
    ~1e-8), and must keep them; the tolerances leave room for rounding (the 10⁶ weights make
    KernelSHAP's system stiff: reordering its float64 arithmetic moves it by up to ~2e-10)."""
    from stablesal.perturbation.calculators import KernelShap, LimeOLS, Observations
    from stablesal.perturbation.samplers import LARGE_WEIGHT

    generator = torch.Generator().manual_seed(0)
    z = (torch.rand(12, 4, generator=generator) < 0.5).double()
    y = torch.rand(12, generator=generator, dtype=torch.float64)
    y_full, y_empty = 0.90000000596, 0.299999997  # each about half a float32 spacing from a float32 value
    sizes = z.sum(1).numpy()
    kernel = np.array([3 / (math.comb(4, int(k)) * k * (4 - k)) if 0 < k < 4 else LARGE_WEIGHT for k in sizes])

    def fit(rows, outputs, weights):
        design = np.hstack([rows, np.ones((len(rows), 1))]) * np.sqrt(weights)[:, None]
        return np.linalg.lstsq(design, outputs * np.sqrt(weights), rcond=None)[0][:4]

    shap = KernelShap()(Observations(z, y, y_full, y_empty)).numpy()
    expected = fit(np.vstack([z.numpy(), np.ones((1, 4)), np.zeros((1, 4))]), np.append(y.numpy(), [y_full, y_empty]),
                   np.append(kernel, [LARGE_WEIGHT, LARGE_WEIGHT]))
    assert np.abs(shap - expected).max() < 2e-9
    ols = LimeOLS()(Observations(z, y, y_full, y_empty)).numpy()
    expected = fit(np.vstack([z.numpy(), np.ones((1, 4))]), np.append(y.numpy(), y_full), np.ones(13))
    assert np.abs(ols - expected).max() < 1e-12


def test_a_registered_pairwise_metric_joins_the_stability_study_and_says_its_direction():
    from stablesal.metrics import METRICS, MetricInfo, metric_info, pairwise_similarity, register_metric

    def metric(a, b):
        return (a - b).abs().flatten(1).mean(1)

    assert register_metric("mean_abs_difference_for_test", False, 0.0, 1.0, "a metric", "pairwise")(metric) is metric
    try:
        assert metric.info == MetricInfo("mean_abs_difference_for_test", False, 0.0, 1.0, "a metric", "pairwise")
        assert metric_info("mean_abs_difference_for_test").arrow == "↓" and metric_info("ssim").arrow == "↑"
        a, b = torch.zeros(2, 16, 16), torch.ones(2, 16, 16)
        assert torch.equal(pairwise_similarity(a, b)["mean_abs_difference_for_test"], torch.ones(2))
    finally:
        METRICS.unregister("mean_abs_difference_for_test")


def test_iou_top_by_hand():
    """IoU of the mask with the map's top-|mask| pixels, per image: partial overlap, a
    one-pixel mask, and ties broken by position (a constant map's top pixels are its first)."""
    from stablesal.metrics import iou_top

    maps = torch.tensor([[[5.0, 4.0, 3.0], [2.0, 1.0, 0.0]],     # top-2 = pixels 0, 1
                         [[0.0, 0.0, 0.0], [0.0, 9.0, 0.0]]])    # top-1 = pixel 4
    masks = torch.tensor([[[0, 1, 1], [0, 0, 0]],                # {1, 2}: IoU |{1}| / |{0, 1, 2}| = 1/3
                          [[0, 0, 0], [0, 1, 0]]])               # {4}: IoU 1
    assert iou_top(maps, masks).tolist() == pytest.approx([1 / 3, 1.0])
    flat = torch.zeros(1, 5, 5)
    first = torch.zeros(1, 5, 5, dtype=torch.long)
    first[0, 0, :3] = 1
    last = torch.zeros(1, 5, 5, dtype=torch.long)
    last[0, 4, 2:] = 1
    assert iou_top(flat, first).tolist() == [1.0] and iou_top(flat, last).tolist() == [0.0]


def test_uniform_noise_half_width_and_ranges():
    """ε ~ U(−a, a) with a = noise_level × (high − low): 0.25 of the range (−1, 1) is a = 0.5;
    samples start..stop−1 are stop − start samples."""
    from stablesal.sampling import UniformNoise

    x = torch.zeros(1, 8, 8)
    samples, _ = UniformNoise(8, 0.25, input_range=(-1.0, 1.0)).draw(x, 2, 6, torch.Generator().manual_seed(1))
    uniform = torch.rand((4, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    assert samples.shape == (4, 1, 8, 8)
    assert torch.allclose(samples, 0.5 * (2 * uniform - 1), rtol=0, atol=1e-7)


def test_suppression_names_its_fixed_rate():
    from stablesal.sampling import Suppression

    assert str(Suppression(4, mode="fixed", keep_rate=0.3)) == "suppression(fill=0.0,keep=0.3,mode=fixed,n=4,unit=pixel)"
    assert "keep" not in str(Suppression(4))


def test_srg_defaults_by_hand():
    """SRG with its defaults (10 deletion points, the image's mean colour as fill, curves not
    normalised), recomputed with NumPy: a nonlinear model, distinct map values."""
    from stablesal.metrics import srg

    generator = torch.Generator().manual_seed(4)
    images = torch.rand(2, 3, 4, 5, generator=generator)
    maps = torch.rand(2, 1, 4, 5, generator=generator)
    weights = torch.randn(3, 60, generator=generator)
    model = nn.Sequential(nn.Flatten(), nn.Tanh(), nn.Linear(60, 3, bias=False)).eval()
    model[2].weight.data = weights
    target = torch.tensor([0, 2])
    scores = srg(model, images, maps, target)

    def curve(image, map_, label, most_first, steps=10, fill=None):
        pixels = image.numpy().reshape(3, -1)
        order = np.argsort(-map_.numpy().ravel() if most_first else map_.numpy().ravel(), kind="stable")
        mean = pixels.mean(1, keepdims=True) if fill is None else np.full((3, 1), fill, np.float32)
        values = []
        for fraction in np.linspace(0, 1, steps):
            current = pixels.copy()
            current[:, order[:int(round(fraction * 20))]] = mean
            logits = weights.double().numpy() @ np.tanh(current.ravel())
            values.append(np.exp(logits[label]) / np.exp(logits).sum())
        return np.mean(values)

    for i in range(2):
        lif = curve(images[i], maps[i], int(target[i]), False)
        mif = curve(images[i], maps[i], int(target[i]), True)
        assert float(scores["lif"][i]) == pytest.approx(lif, abs=1e-5)
        assert float(scores["mif"][i]) == pytest.approx(mif, abs=1e-5)
        assert float(scores["srg"][i]) == pytest.approx(lif - mif, abs=1e-5)
    # other steps and a constant fill reach both curves
    other = srg(model, images, maps, target, steps=4, fill=0.5)
    for i in range(2):
        lif = curve(images[i], maps[i], int(target[i]), False, steps=4, fill=0.5)
        mif = curve(images[i], maps[i], int(target[i]), True, steps=4, fill=0.5)
        assert float(other["lif"][i]) == pytest.approx(lif, abs=1e-5)
        assert float(other["mif"][i]) == pytest.approx(mif, abs=1e-5)


def test_register_metric_direct_form_default_kind_and_first_info_kept():
    from stablesal.metrics import METRICS, metric_info, register_metric, srg

    assert METRICS["srg"] is srg and metric_info("srg").kind == "fidelity"  # registered with function=

    def distance(a, b):
        return (a - b).abs().flatten(1).sum(1)

    try:
        assert register_metric("distance_for_test", False, 0.0, None, "d", function=distance) is distance
        assert METRICS["distance_for_test"] is distance and distance.info.kind == "fidelity"
        register_metric("distance_again_for_test", True, 0.0, None, "d", "pairwise", function=distance)
        assert distance.info.name == "distance_for_test"  # the function keeps its first registration's info
        assert metric_info("distance_again_for_test").name == "distance_again_for_test"
    finally:
        for name in ("distance_for_test", "distance_again_for_test"):
            if name in METRICS:
                METRICS.unregister(name)


def test_pairwise_similarity_takes_a_subset_and_names_an_unknown_metric():
    from stablesal.metrics import pairwise_similarity

    a, b = torch.rand(2, 16, 16), torch.rand(2, 16, 16)
    assert set(pairwise_similarity(a, b, ["spearman"])) == {"spearman"}
    with pytest.raises(ValueError, match="^metrics: unknown metric 'pearsn'"):
        pairwise_similarity(a, b, ["pearsn"])


def test_removal_engine_keeps_to_its_rows_per_call():
    """Every (image, mask) pair is evaluated once, never more than ``rows`` pairs per model call."""
    from stablesal.metrics import removed_probabilities

    sizes = []

    class Counting(torch.nn.Module):
        def forward(self, x):
            sizes.append(len(x))
            return torch.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], 1)

    images = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    fill = torch.zeros_like(images)
    masks = torch.rand(7, 1, 4, 4, generator=torch.Generator().manual_seed(1)) < 0.5

    def removed(block, chosen):
        return masks[chosen].unsqueeze(0).expand(images[block].shape[0], -1, -1, -1, -1)

    for rows in (1, 3, 5, 12, 40):
        sizes.clear()
        out = removed_probabilities(Counting(), images, fill, torch.zeros(5, dtype=torch.long), 7, removed, rows)
        assert max(sizes) <= rows and sum(sizes) == 5 * 7, (rows, sizes)
        expected = torch.softmax(torch.stack([torch.where(masks[m], 0.0, images).mean((1, 2, 3)) for m in range(7)],
                                             1).unsqueeze(-1) * torch.tensor([1.0, -1.0]), -1)[..., 0]
        assert torch.allclose(out, expected, atol=1e-6)


def test_suppression_names_a_bad_fill():
    from stablesal.sampling import Suppression

    with pytest.raises(ValueError, match="^fill: unknown fill 'nosie'"):
        Suppression(4, fill="nosie")
