"""Tests of :mod:`stablesal.studies.stability.statistics`."""

import math

import numpy as np
import pytest
from scipy import stats

from stablesal.core.intervals import Weights, design_interval, model_mean, pair_mean
from stablesal.studies.stability.statistics import (
    UnitArrays, grid_contrast_rows, grouping_contrast, signal_resolved, summarise, variance_components,
    variance_reduction_rows,
)

from tests.helpers.study_results import study_result


def _rows(maps):
    """Pair rows of squared distances between the models' maps ``[K, n, d]``."""
    rows = []
    for a in range(maps.shape[0]):
        for b in range(a + 1, maps.shape[0]):
            distance = np.square(maps[a] - maps[b]).sum(1)
            rows += [{"image": i, "model_a": a, "model_b": b, "sq_distance": float(distance[i])}
                     for i in range(maps.shape[1])]
    return rows


def test_variance_components_recover_known_shares():
    """Maps = split effect + seed effect + explainer noise with known variances: the nested
    method-of-moments estimates recover each share (and a wrong formula, e.g. forgetting to
    subtract the explainer part from the seed part, would not)."""
    generator = np.random.default_rng(0)
    n_images, pixels, k = 40, 200, 5
    sd = {"split": 1.0, "seed": 0.7, "explainer": 0.5}
    split = sd["split"] * generator.normal(size=(k, n_images, pixels))
    seed = sd["seed"] * generator.normal(size=(k, n_images, pixels))
    main = split + seed
    control = np.repeat(split[:1], k, 0) + sd["seed"] * generator.normal(size=(k, n_images, pixels))
    first = main + sd["explainer"] * generator.normal(size=main.shape)
    second = main + sd["explainer"] * generator.normal(size=main.shape)
    control = control + sd["explainer"] * generator.normal(size=control.shape)
    retest = [{"image": i, "model": a, "sq_distance": float(np.square(first[a, i] - second[a, i]).sum())}
              for a in range(k) for i in range(n_images)]
    by_set = {"main": {"rows": _rows(first), "retest_rows": retest, "n_images": n_images, "n_models": k,
                       "varies": "both", "random": True},
              "control": {"rows": _rows(control), "retest_rows": [], "n_images": n_images,
                          "n_models": k, "varies": "seed", "random": True}}
    units = UnitArrays(by_set)
    components = variance_components(units, Weights.ones(n_images, units.counts))
    total = sum(v * v for v in sd.values())
    for name, value in sd.items():
        assert components[name] / pixels == pytest.approx(value ** 2, rel=0.1), name
        assert components[name] / components["total"] == pytest.approx(value ** 2 / total, abs=0.03)


def _unit(maps):
    return maps / np.linalg.norm(maps, axis=-1, keepdims=True)


def test_bias_and_noise_to_signal_match_their_definitions():
    """From pair rows alone: tr(Σ)/‖μ‖² equals the unbiased tr(Σ̂)/(‖ū‖² − tr(Σ̂)/K) computed with
    NumPy, and the bias equals Σ_{a≠b}⟨(I−P)u_a,(I−P)u_b⟩ / Σ_{a≠b}⟨u_a,u_b⟩."""
    from stablesal.studies.stability.statistics import _bias, _noise_to_signal

    generator = np.random.default_rng(3)
    k, n, d = 5, 7, 16
    maps = _unit(generator.normal(size=(1, n, d)) + 0.8 * generator.normal(size=(k, n, d)))
    blocks = np.kron(np.eye(4), np.full((4, 4), 0.25))  # P: the mean over 4 blocks of 4 pixels
    units = UnitArrays({"main": study_result(maps, "seed", partition=blocks)})
    weights = Weights.ones(n, units.counts)
    mean = maps.mean(0)
    trace = maps.var(0, ddof=1).sum(1)  # tr(Σ̂) per image
    expected_nsr = trace.mean() / (np.square(mean).sum(1) - trace / k).mean()
    assert _noise_to_signal(units, "sq_distance", weights) == pytest.approx(expected_nsr)
    a, b = np.triu_indices(k, 1)
    residual = maps - np.einsum("pq,kiq->kip", blocks, maps)
    expected_bias = (np.einsum("pid,pid->pi", residual[a], residual[b]).mean()
                     / np.einsum("pid,pid->pi", maps[a], maps[b]).mean())
    assert _bias(units, "g", weights) == pytest.approx(expected_bias)


def test_variance_components_in_every_design():
    """Seed-only main models with explainer noise; split-only main models with a control set;
    and an unknown design, which gets one 'models' component."""
    generator = np.random.default_rng(4)
    k, n, d = 6, 40, 150
    seed_sd, explainer_sd, split_sd = 0.8, 0.6, 1.0

    def noise(sd, count=k):
        return sd * generator.normal(size=(count, n, d))

    seeds = noise(seed_sd)
    first, second = seeds + noise(explainer_sd), seeds + noise(explainer_sd)
    units = UnitArrays({"main": study_result(first, "seed", retest=second)})
    parts = variance_components(units, Weights.ones(n, units.counts))
    assert parts["seed"] / d == pytest.approx(seed_sd ** 2, rel=0.1)
    assert parts["explainer"] / d == pytest.approx(explainer_sd ** 2, rel=0.1)
    assert parts["total"] == pytest.approx(parts["seed"] + parts["explainer"])

    one_seed = noise(seed_sd, 1)  # split-only main models share one seed effect
    splits, control_seeds = noise(split_sd), noise(seed_sd)
    main = splits + one_seed + noise(explainer_sd)
    rerun = splits + one_seed + noise(explainer_sd)
    control = splits[:1] + control_seeds + noise(explainer_sd)
    units = UnitArrays({"main": study_result(main, "split", retest=rerun),
                        "control": study_result(control, "seed", model_set="control")})
    parts = variance_components(units, Weights.ones(n, units.counts))
    assert parts["split"] / d == pytest.approx(split_sd ** 2, rel=0.15)
    assert parts["seed"] / d == pytest.approx(seed_sd ** 2, rel=0.15)
    assert parts["total"] == pytest.approx(parts["explainer"] + parts["split"] + parts["seed"])

    units = UnitArrays({"main": study_result(main, None, retest=rerun)})
    parts = variance_components(units, Weights.ones(n, units.counts))
    assert set(parts) == {"explainer", "models", "total"}
    # a random explainer without a retest: its share is unknown, not 0
    units = UnitArrays({"main": study_result(main, "seed")})
    assert math.isnan(variance_components(units, Weights.ones(n, units.counts))["explainer"])


