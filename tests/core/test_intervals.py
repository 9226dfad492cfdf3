"""Tests of :mod:`stablesal.core.intervals`.

Intervals that respect the design: known answers and a coverage simulation."""

import math

import numpy as np
import pytest
import torch

from stablesal.core.intervals import (
    Weights, bootstrap_interval, design_interval, from_fisher_z, image_mean, model_mean, pair_mean,
    rows_to_pair_array, to_fisher_z,
)
from stablesal.metrics import mean_ci, spearman


def test_weighted_means_by_hand():
    values = np.full((2, 3, 3), np.nan)
    values[0, 0, 1], values[0, 0, 2], values[0, 1, 2] = 1.0, 2.0, 3.0
    values[1, 0, 1], values[1, 0, 2], values[1, 1, 2] = 5.0, 6.0, np.nan  # a missing pair carries no weight
    weights = Weights.ones(2, {"main": 3})
    assert pair_mean(values, weights, "main") == pytest.approx((1 + 2 + 3 + 5 + 6) / 5)
    # model 2 deleted: only pair (0, 1) is left
    assert pair_mean(values, weights.without_model("main", 2), "main") == pytest.approx((1 + 5) / 2)
    # image 1 deleted
    assert pair_mean(values, weights.without_image(1), "main") == pytest.approx(2.0)
    per_model = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert model_mean(per_model, weights.without_model("main", 0), "main") == pytest.approx((2 + 3 + 5 + 6) / 4)
    assert image_mean(np.array([1.0, 3.0]), weights) == 2.0


def test_jackknife_of_a_plain_mean_is_the_t_interval():
    """With one factor (images) the delete-one jackknife of a mean is exactly s²/n, and ν = n − 1:
    the interval must equal SciPy's t interval."""
    from scipy import stats

    values = np.random.default_rng(3).normal(size=17)
    interval = design_interval(lambda w: image_mean(values, w), 17, {})
    low, high = stats.t.interval(0.95, 16, loc=values.mean(), scale=stats.sem(values))
    assert interval.df == pytest.approx(16)
    assert (interval.low, interval.high) == pytest.approx((low, high))
    assert mean_ci(values)[1:] == pytest.approx((low, high))


def test_rows_to_pair_array():
    rows = [{"image": 1, "model_a": 0, "model_b": 2, "x": 0.5}]
    array = rows_to_pair_array(rows, "x", 2, 3)
    assert array[1, 0, 2] == 0.5 and np.isnan(array).sum() == 17


def _simulated_study(generator, n_images, n_models, pixels=256):
    """Maps with a known image effect (signal strength s_i) and model effect (noise scale τ_a):
    map_ia = s_i z_i + τ_a ε_ia, z and ε i.i.d. normal over pixels."""
    strength = np.exp(generator.normal(0.0, 0.6, n_images))
    noise = np.exp(generator.normal(0.0, 0.5, n_models))
    signal = generator.normal(size=(n_images, pixels))
    maps = strength[:, None, None] * signal[:, None, :] + noise[None, :, None] * generator.normal(
        size=(n_images, n_models, pixels))
    similarity = np.full((n_images, n_models, n_models), np.nan)
    for a in range(n_models):
        for b in range(a + 1, n_models):
            similarity[:, a, b] = spearman(torch.from_numpy(maps[:, a]), torch.from_numpy(maps[:, b])).numpy()
    return similarity


def _true_mean_spearman(pixels=256, draws=2_000_000):
    """E over images and model pairs of the expected sample Spearman ρ of two such maps:
    Pearson ρ = s²/√((s² + τ_a²)(s² + τ_b²)) and Moran's (1948) exact mean of Spearman's
    coefficient for a bivariate normal sample of size d: 6/(π(d+1))·(asin ρ + (d − 2)·asin(ρ/2))."""
    generator = np.random.default_rng(12345)
    s2 = np.exp(generator.normal(0.0, 0.6, draws)) ** 2
    ta2, tb2 = np.exp(generator.normal(0.0, 0.5, draws)) ** 2, np.exp(generator.normal(0.0, 0.5, draws)) ** 2
    rho = s2 / np.sqrt((s2 + ta2) * (s2 + tb2))
    d = pixels
    return float(np.mean(6 / (math.pi * (d + 1)) * (np.arcsin(rho) + (d - 2) * np.arcsin(rho / 2))))


