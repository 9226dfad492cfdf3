"""The null families in the stability statistics: the generalizability coefficient (ICC) and its
facets recover known variance components, the agreement beyond each null is main − null, the
ranking orders rows by paired differences with Holm's control, and the ranking's agreement across
nulls is a rank correlation."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from stablesal.core.intervals import Weights
from stablesal.core.settings import NULL_SETS
from stablesal.metrics.similarity import centred_unit_maps, pairwise_metrics
from stablesal.studies.stability.statistics import (
    UnitArrays, g_components, icc_beyond, interval_p_value, null_rank_agreement, ranking_rows, summarise,
)
from tests.helpers.study_results import study_result


def components_maps(rng, k, n, d, shared, model, explainer, common=None):
    """Maps ``[K, n, d]`` and their retest: a component shared by every model (variance
    ``shared``), one per model (``model``) and one per explainer run (``explainer``); ``common``
    (``[n, d]``) replaces the shared component when given (two sets sharing it)."""
    mu = rng.normal(0, math.sqrt(shared), (n, d)) if common is None else common
    per_model = rng.normal(0, math.sqrt(model), (k, n, d))
    first = mu + per_model + rng.normal(0, math.sqrt(explainer), (k, n, d))
    again = mu + per_model + rng.normal(0, math.sqrt(explainer), (k, n, d))
    return first, again


def test_centred_unit_maps_give_pearson_r_and_nan_for_a_constant_map():
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 2, 5, 6, generator=generator, dtype=torch.float64) + 4.0  # an offset: Pearson r ignores it, cosine would not
    units = centred_unit_maps(maps)
    for i in range(3):
        a, b = maps[i].sum(0).flatten().numpy(), maps[(i + 1) % 3].sum(0).flatten().numpy()
        assert float((units[i] * units[(i + 1) % 3]).sum()) == pytest.approx(stats.pearsonr(a, b).statistic, abs=1e-12)
    constant = centred_unit_maps(torch.ones(1, 1, 4, 4))
    assert torch.isnan(constant).all()


def test_icc_and_its_facets_recover_known_variance_components():
    """σ²_p = 0.5, σ²_pm = 0.3, σ²_e = 0.2 of a map's unit variance: ICC 0.5, facets 0.5 / 0.3 / 0.2."""
    rng = np.random.default_rng(0)
    first, again = components_maps(rng, k=5, n=6, d=4000, shared=0.5, model=0.3, explainer=0.2)
    units = UnitArrays({"main": study_result(first, "seed", retest=again)})
    facets = g_components(units, Weights.ones(6, units.counts))
    assert facets["shared"] == pytest.approx(0.5, abs=0.03)
    assert facets["model"] == pytest.approx(0.3, abs=0.03)
    assert facets["explainer"] == pytest.approx(0.2, abs=0.03)
    assert sum(facets.values()) == pytest.approx(1.0)


def test_icc_beyond_a_null_is_the_chance_corrected_share():
    assert icc_beyond(0.6, 0.2) == pytest.approx(0.5)  # (0.6 − 0.2) / (1 − 0.2)
    assert icc_beyond(0.2, 0.2) == 0.0
    assert math.isnan(icc_beyond(0.5, 1.0))


def summary_with_nulls(rng, shared_null=0.3, shared_main=0.6, k=4, n=8, d=3000, methods=("m",)):
    """One summary's worth of results: main models share ``shared_main`` of their variance, every
    null family ``shared_null`` (the same for all three)."""
    results = []
    metrics = {metric: 0.5 for metric in pairwise_metrics()}
    for method in methods:
        first, again = components_maps(rng, k, n, d, shared_main, 1 - shared_main, 0.0)
        results.append(dict(study_result(first, "seed", retest=again, random=False, pair_values=metrics,
                                         retest_values=metrics), method=method))
        for null in NULL_SETS:
            maps, _ = components_maps(rng, k, n, d, shared_null, 1 - shared_null, 0.0)
            results.append(dict(study_result(maps, "init", model_set=null, random=False, pair_values=metrics),
                                method=method))
    for result in results:  # a readable metric that varies: Spearman ≈ Pearson on these Gaussian maps
        for row in result["rows"]:
            row["spearman"] = row["centred_cross"]
    return results