def test_summary_intervals_read_the_right_model_sets():
    """The seed share's interval deletes main *and* control models; the untrained difference's
    deletes main and untrained models."""
    generator = np.random.default_rng(6)
    k, n, d = 4, 12, 30
    signal = generator.normal(size=(1, n, d))
    sets = {"main": study_result(_unit(signal + generator.normal(size=(k, n, d))), "both",
                            retest=_unit(signal + generator.normal(size=(k, n, d)))),
            "control": study_result(_unit(signal + generator.normal(size=(3, n, d))), "seed", model_set="control")}
    for result in sets.values():
        for row in result["rows"]:
            row.update(ssim=0.5, spearman=float(generator.random()), normalised_l2=1.0, topk_intersection=0.2,
                       a_correct=True, b_correct=True)
        for row in result["retest_rows"]:
            row.update(ssim=0.6, spearman=0.7, normalised_l2=0.5, topk_intersection=0.3)
    row = next(r for r in summarise([sets["main"], sets["control"]]) if r["model_set"] == "main")
    units = UnitArrays(sets)
    both = design_interval(lambda w: variance_components(units, w)["seed"] / variance_components(units, w)["total"],
                           n, {"main": k, "control": 3})
    assert (row["share_seed_ci_low"], row["share_seed_ci_high"]) == pytest.approx((both.low, both.high))
    difference = design_interval(lambda w: pair_mean(units.pair("main", "spearman"), w, "main")
                                 - pair_mean(units.pair("control", "spearman"), w, "control"),
                                 n, {"main": k, "control": 3}, bounds=(-2.0, 2.0))  # a Spearman difference's range
    assert row["spearman_main_minus_control_ci_low"] == pytest.approx(difference.low)
    raw = design_interval(lambda w: pair_mean(units.pair("main", "spearman"), w, "main")
                          - pair_mean(units.pair("control", "spearman"), w, "control"), n, {"main": k, "control": 3})
    assert raw.low != pytest.approx(difference.low)  # the check can tell the two scales apart
    # the correction for attenuation is Spearman's only (SSIM and top-k have chance levels above 0)
    assert "spearman_corrected" in row and "ssim_corrected" not in row and "topk_intersection_corrected" not in row


def test_family_of_every_method():
    from stablesal.explain.perturbation import PRESETS
    from stablesal.studies.stability.statistics import family

    assert all(family(name) == "perturbation" for name in PRESETS)
    assert family("random") == "control"
    assert [family(name) for name in ("saliency", "integrated_gradients", "suppression")] == ["gradient"] * 3


def _with_metrics(result, spearman=0.4):
    for row in result["rows"]:
        row.update(ssim=0.5, spearman=spearman, normalised_l2=1.0, topk_intersection=0.2, a_correct=True,
                   b_correct=False)
    return result


def test_signal_resolved_only_when_models_share_a_signal():
    from stablesal.studies.stability.statistics import signal_resolved

    generator = np.random.default_rng(8)
    k, n, d = 4, 10, 400
    shared = _unit(generator.normal(size=(1, n, d)) + 0.5 * generator.normal(size=(k, n, d)))
    unrelated = _unit(generator.normal(size=(k, n, d)))   # ⟨u_a, u_b⟩ ≈ 0, ‖u_a − u_b‖² ≈ 2
    assert signal_resolved(UnitArrays({"main": study_result(shared, "seed")}))
    assert not signal_resolved(UnitArrays({"main": study_result(unrelated, "seed")}))


def test_summary_rows_name_their_unit_and_a_deterministic_ceiling():
    generator = np.random.default_rng(9)
    result = _with_metrics(study_result(_unit(generator.normal(size=(3, 5, 20))), "seed", random=False))
    result["method"] = "rise"
    del result["draws"]   # results written before draws were recorded read as independent
    (row,) = summarise([result])
    assert (row["model_set"], row["method"], row["grouping"], row["family"]) == ("main", "rise", "pixel",
                                                                                  "perturbation")
    assert row["draws"] == "independent" and row["n_images"] == 5 and row["n_models"] == 3
    assert row["random"] is False
    # a deterministic explainer reproduces itself: similarity ceiling 1, distance ceiling 0
    assert row["spearman_retest"] == 1.0 and row["normalised_l2_retest"] == 0.0


def _renamed(result, old, new):
    for row in result["rows"]:
        for kind in ("projected", "predicted", "residual_cross"):
            row[f"{kind}@{new}"] = row.pop(f"{kind}@{old}")
    return result


def test_variance_reduction_rows_by_definition():
    """One pixel result with a partition named like a matched grid (``grid@x``: the name holds an
    '@') and its grouped result; every column against the definitions, and blanks without a
    shared signal."""
    from stablesal.studies.stability.statistics import _bias, _noise_to_signal, ratio

    generator = np.random.default_rng(10)
    k, n, d = 4, 8, 16
    blocks = np.kron(np.eye(4), np.full((4, 4), 0.25))
    for shared, expect_resolved in ((1.0, True), (0.0, False)):
        maps = _unit(shared * generator.normal(size=(1, n, d)) + 0.4 * generator.normal(size=(k, n, d)))
        pixel = _renamed(study_result(maps, "seed", partition=blocks), "g", "grid@x")
        grouped = study_result(_unit(np.einsum("pq,kiq->kip", blocks, maps)), "seed")
        grouped.update(grouping="grid@x", mean_segment_size=4.0)
        (row,) = variance_reduction_rows([pixel, grouped])
        assert (row["method"], row["partition"], row["mean_segment_size"]) == ("m", "grid@x", 4.0)
        assert row["signal_resolved"] is expect_resolved
        units, grouped_units = UnitArrays({"main": pixel}), UnitArrays({"main": grouped})
        ones = Weights.ones(n, {"main": k})
        measured = ratio(pair_mean(units.pair("main", "sq_distance"), ones, "main"),
                         pair_mean(units.pair("main", "projected@grid@x"), ones, "main"))
        assert row["measured"] == pytest.approx(measured)
        if expect_resolved:
            assert row["bias"] == pytest.approx(_bias(units, "grid@x", ones))
            assert row["nsr_gain"] == pytest.approx(_noise_to_signal(units, "sq_distance", ones)
                                                    / _noise_to_signal(grouped_units, "sq_distance", ones))
        else:
            assert np.isnan(row["bias"]) and np.isnan(row["nsr_gain"])