def test_design_interval_covers_in_simulated_studies():
    """Over 200 simulated studies of the default design (48 images, 4 models), the nominal 95 %
    design interval of the mean pairwise Spearman covers the true value 92-98 % of the time; the
    naive t interval over image × pair rows (which ignores that pairs share models) does not."""
    truth = _true_mean_spearman()
    generator = np.random.default_rng(0)
    n_images, n_models, studies = 48, 4, 200
    covered = naive_covered = fisher_covered = 0
    for _ in range(studies):
        similarity = _simulated_study(generator, n_images, n_models)
        interval = design_interval(lambda w: pair_mean(similarity, w, "main"), n_images, {"main": n_models})
        covered += interval.low <= truth <= interval.high
        bounded = design_interval(lambda w: pair_mean(similarity, w, "main"), n_images, {"main": n_models},
                                  bounds=(-1.0, 1.0))
        fisher_covered += bounded.low <= truth <= bounded.high
        a, b = np.triu_indices(n_models, 1)
        _, low, high = mean_ci(similarity[:, a, b].ravel())
        naive_covered += low <= truth <= high
    assert 0.92 <= covered / studies <= 0.98, covered / studies
    assert 0.92 <= fisher_covered / studies <= 0.98, fisher_covered / studies  # on Fisher's z (the report's)
    assert naive_covered / studies < 0.85, naive_covered / studies


def test_fisher_z_interval_by_hand():
    """With one factor, ``bounds=(lo, hi)``: the jackknife of z = atanh((2v − lo − hi)/(hi − lo))
    of the delete-one means, a t interval on z with n − 1 degrees of freedom, ends mapped back."""
    from scipy import stats

    values = np.array([0.9, 0.95, 0.2, 0.99, 0.97, 0.6, 0.98])  # correlations near their upper end
    n = len(values)
    for low, high in ((-1.0, 1.0), (0.0, 1.0)):
        z = lambda v: np.arctanh((2 * v - low - high) / (high - low))  # noqa: E731
        back = lambda t: low + (high - low) * (np.tanh(t) + 1) / 2  # noqa: E731
        deleted = np.array([np.delete(values, i).mean() for i in range(n)])
        se = math.sqrt((n - 1) / n * np.square(z(deleted) - z(deleted).mean()).sum())
        half = stats.t.ppf(0.975, n - 1) * se
        interval = design_interval(lambda w: image_mean(values, w), n, {}, bounds=(low, high))
        assert interval.estimate == pytest.approx(values.mean()) and interval.se == pytest.approx(se)
        assert (interval.low, interval.high) == pytest.approx((back(z(values.mean()) - half),
                                                               back(z(values.mean()) + half)))
        assert low < interval.low < interval.estimate < interval.high < high
        assert interval.high - interval.estimate < interval.estimate - interval.low  # squeezed towards the end
    raw = design_interval(lambda w: image_mean(values, w), n, {})
    assert raw.high > 1  # what the transform prevents


def test_bounded_intervals_stay_in_range_with_three_models():
    """Issue #31: with three models a mean Spearman's raw interval left [−1, 1] (0.09 [−1.08, 1.26])."""
    generator = np.random.default_rng(2)
    values = np.full((12, 3, 3), np.nan)
    model_effect = np.array([[0, 0.9, -0.8], [0, 0, -0.7], [0, 0, 0]])
    for a, b in ((0, 1), (0, 2), (1, 2)):
        values[:, a, b] = np.clip(model_effect[a, b] + 0.1 * generator.normal(size=12), -1, 1)
    raw = design_interval(lambda w: pair_mean(values, w, "main"), 12, {"main": 3})
    bounded = design_interval(lambda w: pair_mean(values, w, "main"), 12, {"main": 3}, bounds=(-1.0, 1.0))
    assert raw.low < -1 and raw.high > 1
    assert -1 < bounded.low < bounded.estimate == raw.estimate < bounded.high < 1
    difference = design_interval(lambda w: pair_mean(values, w, "main") - 1.5, 12, {"main": 3}, bounds=(-2.0, 2.0))
    assert -2 <= difference.low < difference.estimate < difference.high <= 2  # reaching the ends: nothing known