def test_summary_reads_every_null_family_and_names_the_strictest():
    rng = np.random.default_rng(1)
    row = next(r for r in summarise(summary_with_nulls(rng)) if r["model_set"] == "main")
    assert row["strictest_null"] == "random_label"
    for null in NULL_SETS:
        assert row[f"n_{null}"] == 4
        assert row[f"icc_{null}"] == pytest.approx(0.3, abs=0.05)
        assert row[f"icc_beyond_{null}"] == pytest.approx(
            (row["icc"] - row[f"icc_{null}"]) / (1 - row[f"icc_{null}"]))
        assert row[f"icc_beyond_{null}_ci_low"] < row[f"icc_beyond_{null}"] < row[f"icc_beyond_{null}_ci_high"]
    assert row["icc"] == pytest.approx(0.6, abs=0.05)


def test_without_the_random_label_set_the_strictest_null_is_the_next_one():
    rng = np.random.default_rng(2)
    results = [r for r in summary_with_nulls(rng) if r["model_set"] != "random_label"]
    row = next(r for r in summarise(results) if r["model_set"] == "main")
    assert row["strictest_null"] == "bn_calibrated" and "icc_random_label" not in row


def test_interval_p_value_matches_the_t_interval_it_comes_from():
    from stablesal.core.intervals import Interval
    interval = Interval(0.3, 0.1, 0.5, 0.1, 4.0)
    assert interval_p_value(interval) == pytest.approx(2 * stats.t.sf(3.0, 4.0))
    # an interval whose end touches 0 has p = 1 − confidence
    t = stats.t.ppf(0.975, 7.0)
    assert interval_p_value(Interval(t * 0.2, 0.0, 2 * t * 0.2, 0.2, 7.0)) == pytest.approx(0.05)
    assert math.isnan(interval_p_value(Interval(0.3, math.nan, math.nan, math.nan, math.nan)))


def ranking_results(rng, shares):
    """Results of several methods (name → share of the main models' variance they share), each with a
    random-label null that shares 0.2."""
    results = []
    for method, shared in shares.items():
        first, _ = components_maps(rng, 4, 8, 2000, shared, 1 - shared, 0.0)
        null, _ = components_maps(rng, 4, 8, 2000, 0.2, 0.8, 0.0)
        main = dict(study_result(first, "seed", random=False), method=method)
        other = dict(study_result(null, "init", model_set="random_label", random=False), method=method)
        for result in (main, other):  # a readable metric: Spearman ≈ Pearson on these Gaussian maps
            for row in result["rows"]:
                row["spearman"] = row["centred_cross"]
        results += [main, other]
    return results


def test_ranking_orders_by_excess_and_resolves_only_clear_paired_differences(monkeypatch):
    rng = np.random.default_rng(3)
    ranking = ranking_rows(ranking_results(rng, {"strong": 0.8, "weak": 0.25, "close": 0.78}),
                           metric="spearman", contrasts=(("close", "strong"),))
    assert ranking["null"] == "random_label"
    names = [r["method"] for r in ranking["rows"]]
    assert names[0] in ("strong", "close") and names[-1] == "weak"
    by_name = {r["method"]: r for r in ranking["rows"]}
    # the excess is main − null of the same rows
    assert by_name["weak"]["excess"] == pytest.approx(by_name["weak"]["above_random_label"])
    # Holm's adjusted p-values are at least the raw ones and ordered with them
    for row in ranking["rows"]:
        assert row["excess_holm"] >= row["excess_p"]
    assert by_name["weak"]["behind_first_holm"] <= 0.05  # far behind: resolved
    close = by_name["close"] if names[0] == "strong" else by_name["strong"]
    assert close["behind_first_holm"] > 0.05  # 0.8 vs 0.78: not resolved
    contrast = ranking["contrasts"][0]
    assert (contrast["method"], contrast["reference"]) == ("close", "strong")
    assert contrast["difference"] == pytest.approx(by_name["close"]["excess"] - by_name["strong"]["excess"])