# ------------------------------ tests the mutation run asked for (marked mutation)
# Tests written against the survivors of `make mutation` in ``stablesal/stability_statistics.py``
# (the equivalent ones are listed in mutation/equivalent_stability_statistics.md): each checks a
# documented column, a value derived by hand or one computed independently with NumPy/SciPy from
# the same rows, so that a renamed column, a changed constant, operator or argument fails. The
# study results are built from synthetic maps (no models), so every test is fast.


PAIR_VALUES = {"ssim": 0.5, "spearman": 0.4, "normalised_l2": 1.0, "topk_intersection": 0.2}


RETEST_VALUES = {"ssim": 0.6, "spearman": 0.7, "normalised_l2": 0.5, "topk_intersection": 0.3}


def _result(maps, varies, random=True, retest=None, partition=None, model_set="main", grouping="pixel"):
    """tests/helpers/study_results.py's study result from maps ``[K, n, d]``, with the pairwise metrics
    and correctness filled in."""
    return study_result(maps, varies, random, retest, partition, model_set, grouping, pair_values=PAIR_VALUES,
                             retest_values=RETEST_VALUES)


def _pair_sq(maps):
    """Mean over images and model pairs a < b of ‖x_a − x_b‖², with NumPy."""
    a, b = np.triu_indices(maps.shape[0], 1)
    return float(np.square(maps[a] - maps[b]).sum(-1).mean())


def _three_sets(seed=0, k=4, n=6, d=20):
    """main (splits and seeds differ, random explainer with a retest), control (seeds) and
    untrained sets, and the maps they were built from."""
    generator = np.random.default_rng(seed)
    signal = generator.normal(size=(1, n, d))
    main = _unit(signal + generator.normal(size=(k, n, d)))
    rerun = _unit(signal + generator.normal(size=(k, n, d)))
    control = _unit(signal + generator.normal(size=(3, n, d)))
    untrained = _unit(generator.normal(size=(2, n, d)))
    results = [_result(main, "both", retest=rerun), _result(control, "seed", model_set="control"),
               _result(untrained, "init", model_set="untrained")]
    return results, {"main": main, "rerun": rerun, "control": control}


def _main_row(results):
    return next(r for r in summarise(results) if r["model_set"] == "main")


@pytest.mark.mutation
def test_summary_counts_the_control_and_untrained_models():
    """``n_control`` and ``n_untrained`` are the sizes of those sets, 0 when a set is absent."""
    results, _ = _three_sets()
    row = _main_row(results)
    assert (row["n_control"], row["n_untrained"]) == (3, 2)
    row = _main_row(results[:1])
    assert (row["n_control"], row["n_untrained"]) == (0, 0)


@pytest.mark.mutation
def test_summary_variance_total_and_shares_match_numpy():
    """With a seeds-only control set: ``variance_total`` = V(main) = mean ‖u_a − u_b‖²/2, the
    shares are (V(control) − explainer)/V(main) and (V(main) − V(control))/V(main) with the
    explainer part mean ‖u − u'‖²/2 of the retest, all from NumPy; and there is a share column
    for every component but the total itself."""
    results, maps = _three_sets()
    row = _main_row(results)
    v_main, v_control = _pair_sq(maps["main"]) / 2, _pair_sq(maps["control"]) / 2
    explainer = float(np.square(maps["main"] - maps["rerun"]).sum(-1).mean()) / 2
    assert row["variance_total"] == pytest.approx(v_main)
    assert row["variance_total_ci_low"] < v_main < row["variance_total_ci_high"]
    assert row["share_explainer"] == pytest.approx(explainer / v_main)
    assert row["share_seed"] == pytest.approx((v_control - explainer) / v_main)
    assert row["share_split"] == pytest.approx((v_main - v_control) / v_main)
    shares = {key for key in row if key.startswith("share_") and not key.endswith(("_ci_low", "_ci_high", "_p"))}
    assert shares == {"share_explainer", "share_seed", "share_split", "share_split_minus_seed"}
    # the paired difference of the two shares the decomposition reading orders by
    assert row["share_split_minus_seed"] == pytest.approx(row["share_split"] - row["share_seed"])
    assert 0 <= row["share_split_minus_seed_p"] <= 1


@pytest.mark.mutation
def test_summary_copies_segment_size_timing_and_mean_squared_distance():
    """Every set's row carries the result's mean segment size and explanation time, and
    ``sq_distance`` is the mean over images and model pairs of ‖u_a − u_b‖² (NumPy)."""
    results, maps = _three_sets()
    for result, seconds in zip(results, (2.5, 1.5, 0.5)):
        result.update(grouping="slic", mean_segment_size=7.25, explain_seconds_per_model=seconds)
    rows = {r["model_set"]: r for r in summarise(results)}
    assert [rows[s]["explain_seconds_per_model"] for s in ("main", "control", "untrained")] == [2.5, 1.5, 0.5]
    assert all(rows[s]["mean_segment_size"] == 7.25 for s in rows)
    assert rows["main"]["sq_distance"] == pytest.approx(_pair_sq(maps["main"]))
    assert rows["control"]["sq_distance"] == pytest.approx(_pair_sq(maps["control"]))
    assert rows["main"]["sq_distance_ci_low"] < rows["main"]["sq_distance"] < rows["main"]["sq_distance_ci_high"]