def test_next_to_a_bound_the_interval_is_clipped_not_stretched():
    """One replicate on the bound (47 images with a top-k overlap of exactly 1, one with 0.9) would
    put z near infinity and the Fisher interval over the whole range; the raw interval, clipped to
    the range, is used instead and says so."""
    values = np.array([1.0] * 47 + [0.9])
    interval = design_interval(lambda w: image_mean(values, w), 48, {}, bounds=(0.0, 1.0))
    raw = design_interval(lambda w: image_mean(values, w), 48, {})
    assert interval.method == "jackknife-clipped" and raw.method == "jackknife"
    assert interval.low == pytest.approx(raw.low) and interval.high == 1.0 < raw.high
    assert 0.99 < interval.low < interval.estimate < 1.0
    inside = design_interval(lambda w: image_mean(values - 0.05, w), 48, {}, bounds=(0.0, 1.0))
    assert inside.method == "jackknife-z" and 0.9 < inside.low < inside.high < 0.99  # 1 % of the range inside


def test_fisher_z_edges():
    assert from_fisher_z(to_fisher_z(0.3, (-1, 1)), (-1, 1)) == pytest.approx(0.3)
    assert from_fisher_z(to_fisher_z(0.25, (0, 1)), (0, 1)) == pytest.approx(0.25)
    assert to_fisher_z(0.5, (0, 1)) == 0 and to_fisher_z(0.0, (-2, 2)) == 0
    assert math.isfinite(to_fisher_z(1.0, (-1, 1))) and to_fisher_z(1.0, (-1, 1)) > 10  # a bound: just inside
    assert to_fisher_z(-1.0, (-1, 1)) == -to_fisher_z(1.0, (-1, 1))
    constant = design_interval(lambda w: 1.0, 5, {"main": 3}, bounds=(-1.0, 1.0))  # a deterministic ceiling
    assert (constant.low, constant.estimate, constant.high) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"bounds must be \(low, high\) with low < high, got \(1.0, -1.0\)"):
        design_interval(lambda w: 0.0, 5, {}, bounds=(1.0, -1.0))


def test_pigeonhole_bootstrap_is_too_narrow_with_four_models():
    """The reason the report uses the jackknife: the percentile pigeonhole bootstrap undercovers
    with K = 4 (measured on 100 simulated studies; a correct bootstrap would cover ~95 %)."""
    truth = _true_mean_spearman()
    generator = np.random.default_rng(1)
    covered = 0
    for study in range(100):
        similarity = _simulated_study(generator, 48, 4)
        interval = bootstrap_interval(lambda w: pair_mean(similarity, w, "main"), 48, {"main": 4}, n_boot=200,
                                      seed=study)
        covered += interval.low <= truth <= interval.high
    assert covered / 100 < 0.9