def test_a_paired_difference_is_narrower_than_the_marginal_intervals_suggest():
    """Two rows that share their images' difficulty: the paired interval removes it, the marginal
    intervals overlap."""
    rng = np.random.default_rng(4)
    results = ranking_results(rng, {"a": 0.6, "b": 0.55})
    # the same image effect in both rows: shift every pair value of image i by the same amount
    shifts = rng.normal(0, 0.15, 8)
    for result in results:
        if result["model_set"] == "main":
            for row in result["rows"]:
                row["spearman"] = row["centred_cross"] + shifts[row["image"]]
    ranking = ranking_rows(results, metric="spearman")
    first, second = ranking["rows"]
    marginal = (first["excess_ci_high"] - first["excess_ci_low"]) + (second["excess_ci_high"] - second["excess_ci_low"])
    paired = second["behind_first_ci_high"] - second["behind_first_ci_low"]
    assert paired < marginal / 2


def test_rank_agreement_across_nulls_is_spearmans_rho_of_the_excesses():
    rng = np.random.default_rng(5)
    results = summary_with_nulls(rng, methods=("a", "b", "c", "d"))
    agreement = null_rank_agreement(results)
    assert [(e["null"], e["other"]) for e in agreement] == [
        ("random_label", "bn_calibrated"), ("random_label", "untrained"), ("bn_calibrated", "untrained")]
    summary = [r for r in summarise(results) if r["model_set"] == "main"]
    x = [r["spearman_above_random_label"] for r in summary]
    y = [r["spearman_above_untrained"] for r in summary]
    assert agreement[1]["rank_correlation"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert -1 <= agreement[1]["rank_correlation_ci_low"] <= agreement[1]["rank_correlation_ci_high"] <= 1


def _ranked(rng, shares, nulls=("random_label",), k=4, n=8, d=600):
    """Results keyed by (method, grouping) → share of the main models' variance they share; each
    null in ``nulls`` shares 0.2. Spearman is read as the Pearson r the rows hold."""
    results = []
    for (method, grouping), shared in shares.items():
        first, _ = components_maps(rng, k, n, d, shared, 1 - shared, 0.0)
        results.append(dict(study_result(first, "seed", random=False, grouping=grouping), method=method))
        for null in nulls:
            maps, _ = components_maps(rng, k, n, d, 0.2, 0.8, 0.0)
            results.append(dict(study_result(maps, "init", model_set=null, random=False, grouping=grouping),
                                method=method))
    for result in results:
        for row in result["rows"]:
            row["spearman"] = row["centred_cross"]
    return results


def _mean_spearman(results, method, grouping, model_set="main"):
    result = next(r for r in results if (r["method"], r["grouping"], r["model_set"]) == (method, grouping, model_set))
    return float(np.mean([row["spearman"] for row in result["rows"]]))


def _z_midpoint_gap(row, prefix, half):
    """How far the interval's midpoint on Fisher's z of [−half, half] is from the estimate's z
    (0 for an interval built symmetric on that scale)."""
    z = lambda v: math.atanh(v / half)  # noqa: E731
    return (z(row[f"{prefix}_ci_low"]) + z(row[f"{prefix}_ci_high"])) / 2 - z(row[prefix])


def _holm_by_hand(p):
    order = sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


@pytest.mark.mutation
def test_the_ranking_reads_spearman_by_default_and_names_its_metric_and_alpha():
    results = _ranked(np.random.default_rng(11), {("a", "pixel"): 0.7, ("b", "pixel"): 0.3})
    ranking = ranking_rows(results)
    assert ranking["metric"] == "spearman" and ranking["alpha"] == 0.05
    top = ranking["rows"][0]
    assert top["excess"] == pytest.approx(_mean_spearman(results, "a", "pixel")
                                          - _mean_spearman(results, "a", "pixel", "random_label"))


@pytest.mark.mutation
def test_the_ranking_leaves_out_the_random_map_control_and_a_result_of_the_control_family():
    from stablesal.explain.controls import RANDOM_MAP
    results = _ranked(np.random.default_rng(12), {("a", "pixel"): 0.5, ("b", "pixel"): 0.4,
                                                 (RANDOM_MAP, "pixel"): 0.9, ("mine", "pixel"): 0.8})
    for result in results:
        if result["method"] == "mine" and result["model_set"] == "main":
            result["family"] = "control"  # a user's control, declared on the result
    assert sorted(r["method"] for r in ranking_rows(results)["rows"]) == ["a", "b"]


@pytest.mark.mutation
def test_with_a_null_every_interval_is_symmetric_on_fishers_z_of_its_range_and_p_matches_it():
    """above_N: a difference of two Spearman means, in ±2; behind_first: a difference of two
    such differences, in ±4; each p-value is Student t on that z scale, computed here by hand."""
    from stablesal.core.intervals import pair_mean
    from stablesal.studies.stability.statistics import UnitArrays as Units
    results = _ranked(np.random.default_rng(13), {("a", "pixel"): 0.85, ("b", "pixel"): 0.3})
    first, second = ranking_rows(results)["rows"]
    for row in (first, second):
        assert _z_midpoint_gap(row, "above_random_label", 2.0) == pytest.approx(0.0, abs=1e-9)
    assert abs(_z_midpoint_gap(first, "above_random_label", 1.0)) > 1e-4  # the check can tell the scales apart
    assert _z_midpoint_gap(second, "behind_first", 4.0) == pytest.approx(0.0, abs=1e-9)
    assert abs(_z_midpoint_gap(second, "behind_first", 2.0)) > 1e-6
    # the p-value of above_random_label, from the interval's own se and df on z of ±2
    by_set = {r["model_set"]: r for r in results if r["method"] == "a"}
    units = Units(by_set)
    interval = units.interval(lambda w: pair_mean(units.pair("main", "spearman"), w, "main")
                              - pair_mean(units.pair("random_label", "spearman"), w, "random_label"),
                              ("main", "random_label"), bounds=(-2.0, 2.0))
    assert (interval.low, interval.high) == pytest.approx((first["above_random_label_ci_low"],
                                                           first["above_random_label_ci_high"]))
    by_hand = 2 * stats.t.sf(abs(math.atanh(interval.estimate / 2)) / interval.se, interval.df)
    assert first["above_random_label_p"] == pytest.approx(by_hand, rel=1e-9)
    assert first["excess_p"] == first["above_random_label_p"]


@pytest.mark.mutation
def test_without_a_null_the_excess_is_the_raw_mean_on_the_metrics_range():
    from stablesal.core.intervals import pair_mean
    from stablesal.studies.stability.statistics import UnitArrays as Units
    results = _ranked(np.random.default_rng(14), {("a", "pixel"): 0.8, ("b", "pixel"): 0.35,
                                                 ("faint", "pixel"): 0.01}, nulls=())
    ranking = ranking_rows(results)
    assert ranking["null"] is None
    first, second, faint = ranking["rows"]
    # the p-value of the faint row's raw mean = 0, from its interval's se and df on z of ±1
    units = Units({"main": next(r for r in results if r["method"] == "faint")})
    interval = units.interval(lambda w: pair_mean(units.pair("main", "spearman"), w, "main"), bounds=(-1.0, 1.0))
    by_hand = 2 * stats.t.sf(abs(math.atanh(interval.estimate)) / interval.se, interval.df)
    assert 1e-4 < by_hand < 0.9  # a p-value the scale and the tested value change
    assert faint["excess_p"] == pytest.approx(by_hand, rel=1e-9)
    assert first["excess"] == pytest.approx(_mean_spearman(results, "a", "pixel"))
    assert _z_midpoint_gap(first, "excess", 1.0) == pytest.approx(0.0, abs=1e-9)
    assert abs(_z_midpoint_gap(first, "excess", 2.0)) > 1e-6
    assert second["behind_first"] == pytest.approx(first["excess"] - second["excess"])
    assert _z_midpoint_gap(second, "behind_first", 2.0) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.mutation
def test_a_row_without_a_finite_excess_is_ranked_last():
    results = _ranked(np.random.default_rng(15), {("broken", "pixel"): 0.5, ("a", "pixel"): 0.3,
                                                 ("b", "pixel"): 0.7})
    for result in results:
        if result["method"] == "broken" and result["model_set"] == "main":
            for row in result["rows"]:
                row["spearman"] = math.nan
    assert [r["method"] for r in ranking_rows(results)["rows"]] == ["b", "a", "broken"]


@pytest.mark.mutation
def test_every_row_is_read_against_the_first_rows_method_and_grouping_and_contrasts_pair_within_a_grouping():
    shares = {("a", "pixel"): 0.9, ("a", "grid"): 0.6, ("b", "pixel"): 0.45, ("b", "grid"): 0.3,
              ("c", "pixel"): 0.15, ("c", "grid"): 0.75}
    results = _ranked(np.random.default_rng(16), shares)
    ranking = ranking_rows(results, contrasts=(("a", "b"),))
    rows = ranking["rows"]
    assert (rows[0]["method"], rows[0]["grouping"]) == ("a", "pixel") and rows[1]["grouping"] == "grid"
    for row in rows[1:]:
        assert row["behind_first"] == pytest.approx(rows[0]["excess"] - row["excess"])
    assert _holm_by_hand([r["behind_first_p"] for r in rows[1:]]) == pytest.approx(
        [r["behind_first_holm"] for r in rows[1:]])
    pairs = ranking["contrasts"]
    excess = {(r["method"], r["grouping"]): r["excess"] for r in rows}
    assert sorted((p["method"], p["reference"], p["grouping"]) for p in pairs) == [
        ("a", "b", "grid"), ("a", "b", "pixel")]
    for pair in pairs:
        assert pair["difference"] == pytest.approx(excess[("a", pair["grouping"])] - excess[("b", pair["grouping"])])
    assert _holm_by_hand([p["difference_p"] for p in pairs]) == pytest.approx([p["difference_holm"] for p in pairs])
    assert all(isinstance(p["difference_holm"], float) for p in pairs)


@pytest.mark.mutation
def test_rank_agreement_needs_three_rows_beside_the_random_map_control():
    from stablesal.explain.controls import RANDOM_MAP
    rng = np.random.default_rng(17)
    three = summary_with_nulls(rng, methods=("a", "b", "c", RANDOM_MAP), d=600)
    agreement = null_rank_agreement(three)
    assert len(agreement) == 3 and all(entry["n_rows"] == 3 for entry in agreement)
    summary = [r for r in summarise(three) if r["model_set"] == "main" and r["method"] != RANDOM_MAP]
    x = [r["spearman_above_bn_calibrated"] for r in summary]
    y = [r["spearman_above_untrained"] for r in summary]
    assert agreement[2]["rank_correlation"] == pytest.approx(stats.spearmanr(x, y).statistic)
    two = [r for r in three if r["method"] != "c"]
    assert null_rank_agreement(two) == []


@pytest.mark.mutation
def test_a_paired_difference_refuses_rows_of_other_images_or_models_and_reads_only_the_sets_both_hold():
    from stablesal.studies.stability.statistics import _Joined
    rng = np.random.default_rng(18)
    results = _ranked(rng, {("a", "pixel"): 0.7, ("b", "pixel"): 0.3}, nulls=())
    fewer_images = _ranked(rng, {("b", "pixel"): 0.3}, nulls=(), n=6)
    with pytest.raises(ValueError, match="^a paired difference needs the same images and models in both rows$"):
        ranking_rows([results[0], *fewer_images])
    fewer_models = _ranked(rng, {("b", "pixel"): 0.3}, nulls=(), k=3)
    with pytest.raises(ValueError, match="^a paired difference needs the same images and models in both rows$"):
        ranking_rows([results[0], *fewer_models])
    with_null = _ranked(rng, {("a", "pixel"): 0.7}, nulls=("untrained",))
    joined = _Joined(UnitArrays({r["model_set"]: r for r in with_null}), UnitArrays({"main": results[1]}))
    assert joined.counts == {"main": 4, "untrained": 4} and joined.n_images == 8