@pytest.mark.mutation
def test_image_metrics_are_model_zero_means_with_an_image_only_interval():
    """Fidelity, localisation and sanity columns are the mean over images of model 0's values,
    with the interval conditional on the models: the jackknife of a mean over n images is
    mean ± t(0.975, n − 1)·s/√n (SciPy), whatever the number of models."""
    results, _ = _three_sets(n=6)
    main = results[0]
    names = ("deletion_auc", "insertion_auc", "mu_fidelity", "relevance_mass", "pointing_game", "sanity_spearman",
             "sanity_ssim")
    generator = np.random.default_rng(11)
    values = {name: generator.random(6).tolist() for name in names}
    main.update(values)
    row = _main_row(results)
    for name in names:
        v = np.asarray(values[name])
        half = stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
        assert row[name] == pytest.approx(v.mean()), name
        assert (row[f"{name}_ci_low"], row[f"{name}_ci_high"]) == pytest.approx((v.mean() - half, v.mean() + half))


@pytest.mark.mutation
def test_mege_and_reco_on_test_images_by_hand():
    """MeGe/ReCo from distances √(1 − |ρ|): S= holds the pairs where both models are right, S≠
    those where exactly one is; pairs with an undefined ρ and pairs where both are wrong are left
    out. By hand: S= = {0.2, 0.8, 0.7}, S≠ = {0.3, 0.9, 1.0}, MeGe = 1/(1 + 1.7/3), ReCo = 2/3
    (threshold 0.8: all of S= and 2 of 3 of S≠ told apart)."""
    nan = float("nan")
    correct = [[True, True, False], [False, False, True], [True, True, True]]  # [image][model]
    spearman = {(0, 0, 1): 0.96, (0, 0, 2): -0.91, (0, 1, 2): nan,   # S=, S≠, S≠ but undefined
                (1, 0, 1): 0.19, (1, 0, 2): 0.19, (1, 1, 2): 0.0,    # both wrong, S≠, S≠
                (2, 0, 1): -0.36, (2, 0, 2): nan, (2, 1, 2): 0.51}   # S=, S= but undefined, S=
    generator = np.random.default_rng(12)
    result = _result(_unit(generator.normal(size=(3, 3, 10))), "seed", retest=_unit(generator.normal(size=(3, 3, 10))))
    for row in result["rows"]:
        i, a, b = row["image"], row["model_a"], row["model_b"]
        row.update(spearman=spearman[i, a, b], a_correct=correct[i][a], b_correct=correct[i][b])
    (row,) = summarise([result])
    assert row["mege_test"] == pytest.approx(1 / (1 + 1.7 / 3))
    assert row["reco_test"] == pytest.approx(2 / 3)


@pytest.mark.mutation
def test_corrected_similarity_is_blank_when_the_ceiling_interval_reaches_zero():
    """Spearman's correction needs a ceiling told apart from 0: a retest interval whose lower
    bound is exactly 0 leaves the corrected value and its interval NaN. The retest values are
    shifted until their design interval's lower bound is exactly 0.0 (found by bisection)."""
    k, n = 3, 6
    found = None
    for seed in range(20):
        z = np.random.default_rng(seed).normal(size=(n, k)) * 0.1

        def low(shift, z=z):
            return design_interval(lambda w: model_mean(shift + z, w, "main"), n, {"main": k},
                                   bounds=(-1.0, 1.0)).low  # the retest Spearman's interval is on Fisher's z

        below, above = 0.0, 1.0
        assert low(below) < 0 < low(above)
        for _ in range(200):
            middle = (below + above) / 2
            if middle in (below, above):
                break
            below, above = (middle, above) if low(middle) < 0 else (below, middle)
        shift = below
        for _ in range(60):  # rounding: step through neighbouring floats for an exact 0
            if low(shift) == 0.0:
                found = (z, shift)
                break
            shift = np.nextafter(shift, 2.0)
        if found is not None:
            break
    assert found is not None, "no retest values with a lower bound of exactly 0"
    z, shift = found
    generator = np.random.default_rng(13)
    result = _result(_unit(generator.normal(size=(k, n, 10))), "seed", retest=_unit(generator.normal(size=(k, n, 10))))
    for retest in result["retest_rows"]:
        retest["spearman"] = float(shift + z[retest["image"], retest["model"]])
    (row,) = summarise([result])
    assert row["spearman_retest_ci_low"] == 0.0 and row["spearman_retest"] > 0
    assert all(math.isnan(row[key]) for key in ("spearman_corrected", "spearman_corrected_ci_low",
                                                 "spearman_corrected_ci_high"))


@pytest.mark.mutation
def test_models_component_is_total_minus_explainer_part():
    """Design unknown: one 'models' component, V(main) − explainer part, both from NumPy."""
    generator = np.random.default_rng(14)
    maps, rerun = generator.normal(size=(4, 5, 12)), generator.normal(size=(4, 5, 12))
    units = UnitArrays({"main": _result(maps, None, retest=rerun)})
    parts = variance_components(units, Weights.ones(5, units.counts))
    v_main = _pair_sq(maps) / 2
    explainer = float(np.square(maps - rerun).sum(-1).mean()) / 2
    assert parts["total"] == pytest.approx(v_main)
    assert parts["models"] == pytest.approx(v_main - explainer)


@pytest.mark.mutation
def test_signal_not_resolved_when_models_are_orthogonal():
    """Maps of different models orthogonal on every image: every ⟨u_a, u_b⟩ is exactly 0, so
    ‖μ‖² is estimated as exactly 0 with no spread: not above 0."""
    k, n = 4, 5
    maps = np.repeat(np.eye(k)[:, None, :], n, axis=1)  # model a's map is the basis vector e_a
    units = UnitArrays({"main": _result(maps, "seed")})
    assert not signal_resolved(units)


@pytest.mark.mutation
def test_nsr_gain_blank_when_only_the_pixel_maps_share_a_signal():
    """A grouped result whose models share no signal: the noise-to-signal gain has no bound and
    is NaN even though the pixel maps' signal is resolved."""
    generator = np.random.default_rng(15)
    k, n, d = 4, 10, 16
    blocks = np.kron(np.eye(4), np.full((4, 4), 0.25))
    pixel = _result(_unit(generator.normal(size=(1, n, d)) + 0.4 * generator.normal(size=(k, n, d))), "seed",
                    partition=blocks)
    grouped = _result(_unit(generator.normal(size=(k, n, 400))), "seed", grouping="g")
    grouped["mean_segment_size"] = 4.0
    assert signal_resolved(UnitArrays({"main": pixel})) and not signal_resolved(UnitArrays({"main": grouped}))
    (row,) = variance_reduction_rows([pixel, grouped])
    assert row["signal_resolved"] is True
    assert all(math.isnan(row[key]) for key in ("nsr_gain", "nsr_gain_ci_low", "nsr_gain_ci_high"))