def test_two_factor_jackknife_by_hand():
    """V, its parts, Banerjee's half-width √(t²_{n−1} V_images + t²_{K−1} V_models) with its
    equivalent ν (the default) and Satterthwaite's ν (``quantile="satterthwaite"``) for a pairwise
    mean, recomputed with explicit deletions."""
    from scipy import stats

    generator = np.random.default_rng(5)
    n, k = 6, 4
    values = generator.normal(size=(n, k, k))
    a, b = np.triu_indices(k, 1)

    def mean(images, models):
        keep = [p for p in range(len(a)) if a[p] in models and b[p] in models]
        return values[np.ix_(images, a[keep], b[keep])].diagonal(axis1=1, axis2=2).mean()

    full = mean(list(range(n)), list(range(k)))
    by_image = np.array([mean([i for i in range(n) if i != j], list(range(k))) for j in range(n)])
    by_model = np.array([mean(list(range(n)), [m for m in range(k) if m != j]) for j in range(k)])
    v_images = (n - 1) / n * np.square(by_image - by_image.mean()).sum()
    v_models = (k - 1) / k * np.square(by_model - by_model.mean()).sum()
    half = math.sqrt(stats.t.ppf(0.975, n - 1) ** 2 * v_images + stats.t.ppf(0.975, k - 1) ** 2 * v_models)
    interval = design_interval(lambda w: pair_mean(values, w, "main"), n, {"main": k})
    assert interval.estimate == pytest.approx(full)
    assert interval.se == pytest.approx(math.sqrt(v_images + v_models))
    assert (interval.low, interval.high) == pytest.approx((full - half, full + half))
    assert k - 1 < interval.df < n - 1
    assert stats.t.ppf(0.975, interval.df) * interval.se == pytest.approx(half)  # the equivalent ν
    df = (v_images + v_models) ** 2 / (v_images ** 2 / (n - 1) + v_models ** 2 / (k - 1))
    satterthwaite = design_interval(lambda w: pair_mean(values, w, "main"), n, {"main": k}, quantile="satterthwaite")
    assert satterthwaite.estimate == pytest.approx(full)
    assert satterthwaite.se == pytest.approx(math.sqrt(v_images + v_models))
    assert satterthwaite.df == pytest.approx(df)
    half = stats.t.ppf(0.975, df) * math.sqrt(v_images + v_models)
    assert (satterthwaite.low, satterthwaite.high) == pytest.approx((full - half, full + half))
    conditional = design_interval(lambda w: pair_mean(values, w, "main"), n, {"main": k}, conditional=True)
    assert conditional.se == pytest.approx(math.sqrt(v_images)) and conditional.df == pytest.approx(n - 1)


def test_design_interval_covers_when_images_dominate():
    """The same check with little model variation and much image variation: an interval that left
    out the image factor would fail here (the main coverage test is dominated by models)."""
    def study(generator):
        strength = np.exp(generator.normal(0.0, 1.2, 48))
        noise = np.exp(generator.normal(0.0, 0.05, 4))
        signal = generator.normal(size=(48, 256))
        maps = strength[:, None, None] * signal[:, None, :] + noise[None, :, None] * generator.normal(size=(48, 4, 256))
        similarity = np.full((48, 4, 4), np.nan)
        for a in range(4):
            for b in range(a + 1, 4):
                similarity[:, a, b] = spearman(torch.from_numpy(maps[:, a]), torch.from_numpy(maps[:, b])).numpy()
        return similarity

    generator = np.random.default_rng(12345)
    s2 = np.exp(generator.normal(0.0, 1.2, 2_000_000)) ** 2
    ta2, tb2 = np.exp(generator.normal(0.0, 0.05, (2, 2_000_000))) ** 2
    rho = s2 / np.sqrt((s2 + ta2) * (s2 + tb2))
    truth = float(np.mean(6 / (math.pi * 257) * (np.arcsin(rho) + 254 * np.arcsin(rho / 2))))
    generator = np.random.default_rng(2)
    covered = models_only = 0
    for _ in range(200):
        similarity = study(generator)
        interval = design_interval(lambda w: pair_mean(similarity, w, "main"), 48, {"main": 4})
        covered += interval.low <= truth <= interval.high
        # the model factor alone (images held fixed): far too narrow here
        weights = Weights.ones(48, {"main": 4})
        replicates = [pair_mean(similarity, weights.without_model("main", m), "main") for m in range(4)]
        half = 3.18 * math.sqrt(0.75 * np.square(np.array(replicates) - np.mean(replicates)).sum())
        models_only += abs(pair_mean(similarity, weights, "main") - truth) <= half
    assert 0.92 <= covered / 200 <= 0.98, covered / 200
    assert models_only / 200 < 0.8, models_only / 200