@pytest.mark.mutation
def test_variance_reduction_row_without_the_grouped_result():
    """A partition projected from the pixel maps but without a grouped result of its own: the
    row is still there, with the measured reduction, a NaN segment size and no NSR gain."""
    generator = np.random.default_rng(16)
    k, n, d = 4, 6, 16
    blocks = np.kron(np.eye(4), np.full((4, 4), 0.25))
    maps = _unit(generator.normal(size=(1, n, d)) + 0.4 * generator.normal(size=(k, n, d)))
    (row,) = variance_reduction_rows([_result(maps, "seed", partition=blocks)])
    assert (row["method"], row["partition"]) == ("m", "g")
    assert math.isnan(row["mean_segment_size"])
    assert "nsr_gain" not in row
    projected = np.einsum("pq,kiq->kip", blocks, maps)
    assert row["measured"] == pytest.approx(_pair_sq(maps) / _pair_sq(projected))


@pytest.mark.mutation
def test_variance_reduction_reads_only_main_pixel_results_with_rows():
    """Pixel results of another set (no main) or without rows give no variance-reduction row."""
    generator = np.random.default_rng(17)
    blocks = np.kron(np.eye(4), np.full((4, 4), 0.25))
    maps = _unit(generator.normal(size=(3, 4, 16)))
    assert variance_reduction_rows([_result(maps, "seed", partition=blocks, model_set="control")]) == []
    empty = _result(maps, "seed", partition=blocks)
    empty["rows"] = []
    assert variance_reduction_rows([empty]) == []


@pytest.mark.mutation
def test_grid_contrast_pairs_each_superpixel_grouping_with_its_matched_grid():
    """One row per ``grid@<name>`` grouping: ``<name>`` − its grid, here Spearman 0.6 − 0.4."""
    generator = np.random.default_rng(18)
    superpixel = _result(_unit(generator.normal(size=(3, 4, 10))), "seed", grouping="slic")
    grid = _result(_unit(generator.normal(size=(3, 4, 10))), "seed", grouping="grid@slic")
    for row in superpixel["rows"]:
        row["spearman"] = 0.6
    superpixel["mean_segment_size"], grid["mean_segment_size"] = 5.0, 4.0
    (row,) = grid_contrast_rows([superpixel, grid])
    assert (row["grouping"], row["reference"]) == ("slic", "grid@slic")
    assert (row["segment_size"], row["reference_segment_size"]) == (5.0, 4.0)
    assert row["spearman_difference"] == pytest.approx(0.2)


IMAGE_METRICS = ("deletion_auc", "insertion_auc", "mu_fidelity", "relevance_mass", "pointing_game")


def _contrast_inputs(seed=19, k=4, n=6, shared=1.0):
    """Grouped results ``g`` and ``h`` of method ``m`` (pairwise Spearman 0.7 and 0.4, per-image
    metrics), and its pixel result whose rows carry the residual cross products of both
    partitions (16 pixels, blocks of 4 for ``g`` and of 8 for ``h``)."""
    generator = np.random.default_rng(seed)
    blocks_g = np.kron(np.eye(4), np.full((4, 4), 0.25))
    blocks_h = np.kron(np.eye(2), np.full((8, 8), 0.125))
    maps = _unit(shared * generator.normal(size=(1, n, 16)) + 0.5 * generator.normal(size=(k, n, 16)))
    pixel = _result(maps, "seed", partition=blocks_g)
    for row in pixel["rows"]:  # the h partition's residual cross product, by the same formula
        a, b, i = row["model_a"], row["model_b"], row["image"]
        residual = maps[:, i].T - blocks_h @ maps[:, i].T
        row["residual_cross@h"] = float(residual[:, a] @ residual[:, b])
    g = _result(_unit(generator.normal(size=(k, n, 8))), "seed", grouping="g")
    h = _result(_unit(generator.normal(size=(k, n, 8))), "seed", grouping="h")
    for result, value in ((g, 0.7), (h, 0.4)):
        for row in result["rows"]:
            row["spearman"] = value
    for metric in IMAGE_METRICS:
        g[metric] = generator.random(n).tolist()
        h[metric] = generator.random(n).tolist()
    g["mean_segment_size"], h["mean_segment_size"] = 4.0, 8.0
    grouped = {("m", "g"): {"main": g}, ("m", "h"): {"main": h}, ("m", "pixel"): {"main": pixel}}
    return grouped, maps, blocks_g, blocks_h


@pytest.mark.mutation
def test_grouping_contrast_row_by_hand():
    """grouping − reference: names, segment sizes, the pairwise difference, each per-image metric's
    difference with its t interval over images (SciPy), and the difference of the projection
    biases computed from the maps with NumPy."""
    grouped, maps, blocks_g, blocks_h = _contrast_inputs()
    row = grouping_contrast(grouped, "m", "g", "h")
    assert (row["method"], row["grouping"], row["reference"]) == ("m", "g", "h")
    assert (row["segment_size"], row["reference_segment_size"]) == (4.0, 8.0)
    assert row["spearman_difference"] == pytest.approx(0.3)
    g, h = grouped[("m", "g")]["main"], grouped[("m", "h")]["main"]
    for metric in IMAGE_METRICS:
        difference = np.asarray(g[metric]) - np.asarray(h[metric])
        half = stats.t.ppf(0.975, len(difference) - 1) * difference.std(ddof=1) / math.sqrt(len(difference))
        assert row[f"{metric}_difference"] == pytest.approx(difference.mean())
        assert row[f"{metric}_difference_ci_low"] == pytest.approx(difference.mean() - half)
        assert row[f"{metric}_difference_ci_high"] == pytest.approx(difference.mean() + half)

    def bias(blocks):
        k = maps.shape[0]
        residual = maps - np.einsum("pq,kiq->kip", blocks, maps)
        pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
        cross = np.mean([(residual[a] * residual[b]).sum(-1) for a, b in pairs])
        return cross / np.mean([(maps[a] * maps[b]).sum(-1) for a, b in pairs])

    assert row["bias_difference"] == pytest.approx(bias(blocks_g) - bias(blocks_h))


@pytest.mark.mutation
def test_grouping_contrast_leaves_out_what_it_cannot_compute():
    """No row when either grouping is missing; a metric only one side has, the bias without a
    pixel result, with empty pixel rows or without one partition's residuals: left out; a
    missing segment size reads 1 (pixels)."""
    grouped, *_ = _contrast_inputs()
    assert grouping_contrast(grouped, "m", "g", "absent") is None
    assert grouping_contrast(grouped, "m", "absent", "h") is None
    del grouped[("m", "g")]["main"]["deletion_auc"]
    del grouped[("m", "h")]["main"]["insertion_auc"]
    del grouped[("m", "g")]["main"]["mean_segment_size"], grouped[("m", "h")]["main"]["mean_segment_size"]
    row = grouping_contrast(grouped, "m", "g", "h")
    assert "deletion_auc_difference" not in row and "insertion_auc_difference" not in row
    assert "mu_fidelity_difference" in row
    assert (row["segment_size"], row["reference_segment_size"]) == (1.0, 1.0)
    assert "bias_difference" not in grouping_contrast(grouped, "m", "g", "pixel")   # no residual@pixel
    pixel = grouped[("m", "pixel")]["main"]
    for row_ in pixel["rows"]:
        del row_["residual_cross@h"]
    assert "bias_difference" not in grouping_contrast(grouped, "m", "g", "h")
    assert "bias_difference" in grouping_contrast(grouped, "m", "g", "g")
    pixel["rows"] = []
    assert "bias_difference" not in grouping_contrast(grouped, "m", "g", "g")
    del grouped[("m", "pixel")]
    assert "bias_difference" not in grouping_contrast(grouped, "m", "g", "h")


@pytest.mark.mutation
def test_grouping_contrast_bias_is_nan_when_the_mean_map_is_not_resolved():
    """Maps with no shared component: ‖μ‖²'s interval reaches 0, so the bias ratio has no bound."""
    grouped, *_ = _contrast_inputs(shared=0.0)
    pixel = UnitArrays({"main": grouped[("m", "pixel")]["main"]})
    assert not signal_resolved(pixel)
    row = grouping_contrast(grouped, "m", "g", "h")
    assert math.isnan(row["bias_difference"])
    assert math.isnan(row["bias_difference_ci_low"]) and math.isnan(row["bias_difference_ci_high"])


@pytest.mark.mutation
def test_grid_contrast_reads_the_whole_name_after_the_first_at():
    """The matched grid of grouping ``x@y`` is ``grid@x@y``: everything after the first '@'."""
    generator = np.random.default_rng(20)
    superpixel = _result(_unit(generator.normal(size=(3, 4, 10))), "seed", grouping="x@y")
    grid = _result(_unit(generator.normal(size=(3, 4, 10))), "seed", grouping="grid@x@y")
    (row,) = grid_contrast_rows([superpixel, grid])
    assert (row["grouping"], row["reference"]) == ("x@y", "grid@x@y")


@pytest.mark.mutation
def test_the_p_value_matches_its_interval_on_the_raw_scale():
    """Student t on the interval's own degrees of freedom, against SciPy, for 0 and another value;
    a one-sided distance in either direction gives the same two-sided p."""
    from stablesal.core.intervals import Interval
    from stablesal.studies.stability.statistics import interval_p_value

    interval = Interval(0.3, 0.1, 0.5, se=0.1, df=10.0, method="jackknife")
    assert interval_p_value(interval) == pytest.approx(2 * stats.t.sf(3.0, 10.0), rel=1e-12)
    assert interval_p_value(interval, 0.1) == pytest.approx(2 * stats.t.sf(2.0, 10.0), rel=1e-12)
    assert interval_p_value(interval, 0.5) == pytest.approx(2 * stats.t.sf(2.0, 10.0), rel=1e-12)
    # bounds do not move a raw-scale interval's p, nor a Fisher-z method without bounds
    assert interval_p_value(interval, 0.1, bounds=(-1.0, 1.0)) == interval_p_value(interval, 0.1)
    z_without_bounds = Interval(0.3, 0.1, 0.5, se=0.1, df=10.0, method="jackknife-z")
    assert interval_p_value(z_without_bounds, 0.1) == pytest.approx(2 * stats.t.sf(2.0, 10.0), rel=1e-12)


@pytest.mark.mutation
def test_the_p_value_of_a_fisher_z_interval_is_on_that_scale_and_clips_a_value_on_a_bound():
    from stablesal.core.intervals import Interval
    from stablesal.studies.stability.statistics import interval_p_value

    interval = Interval(0.6, 0.3, 0.8, se=0.2, df=7.0, method="jackknife-z")
    z = np.arctanh  # on [−1, 1]
    assert interval_p_value(interval, 0.0, (-1.0, 1.0)) == pytest.approx(2 * stats.t.sf(z(0.6) / 0.2, 7.0), rel=1e-10)
    assert interval_p_value(interval, 0.2, (-1.0, 1.0)) == pytest.approx(
        2 * stats.t.sf((z(0.6) - z(0.2)) / 0.2, 7.0), rel=1e-10)
    # a range of [0, 1] is rescaled to [−1, 1] first: x → 2x − 1
    assert interval_p_value(interval, 0.2, (0.0, 1.0)) == pytest.approx(
        2 * stats.t.sf(abs(z(0.2) - z(-0.6)) / 0.2, 7.0), rel=1e-10)
    # a value on a bound is moved a billionth of the range inside it (finite z, a tiny p)
    for value, inside in ((1.0, 1 - 2e-9), (-1.0, -1 + 2e-9), (1.5, 1 - 2e-9)):
        expected = 2 * stats.t.sf(abs(z(0.6) - z(inside)) / 0.2, 7.0)
        assert interval_p_value(interval, value, (-1.0, 1.0)) == pytest.approx(expected, rel=1e-6)
    assert 0 < interval_p_value(interval, 1.0, (-1.0, 1.0)) < 1e-3