def test_design_interval_edge_cases():
    from scipy import stats

    # one image and one pair: the weighted mean is the value itself
    single = np.full((1, 2, 2), np.nan)
    single[0, 0, 1] = 0.25
    assert pair_mean(single, Weights.ones(1, {"main": 2}), "main") == 0.25
    # two images, no model sets: the t interval with 1 degree of freedom
    values = np.array([0.2, 0.6])
    interval = design_interval(lambda w: image_mean(values, w), 2, {}, confidence=0.9)
    low, high = stats.t.interval(0.9, 1, loc=0.4, scale=stats.sem(values))
    assert (interval.low, interval.high) == pytest.approx((low, high)) and interval.confidence == 0.9
    # no spread at all: a zero-width interval with n − 1 degrees of freedom
    flat = design_interval(lambda w: image_mean(np.ones(5), w), 5, {})
    assert (flat.low, flat.high, flat.se, flat.df) == (1.0, 1.0, 0.0, 4.0)
    # two models: deleting one leaves no pair, so the interval is not estimable
    pairs = np.random.default_rng(0).random((4, 2, 2))
    assert math.isnan(design_interval(lambda w: pair_mean(pairs, w, "main"), 4, {"main": 2}).low)
    for confidence in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="confidence must be in"):
            design_interval(lambda w: 0.0, 4, {}, confidence=confidence)
    with pytest.raises(ValueError, match="at least 2 images"):
        design_interval(lambda w: 0.0, 1, {})


def test_bootstrap_interval_of_a_mean_is_close_to_the_t_interval():
    """With images only, the percentile bootstrap of a mean approaches the normal interval:
    its standard error is s·√((n − 1)/n)/√n and its ends the 2.5 % and 97.5 % quantiles."""
    values = np.random.default_rng(4).normal(size=60)
    interval = bootstrap_interval(lambda w: image_mean(values, w), 60, {}, n_boot=4000, seed=1)
    se = values.std(ddof=0) / math.sqrt(60)
    assert interval.se == pytest.approx(se, rel=0.06)
    assert interval.low == pytest.approx(values.mean() - 1.96 * se, abs=0.25 * se)
    assert interval.high == pytest.approx(values.mean() + 1.96 * se, abs=0.25 * se)
    assert interval.estimate == pytest.approx(values.mean()) and interval.method == "bootstrap"
    again = bootstrap_interval(lambda w: image_mean(values, w), 60, {}, n_boot=4000, seed=1)
    assert (again.low, again.high, again.se) == (interval.low, interval.high, interval.se)  # seeded
    # with a model set the models are resampled too: a pure model effect widens the interval
    effects = np.random.default_rng(5).normal(size=4)
    pairs = np.broadcast_to(effects[None, :, None] + effects[None, None, :], (10, 4, 4)).copy()
    spread = bootstrap_interval(lambda w: pair_mean(pairs, w, "main"), 10, {"main": 4}, n_boot=500, seed=2)
    assert spread.high - spread.low > 0.1
    nothing = bootstrap_interval(lambda w: float("nan"), 10, {}, n_boot=20)
    assert math.isnan(nothing.low) and math.isnan(nothing.high)


def test_interval_note_records_exactly_what_it_is_given():
    """The note results.json carries for a table: every field as given, the kind's description
    looked up, 0.95 by default, and an unknown kind refused by name."""
    from stablesal.core.intervals import CONFIDENCE, INTERVAL_KINDS, interval_note

    assert CONFIDENCE == 0.95
    note = interval_note("wilson", sampled=("test images",), fixed=("model 0",), columns="x_ci95", level=0.9, n_boot=7)
    assert note == {"kind": "wilson", "method": INTERVAL_KINDS["wilson"], "level": 0.9, "sampled": ["test images"],
                    "fixed": ["model 0"], "columns": "x_ci95", "n_boot": 7}
    default = interval_note("design-jackknife", sampled=["test images", "models"])
    assert default["level"] == 0.95 and default["fixed"] == [] and default["columns"] == "<name>_ci_low / <name>_ci_high"
    with pytest.raises(ValueError, match=r"kind must be one of \['bias-corrected-bootstrap', 'design-jackknife', 'model-percentile-bootstrap', "
                                         r"'percentile-bootstrap', 't-over-units', 'wilson'\], got 'bca'"):
        interval_note("bca", sampled=["test images"])