@pytest.mark.mutation
@pytest.mark.parametrize("se, df", [(float("nan"), 5.0), (0.1, float("nan")), (0.1, float("inf")), (0.0, 5.0),
                                    (-0.1, 5.0), (float("inf"), 5.0)])
def test_the_p_value_of_an_interval_that_is_not_estimable_is_nan(se, df):
    from stablesal.core.intervals import Interval
    from stablesal.studies.stability.statistics import interval_p_value

    assert math.isnan(interval_p_value(Interval(0.3, 0.1, 0.5, se=se, df=df), 0.0))


@pytest.mark.mutation
def test_with_p_adds_the_estimate_its_interval_and_the_p_of_the_given_value_on_the_given_scale():
    from stablesal.core.intervals import Interval
    from stablesal.studies.stability.statistics import interval_p_value, with_p

    interval = Interval(0.6, 0.3, 0.8, se=0.2, df=7.0, method="jackknife-z")
    row = with_p({"method": "m"}, "excess", interval, bounds=(0.0, 1.0), value=0.2)
    assert row == {"method": "m", "excess": 0.6, "excess_ci_low": 0.3, "excess_ci_high": 0.8,
                   "excess_p": interval_p_value(interval, 0.2, (0.0, 1.0))}
    assert row["excess_p"] != interval_p_value(interval, 0.0, (0.0, 1.0))
    assert row["excess_p"] != interval_p_value(interval, 0.2, None)
    assert with_p({}, "x", interval)["x_p"] == interval_p_value(interval, 0.0, None)


@pytest.mark.mutation
def test_icc_its_null_its_excess_and_the_facets_are_the_pearson_means_computed_by_numpy():
    """From unit maps of 4 models (with a retest) and 3 random-label networks: the ICC is the mean
    Pearson r of the centred maps over model pairs and images; icc_<null> the same on the null;
    icc_beyond = (ICC − ICC_N) / (1 − ICC_N); the facets are ICC, retest − ICC and 1 − retest, where
    retest is the mean Pearson r of each model's two runs; they sum to 1."""
    from tests.helpers.study_results import pearson

    generator = np.random.default_rng(21)
    k, n, d = 4, 6, 40
    signal = generator.normal(size=(1, n, d))
    main_maps = _unit(signal + 0.8 * generator.normal(size=(k, n, d)))
    retest_maps = _unit(main_maps + 0.3 * generator.normal(size=(k, n, d)))
    null_maps = _unit(0.5 * signal + generator.normal(size=(3, n, d)))
    main = _with_metrics(study_result(main_maps, "seed", retest=retest_maps))
    for row in main["retest_rows"]:
        row.update(ssim=0.9, spearman=0.9, normalised_l2=0.1, topk_intersection=0.8)
    null = _with_metrics(study_result(null_maps, "both", model_set="random_label"))
    row = next(r for r in summarise([main, null]) if r["model_set"] == "main")
    icc = np.mean([pearson(main_maps[a, i], main_maps[b, i]) for a in range(k) for b in range(a + 1, k)
                   for i in range(n)])
    icc_null = np.mean([pearson(null_maps[a, i], null_maps[b, i]) for a in range(3) for b in range(a + 1, 3)
                        for i in range(n)])
    retest = np.mean([pearson(main_maps[a, i], retest_maps[a, i]) for a in range(k) for i in range(n)])
    assert row["icc"] == pytest.approx(icc, abs=1e-12) and row["icc_random_label"] == pytest.approx(icc_null, abs=1e-12)
    assert row["icc_beyond_random_label"] == pytest.approx((icc - icc_null) / (1 - icc_null), abs=1e-12)
    assert row["g_shared"] == pytest.approx(icc, abs=1e-12)
    assert row["g_model"] == pytest.approx(retest - icc, abs=1e-12)
    assert row["g_explainer"] == pytest.approx(1 - retest, abs=1e-12)
    assert row["g_shared"] + row["g_model"] + row["g_explainer"] == pytest.approx(1.0, abs=1e-12)
    for key in ("icc", "icc_random_label", "icc_beyond_random_label", "g_shared", "g_model", "g_explainer"):
        assert row[f"{key}_ci_low"] < row[key] < row[f"{key}_ci_high"], key
    # the ICC's interval is built on Fisher's z of [−1, 1] (it stays inside the range), over the set's own models
    units = UnitArrays({"main": main, "random_label": null})
    for model_set, key in (("main", "icc"), ("random_label", "icc_random_label")):
        expected = design_interval(lambda w, s=model_set: pair_mean(units.pair(s, "centred_cross"), w, s), n,
                                   {model_set: units.counts[model_set]}, bounds=(-1.0, 1.0))
        assert expected.method == "jackknife-z"
        assert (row[f"{key}_ci_low"], row[f"{key}_ci_high"]) == pytest.approx((expected.low, expected.high), abs=1e-12)
    null_row = next(r for r in summarise([main, null]) if r["model_set"] == "random_label")
    assert (null_row["icc"], null_row["icc_ci_low"]) == (row["icc_random_label"], row["icc_random_label_ci_low"])
    # a deterministic explainer reproduces itself: no explainer facet, the rest is the model's
    main["random"] = False
    row = next(r for r in summarise([main, null]) if r["model_set"] == "main")
    assert row["g_explainer"] == 0.0 and row["g_model"] == pytest.approx(1 - icc, abs=1e-12)
    # rows written before the centred maps were recorded get no ICC, and no facets
    for result in (main, null):
        for pair in result["rows"]:
            del pair["centred_cross"]
    old = summarise([main, null])
    assert not any(key.startswith(("icc", "g_")) for r in old for key in r)