# ------------------------------ known answers: each formula against an independent computation
# Known-answer tests: each formula against an independent computation (SciPy, scikit-learn,
# autograd written out, or a value derived by hand), so that a wrong constant or operator fails.


def test_design_interval_not_estimable_keeps_its_fields():
    from stablesal.core.intervals import Weights, design_interval, pair_mean

    pairs = np.random.default_rng(0).random((4, 2, 2))
    interval = design_interval(lambda w: pair_mean(pairs, w, "main"), 4, {"main": 2}, confidence=0.8)
    assert interval.estimate == pytest.approx(pair_mean(pairs, Weights.ones(4, {"main": 2}), "main"))
    assert all(math.isnan(v) for v in (interval.low, interval.high, interval.se, interval.df))
    assert interval.confidence == 0.8
    # an undefined estimate gets no interval even when every deletion is defined
    undefined = design_interval(lambda w: float("nan") if w.images.all() else 1.0, 4, {})
    assert math.isnan(undefined.se) and math.isnan(undefined.low)


def test_an_interval_note_names_a_known_kind():
    from stablesal.core.intervals import CONFIDENCE, interval_note

    note = interval_note("t-over-units", sampled=["test images"])
    assert note["level"] == CONFIDENCE and note["fixed"] == []
    with pytest.raises(ValueError, match="kind must be one of"):
        interval_note("bootstrap-t", sampled=["models"])


# ------------------------------ tests the mutation run asked for (marked mutation)
# Tests written against the survivors of `make mutation` (see mutation/*.md): each checks
# a known answer or a property computed independently of the code under test (a value derived by
# hand, NumPy or SciPy), so that a changed constant, operator or argument fails. Every test is fast.


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


@pytest.mark.mutation
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


@pytest.mark.mutation
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


@pytest.mark.mutation
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


@pytest.mark.mutation
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


@pytest.mark.mutation
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


@pytest.mark.mutation
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


@pytest.mark.mutation
def test_rows_to_model_array_fills_missing_entries_with_nan():
    from stablesal.core.intervals import rows_to_model_array

    rows = [{"image": 0, "model": 1, "x": 0.5}, {"image": 1, "model": 0, "x": None}]
    array = rows_to_model_array(rows, "x", 2, 3)
    assert array.dtype == np.float64
    assert array[0, 1] == 0.5 and np.isnan(array).sum() == 5


def test_the_coverage_table_the_report_states_is_the_committed_simulation():
    """COVERAGE_BY_K (what the page says about its intervals) is experiments/results/coverage.json's
    default interval, cell by cell, and the note names exactly the scenarios below 90 %."""
    import json
    from pathlib import Path

    from stablesal.core.intervals import COVERAGE_BY_K, coverage_note

    cells = json.loads((Path(__file__).parents[2] / "experiments/results/coverage.json").read_text())["cells"]
    table = {}
    for cell in cells:
        table.setdefault(cell["K"], {})[cell["scenario"]] = round(cell["intervals"]["banerjee"]["coverage"], 3)
    assert table == COVERAGE_BY_K
    assert "0.84 when bad seeds" in coverage_note(4) and "bad seeds" not in coverage_note(16)
    assert "simulated at K = 8" in coverage_note(10)