@pytest.mark.mutation
def test_metric_and_difference_ranges_are_those_registered_and_none_where_a_side_is_open():
    from stablesal.metrics import METRICS, register_metric
    from stablesal.studies.stability.statistics import difference_range, metric_range

    assert metric_range("spearman") == (-1.0, 1.0) and difference_range("spearman") == (-2.0, 2.0)
    assert metric_range("sq_distance") is None and difference_range("sq_distance") is None  # not a registered metric
    for name, low, high in (("open_above_for_test", 0.0, None), ("open_below_for_test", None, 1.0)):
        register_metric(name, higher_is_better=True, low=low, high=high, description="d", kind="pairwise",
                        function=lambda a, b: (a - b).abs().flatten(1).mean(1))
        try:
            assert metric_range(name) is None and difference_range(name) is None, name
        finally:
            METRICS.unregister(name)


@pytest.mark.mutation
def test_a_summary_row_takes_the_results_family_and_counts_no_degenerate_maps_by_default():
    generator = np.random.default_rng(4)
    result = _with_metrics(study_result(_unit(generator.normal(size=(3, 4, 20))), "seed"))
    result["method"] = "smoothgrad"
    (row,) = summarise([result])
    assert row["family"] == "gradient" and row["degenerate_maps"] == 0  # family from the method's registration
    result.update(family="perturbation", degenerate_maps=2)
    (row,) = summarise([result])
    assert row["family"] == "perturbation" and row["degenerate_maps"] == 2


@pytest.mark.mutation
def test_a_contrasts_pairwise_difference_is_bounded_to_twice_the_range_and_its_p_on_that_scale():
    """With pair metrics that vary, the Spearman difference's interval is the Fisher-z interval of a
    difference on [−2, 2], and its p-value is read on that scale; the sanity check is not compared."""
    from stablesal.core.intervals import design_interval
    from stablesal.studies.stability.statistics import interval_p_value

    grouped, _, _, _ = _contrast_inputs()
    generator = np.random.default_rng(17)
    for key, shift in ((("m", "g"), 0.2), (("m", "h"), 0.0)):
        for pair in grouped[key]["main"]["rows"]:
            pair["spearman"] = float(np.clip(0.6 + shift + 0.25 * generator.normal(), -1, 1))
        grouped[key]["main"]["sanity_spearman"] = list(generator.random(grouped[key]["main"]["n_images"]))
    row = grouping_contrast(grouped, "m", "g", "h")
    a, b = UnitArrays({"main": grouped[("m", "g")]["main"]}), UnitArrays({"main": grouped[("m", "h")]["main"]})
    expected = design_interval(lambda w: pair_mean(a.pair("main", "spearman"), w, "main")
                               - pair_mean(b.pair("main", "spearman"), w, "main"), a.n_images, a.counts,
                               bounds=(-2.0, 2.0))
    assert expected.method == "jackknife-z"
    assert (row["spearman_difference_ci_low"], row["spearman_difference_ci_high"]) == pytest.approx(
        (expected.low, expected.high), abs=1e-12)
    assert row["spearman_difference_p"] == pytest.approx(interval_p_value(expected, 0.0, (-2.0, 2.0)), rel=1e-12)
    assert row["spearman_difference_p"] != pytest.approx(interval_p_value(expected, 0.0, None), rel=1e-6)
    assert "sanity_spearman_difference" not in row


@pytest.mark.mutation
def test_the_null_rows_and_the_main_minus_control_difference_are_on_their_ranges():
    """Each null's mean Spearman is bounded to [−1, 1] and the excess over it to [−2, 2] (Fisher-z
    intervals, checked against design_interval); main − control's p is read on [−2, 2]; the
    strictest null present is named (random-label networks before untrained ones), None without one."""
    from stablesal.core.intervals import design_interval
    from stablesal.studies.stability.statistics import interval_p_value

    generator = np.random.default_rng(23)
    k, n, d = 4, 8, 30

    def varied(result, centre):
        for pair in result["rows"]:
            pair.update(ssim=0.5, normalised_l2=1.0, topk_intersection=0.2, a_correct=True, b_correct=True,
                        spearman=float(np.clip(centre + 0.2 * generator.normal(), -1, 1)))
        return result

    main = varied(study_result(_unit(generator.normal(size=(k, n, d))), "both"), 0.6)
    control = varied(study_result(_unit(generator.normal(size=(3, n, d))), "seed", model_set="control"), 0.7)
    untrained = varied(study_result(_unit(generator.normal(size=(3, n, d))), "init", model_set="untrained"), 0.3)
    random_label = varied(study_result(_unit(generator.normal(size=(3, n, d))), "both", model_set="random_label"), 0.4)
    row = next(r for r in summarise([main, control, untrained, random_label]) if r["model_set"] == "main")
    assert row["strictest_null"] == "random_label"
    units = UnitArrays({"main": main, "control": control, "untrained": untrained, "random_label": random_label})
    for null in ("untrained", "random_label"):
        own = design_interval(lambda w, s=null: pair_mean(units.pair(s, "spearman"), w, s), n, {null: 3},
                              bounds=(-1.0, 1.0))
        excess = design_interval(lambda w, s=null: pair_mean(units.pair("main", "spearman"), w, "main")
                                 - pair_mean(units.pair(s, "spearman"), w, s), n, {"main": k, null: 3},
                                 bounds=(-2.0, 2.0))
        assert (row[f"spearman_{null}_ci_low"], row[f"spearman_{null}_ci_high"]) == pytest.approx(
            (own.low, own.high), abs=1e-12)
        assert (row[f"spearman_above_{null}_ci_low"], row[f"spearman_above_{null}_ci_high"]) == pytest.approx(
            (excess.low, excess.high), abs=1e-12)
    difference = design_interval(lambda w: pair_mean(units.pair("main", "spearman"), w, "main")
                                 - pair_mean(units.pair("control", "spearman"), w, "control"), n,
                                 {"main": k, "control": 3}, bounds=(-2.0, 2.0))
    assert row["spearman_main_minus_control_p"] == pytest.approx(interval_p_value(difference, 0.0, (-2.0, 2.0)),
                                                                rel=1e-12)
    assert row["spearman_main_minus_control_p"] != pytest.approx(interval_p_value(difference, 0.0, None), rel=1e-6)
    (alone,) = [r for r in summarise([main]) if r["model_set"] == "main"]
    assert alone["strictest_null"] is None
    only_untrained = next(r for r in summarise([main, untrained]) if r["model_set"] == "main")
    assert only_untrained["strictest_null"] == "untrained"