def test_bias_corrected_quantiles_move_with_the_replicates_bias():
    """Replicates N(θ + b, s²) of an estimate θ: z0 = −b/s, so the bias-corrected interval is
    θ − b ± z·s (derived by hand from Efron's percentiles Φ(2 z0 ± z)); with b = 0 it is the
    percentile interval. The plain percentile interval, θ + b ± z·s, would leave θ below it."""
    from scipy import stats as st

    from stablesal.core.intervals import bias_corrected_quantiles

    z = st.norm.ppf(0.975)
    replicates = st.norm.ppf((np.arange(200_000) + 0.5) / 200_000)  # a noiseless N(0, 1) sample
    for estimate, bias, spread in ((0.3, 0.0, 0.1), (0.3, 0.05, 0.1), (1.0, -0.2, 0.3)):
        low, high = bias_corrected_quantiles(estimate + bias + spread * replicates, estimate)
        assert low == pytest.approx(estimate - bias - z * spread, abs=2e-3)
        assert high == pytest.approx(estimate - bias + z * spread, abs=2e-3)
    lows, highs = bias_corrected_quantiles(np.stack([replicates, 2 + replicates], 1), np.array([0.0, 2.5]))
    assert lows.shape == (2,) and lows[0] == pytest.approx(-z, abs=2e-3) and highs[1] == pytest.approx(3.0 + z, abs=2e-3)


def _bias_corrected_by_hand(values, estimate, confidence=0.95):
    """One cell of Efron's bias-corrected percentile interval, written out with the standard library's
    NormalDist and a sorted list (linear interpolation between order statistics, NumPy's default)."""
    from statistics import NormalDist

    kept = sorted(v for v in values if v == v)
    b = len(kept)
    below = sum(1 for v in kept if v < estimate and not math.isclose(v, estimate, rel_tol=1e-9, abs_tol=1e-12))
    below += 0.5 * sum(1 for v in kept if math.isclose(v, estimate, rel_tol=1e-9, abs_tol=1e-12))
    share = min(max(below / b, 0.5 / b), 1 - 0.5 / b)
    normal = NormalDist()
    z0, z = normal.inv_cdf(share), normal.inv_cdf(0.5 + confidence / 2)

    def quantile(q):
        position = q * (b - 1)
        lower = math.floor(position)
        upper = min(lower + 1, b - 1)
        return kept[lower] + (position - lower) * (kept[upper] - kept[lower])

    return quantile(normal.cdf(2 * z0 - z)), quantile(normal.cdf(2 * z0 + z))


@pytest.mark.mutation
def test_bias_corrected_quantiles_by_hand_at_the_edges_ties_and_missing_cells():
    """Against a by-hand computation: every replicate above the estimate (the share is held at
    1/(2B)), every one below (1 − 1/(2B)), ties counted half, NaN replicates left out, a cell with
    no finite replicate NaN; a [B, 2, 2] array keeps its cells apart."""
    from stablesal.core.intervals import bias_corrected_quantiles

    generator = np.random.default_rng(5)
    base = generator.normal(size=40)
    cells = {
        "above": (1.0 + np.abs(base), 0.0),
        "below": (-1.0 - np.abs(base), 0.0),
        "ties": (np.concatenate([np.zeros(10), base[:30]]), 0.0),
        "near ties": (np.concatenate([np.full(10, 1e-13), base[:30]]), 0.0),
        "missing": (np.concatenate([np.full(8, np.nan), base[:32]]), 0.1),
        "mixed": (base, 0.3),
        "relatively close": (np.concatenate([np.full(10, 1.0 + 1e-7), 1.0 + base[:30]]), 1.0),  # not ties: > 1e-9
        "absolutely close": (np.concatenate([np.full(10, 1e-10), base[:30]]), 0.0),  # not ties: > 1e-12
    }
    for name, (values, estimate) in cells.items():
        low, high = bias_corrected_quantiles(values, estimate, confidence=0.9)
        assert (float(low), float(high)) == pytest.approx(_bias_corrected_by_hand(values, estimate, 0.9), abs=1e-12), name
    stacked = np.stack([cells[n][0] for n in ("above", "below", "ties", "mixed")], 1).reshape(40, 2, 2)
    estimates = np.array([[0.0, 0.0], [0.0, 0.3]])
    lows, highs = bias_corrected_quantiles(stacked, estimates)
    assert lows.shape == highs.shape == (2, 2)
    for index, name in enumerate(("above", "below", "ties", "mixed")):
        expected = _bias_corrected_by_hand(cells[name][0], cells[name][1])
        assert (lows.flat[index], highs.flat[index]) == pytest.approx(expected, abs=1e-12), name
    empty_low, empty_high = bias_corrected_quantiles(np.full((10, 2), np.nan), np.array([0.0, 0.0]))
    assert np.isnan(empty_low).all() and np.isnan(empty_high).all()
    with_empty = np.stack([base, np.full(40, np.nan)], 1)
    low, high = bias_corrected_quantiles(with_empty, np.array([0.3, 0.0]))
    assert np.isnan(low[1]) and np.isnan(high[1]) and (low[0], high[0]) == pytest.approx(
        _bias_corrected_by_hand(base, 0.3), abs=1e-12)


@pytest.mark.mutation
def test_the_coverage_note_in_full_for_a_simulated_and_an_unsimulated_k(monkeypatch):
    from stablesal.core import intervals

    monkeypatch.setattr(intervals, "COVERAGE_BY_K", {4: {"balanced": 0.95, "heavy-tailed": 0.93, "bad-seed": 0.84,
                                                         "images-dominate": 0.9, "odd": 0.7}})
    assert intervals.coverage_note(4) == (
        "With K = 4 models the nominal 95 % intervals covered 0.90–0.95 in simulated studies where model effects are "
        "normal or heavy-tailed and whichever of images or models dominates; 0.84 when bad seeds make 15 % of the "
        "models, 0.70 (odd), below 90 %: a seed that trains differently now and then is not seen by a study that did "
        "not draw one (every scenario reaches 90 % from K = 15) (docs/methods.md §3, experiments/results/coverage.json).")
    assert intervals.coverage_note(6).startswith("With K = 6 models (simulated at K = 4) the nominal")
    monkeypatch.setattr(intervals, "COVERAGE_BY_K", {4: {"balanced": 0.95, "heavy-tailed": 0.93}})
    assert intervals.coverage_note(4) == (
        "With K = 4 models the nominal 95 % intervals covered 0.93–0.95 in simulated studies where model effects are "
        "normal or heavy-tailed and whichever of images or models dominates (docs/methods.md §3, "
        "experiments/results/coverage.json).")


@pytest.mark.mutation
def test_design_interval_edges_equal_bounds_a_wide_range_no_variance_and_one_image():
    """Bounds must be ordered and distinct; in a range of 100 a value 0.5 from its bound is within 1 %
    of the range, so the raw interval is clipped instead of taking Fisher's z; a statistic with no
    variance gets the images' degrees of freedom; an interval that cannot be estimated keeps its method."""
    from stablesal.core.intervals import design_interval

    with pytest.raises(ValueError):
        design_interval(lambda w: 1.0, 5, {"main": 3}, bounds=(1.0, 1.0))
    values = np.array([0.2, 0.5, 0.9, 0.4, 0.7])

    def near_bound(w):
        return float(np.average(values, weights=w.images))

    wide = design_interval(near_bound, 5, {}, bounds=(0.0, 100.0))
    assert wide.method == "jackknife-clipped"
    narrow = design_interval(near_bound, 5, {}, bounds=(-1.0, 1.0))
    assert narrow.method == "jackknife-z"
    constant = design_interval(lambda w: 0.25, 6, {"main": 3})
    assert constant.df == 5.0 and constant.se == 0.0 and constant.low == constant.high == 0.25
    satterthwaite = design_interval(lambda w: 0.25, 6, {"main": 3}, quantile="satterthwaite")
    assert satterthwaite.df == 5.0 and satterthwaite.low == satterthwaite.high == 0.25
    def undefined_without_image_0(w):
        return float(np.average(values, weights=w.images)) if w.images[0] > 0 else float("nan")

    lost = design_interval(undefined_without_image_0, 5, {}, bounds=(-1.0, 1.0))
    assert math.isnan(lost.low) and math.isnan(lost.se) and lost.method == "jackknife-clipped"  # kept, not reset
