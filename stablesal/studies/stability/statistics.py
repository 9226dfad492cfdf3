"""Statistics of the cross-seed stability study (docs/methods.md §3): every number of the report's
stability sections, computed from the rows that :func:`stablesal.stability.run_study` returns
(pairwise and per-image values, no model passes), with intervals from :mod:`stablesal.intervals`.

- :func:`summarise`: one row per model set × method × grouping (mean similarities, the test–retest
  ceiling and the corrected value, every null family and the agreement beyond it, the
  generalizability coefficient (ICC) and its facets, the variance decomposition, fidelity,
  localisation, sanity, the test-image MeGe/ReCo);
- :func:`grid_contrast_rows`, :func:`pixel_contrast_rows`: super-pixel − matched grid and
  grouped − pixel differences;
- :func:`variance_reduction_rows`: the variance reduction of grouping against its predictions.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from ...core.intervals import (
    Weights, design_interval, image_mean, interval_note, model_mean, pair_mean, rows_to_model_array,
    rows_to_pair_array, to_fisher_z,
)
from ...core.multiple_testing import holm
from ...metrics.agreement import mege, reco
from ...explain.explainers import family as registered_family
from ...core.settings import MAIN, NULL_SETS
from ...metrics.registry import METRICS, metric_info
from ...metrics.similarity import pairwise_metrics

# Spearman's correction for attenuation needs a similarity whose chance level is 0: a rank
# correlation. SSIM and the top-k overlap sit above 0 for unrelated maps (top-k: 0.1), so a ratio to
# their retest value would call unrelated maps "as similar as the explainer allows".
CORRECTED_METRICS = ("spearman",)

# Model 0's per-image scores: their intervals are over images, conditional on model 0 and its maps.
MODEL_0_METRICS = ("deletion_auc", "insertion_auc", "mu_fidelity", "relevance_mass", "pointing_game",
                   "sanity_spearman", "sanity_ssim")
_MODEL_0_NOTE = {"columns": list(MODEL_0_METRICS), "sampled": ["test images"], "fixed": ["model 0 and its maps"]}

# How each table's intervals are computed (results.json "intervals"), next to the code that computes them.
SUMMARY_INTERVALS = interval_note(
    "design-jackknife", sampled=["test images", "models of every model set the column reads: the row's set for the "
                                 "pairwise means and icc; main for *_retest, *_corrected and g_*; the null set N "
                                 "(random_label, bn_calibrated, untrained) for *_N and icc_N; main and N for "
                                 "*_above_N and icc_beyond_N; main and control for "
                                 "spearman_main_minus_control, share_* and variance_total"],
    exceptions=[_MODEL_0_NOTE], reference="docs/methods.md §3")
CONTRAST_INTERVALS = interval_note(
    "design-jackknife", sampled=["test images", "main models"], columns="<metric>_difference_ci_low / _ci_high",
    exceptions=[dict(_MODEL_0_NOTE, columns=[f"{m}_difference" for m in MODEL_0_METRICS[:5]])],
    reference="docs/methods.md §3")
REDUCTION_INTERVALS = interval_note("design-jackknife", sampled=["test images", "main models"],
                                    reference="docs/methods.md §3")


class UnitArrays:
    """The rows of one method × grouping, across model sets, as arrays for weighted statistics:
    ``pair(set, key)`` → ``[n, K, K]``, ``retest(key)`` → ``[n, K_main]``, ``image(key)`` → ``[n]``."""

    def __init__(self, by_set: dict[str, dict]):
        self.by_set = by_set
        main = by_set[MAIN]
        self.n_images = main["n_images"]
        self.counts = {name: result["n_models"] for name, result in by_set.items()}
        self._cache: dict = {}

    def pair(self, model_set: str, key: str) -> np.ndarray:
        if (model_set, key) not in self._cache:
            result = self.by_set[model_set]
            self._cache[(model_set, key)] = rows_to_pair_array(result["rows"], key, self.n_images,
                                                               result["n_models"])
        return self._cache[(model_set, key)]

    def retest(self, key: str) -> np.ndarray:
        if ("retest", key) not in self._cache:
            self._cache[("retest", key)] = rows_to_model_array(self.by_set[MAIN]["retest_rows"], key, self.n_images,
                                                               self.counts[MAIN])
        return self._cache[("retest", key)]

    def image(self, key: str) -> np.ndarray:
        return np.asarray(self.by_set[MAIN][key], dtype=float)

    def has_icc(self) -> bool:
        """Whether the rows carry ``centred_cross`` (the Pearson r of centred signed maps)."""
        rows = self.by_set[MAIN]["rows"]
        return bool(rows) and "centred_cross" in rows[0]

    def has_retest(self) -> bool:
        return bool(self.by_set[MAIN].get("retest_rows"))

    def interval(self, statistic, sets=(MAIN,), conditional: bool = False, bounds=None):
        return design_interval(statistic, self.n_images, {s: self.counts[s] for s in sets if s in self.counts},
                               conditional=conditional, bounds=bounds)


def metric_range(metric: str) -> tuple[float, float] | None:
    """The range of a registered pairwise metric's mean (its MetricInfo's low and high; None for an
    unregistered key such as ``sq_distance`` or an unbounded metric): its interval stays inside."""
    if metric not in METRICS:
        return None
    info = metric_info(metric)
    return None if info.low is None or info.high is None else (info.low, info.high)


def difference_range(metric: str) -> tuple[float, float] | None:
    """The range of a difference of two means of ``metric``: ±(high − low) (a Spearman difference: ±2)."""
    bounds = metric_range(metric)
    return None if bounds is None else (bounds[0] - bounds[1], bounds[1] - bounds[0])


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN where the denominator is 0 or not finite."""
    if not np.isfinite(denominator) or denominator == 0:
        return float("nan")
    return numerator / denominator


# The generalizability coefficient of one model's map (docs/methods.md §3, "Reliability beyond a
# null") is a mean Pearson correlation: it lives in [-1, 1].
ICC_RANGE = (-1.0, 1.0)


def _icc(units: UnitArrays, model_set: str, weights: Weights) -> float:
    """ICC(C,1) of one map: the mean over model pairs of the Pearson correlation of their centred
    signed maps over pixels. With every map scaled to unit variance this is σ²_p / (σ²_p + σ²_pm
    + σ²_e), the share of a single map's variance shared by every model of the set (Shrout &
    Fleiss 1979, ICC(3,1); Brennan, *Generalizability Theory*, 2001, §2)."""
    return pair_mean(units.pair(model_set, "centred_cross"), weights, model_set)


def _icc_retest(units: UnitArrays, weights: Weights) -> float:
    """The retest correlation of one model's map (σ²_p + σ²_pm of unit-variance maps): 1 for a
    deterministic explainer."""
    if not units.by_set[MAIN]["random"]:
        return 1.0
    return model_mean(units.retest("centred_cross"), weights, MAIN)


def icc_beyond(trained: float, null: float) -> float:
    """How much of the agreement a null leaves unexplained is reached by the trained models:
    (ρ_T − ρ_N) / (1 − ρ_N), the chance-corrected form of Cohen's κ (1960) with the null's ICC as
    the chance level. 0: no more agreement than networks that learned nothing about the classes;
    1: identical maps. NaN when the null itself agrees perfectly."""
    return ratio(trained - null, 1.0 - null)


def g_components(units: UnitArrays, weights: Weights) -> dict[str, float]:
    """The facets of a unit-variance map in a generalizability study of images × models ×
    explainer runs (Brennan 2001): the share shared by every model (σ²_p, the ICC), the share
    particular to the model (σ²_pm: retest correlation − ICC) and the share of the explainer's own
    run (σ²_e: 1 − retest correlation). They sum to 1."""
    shared, retest = _icc(units, MAIN, weights), _icc_retest(units, weights)
    return {"shared": shared, "model": retest - shared, "explainer": 1.0 - retest}


def _ceiling(units: UnitArrays, metric: str, weights: Weights) -> float:
    """The test–retest value of ``metric``: a second run on the same model with another seed.
    Deterministic explainers reproduce themselves exactly (1 for similarities, 0 for the distance)."""
    if not units.by_set[MAIN]["random"]:
        return 0.0 if metric == "normalised_l2" else 1.0
    return model_mean(units.retest(metric), weights, MAIN)


def variance_components(units: UnitArrays, weights: Weights) -> dict[str, float]:
    """Method-of-moments variance components of the unit-norm maps (summed over pixels, averaged
    over images) from the nested design: explainer draws within a model, seeds within a split,
    splits (Searle, Casella & McCulloch 1992, ch. 3). ``V(set)`` is the mean over model pairs of
    ‖u_a − u_b‖²/2, the unbiased across-model variance; the explainer component is the same from
    the test–retest pairs. Components can come out negative (estimation noise); they are
    reported as estimated."""
    main_varies = units.by_set[MAIN].get("varies")
    if units.has_retest():
        explainer = model_mean(units.retest("sq_distance"), weights, MAIN) / 2
    elif units.by_set[MAIN]["random"]:
        explainer = float("nan")  # a random explainer without a retest: its own noise is not measured
    else:
        explainer = 0.0
    v_main = pair_mean(units.pair(MAIN, "sq_distance"), weights, MAIN) / 2
    control = units.by_set.get("control")
    v_control = (pair_mean(units.pair("control", "sq_distance"), weights, "control") / 2
                 if control is not None and control.get("varies") == "seed" else None)
    out = {"explainer": explainer, "total": v_main}
    if main_varies == "seed":
        out["seed"] = v_main - explainer
    elif main_varies == "both" and v_control is not None:
        out["seed"], out["split"] = v_control - explainer, v_main - v_control
    elif main_varies == "split":
        out["split"] = v_main - explainer
        if v_control is not None:
            out["seed"] = v_control - explainer
            out["total"] = explainer + out["split"] + out["seed"]
    else:  # what the models differ in is unknown or confounded: one 'models' component
        out["models"] = v_main - explainer
    return out


def _share(units: UnitArrays, component: str, weights: Weights) -> float:
    """One variance component as a share of the total, from one evaluation of the components."""
    components = variance_components(units, weights)
    return ratio(components[component], components["total"])


def _group_results(results: list[dict]) -> dict[tuple[str, str], dict[str, dict]]:
    grouped: dict[tuple[str, str], dict[str, dict]] = {}
    for result in results:
        grouped.setdefault((result["method"], result["grouping"]), {})[result["model_set"]] = result
    return grouped


def family(method: str) -> str | None:
    """The registered family of ``method`` (``"gradient"``, ``"perturbation"``, ``"control"``);
    None for a name no registry holds."""
    return registered_family(method)


def summarise(results: list[dict]) -> list[dict]:
    """One row per model set × method × grouping. Every set: the mean pairwise metrics with
    design intervals and the ICC. ``main`` rows add the test–retest ceiling, the similarity relative
    to it (Spearman's correction for attenuation), each null family N present (``*_N``,
    ``*_above_N``, ``icc_N``, ``icc_beyond_N``; ``strictest_null`` names the first of
    :data:`~stablesal.core.settings.NULL_SETS` present), the facets of the generalizability study
    (``g_shared``, ``g_model``, ``g_explainer``), the variance decomposition, and model 0's
    fidelity, localisation and sanity."""
    summary = []
    for (method, grouping), by_set in _group_results(results).items():
        if MAIN not in by_set:
            continue
        units = UnitArrays(by_set)
        for model_set, result in by_set.items():
            row = {"model_set": model_set, "method": method, "grouping": grouping,
                   "family": result.get("family") or family(method),
                   "draws": result.get("draws", "independent"), "n_images": result["n_images"],
                   "n_models": result["n_models"], "random": result.get("random")}
            if "mean_segment_size" in result:
                row["mean_segment_size"] = result["mean_segment_size"]
            # constant maps (degenerate: a model whose output ignores the image) and the pairs
            # left out of every similarity because of them
            row["degenerate_maps"] = result.get("degenerate_maps", 0)
            row["degenerate_pairs"] = sum(bool(r.get("degenerate")) for r in result["rows"])
            for metric in pairwise_metrics() + ("sq_distance",):
                row.update(units.interval(lambda w, m=metric, s=model_set: pair_mean(units.pair(s, m), w, s),
                                          (model_set,), bounds=metric_range(metric)).as_dict(metric))
            if units.has_icc():
                row.update(units.interval(lambda w, s=model_set: _icc(units, s, w), (model_set,),
                                          bounds=ICC_RANGE).as_dict("icc"))
            if model_set == MAIN:
                row.update(_main_statistics(units))
            row["explain_seconds_per_model"] = result["explain_seconds_per_model"]
            summary.append(row)
    return summary


def _main_statistics(units: UnitArrays) -> dict:
    row = {}
    main = units.by_set[MAIN]
    row["retest_exact"] = not main["random"]
    row["n_control"] = units.counts.get("control", 0)
    for null in NULL_SETS:
        row[f"n_{null}"] = units.counts.get(null, 0)
    nulls = [null for null in NULL_SETS if null in units.by_set]
    row["strictest_null"] = nulls[0] if nulls else None
    for metric in pairwise_metrics():
        row.update(units.interval(lambda w, m=metric: _ceiling(units, m, w), bounds=metric_range(metric))
                   .as_dict(f"{metric}_retest"))
    for metric in CORRECTED_METRICS:
        # Spearman's (1904) correction for attenuation with equal reliabilities: r_ab / √(r_aa r_bb)
        # = r_ab / r_retest, the between-model similarity as a share of what the explainer's own
        # sampling noise lets two runs of one model reach. Undefined (NaN) when the ceiling itself
        # cannot be told from 0: nothing is reproducible enough to correct for.
        if not row[f"{metric}_retest_ci_low"] > 0:
            row.update({f"{metric}_corrected": float("nan"), f"{metric}_corrected_ci_low": float("nan"),
                        f"{metric}_corrected_ci_high": float("nan")})
            continue
        row.update(units.interval(
            lambda w, m=metric: ratio(pair_mean(units.pair(MAIN, m), w, MAIN), _ceiling(units, m, w))
        ).as_dict(f"{metric}_corrected"))
    for null in nulls:
        for metric in pairwise_metrics():
            row.update(units.interval(lambda w, m=metric, n=null: pair_mean(units.pair(n, m), w, n),
                                      (null,), bounds=metric_range(metric)).as_dict(f"{metric}_{null}"))
            row.update(units.interval(
                lambda w, m=metric, n=null: pair_mean(units.pair(MAIN, m), w, MAIN) - pair_mean(units.pair(n, m), w, n),
                (MAIN, null), bounds=difference_range(metric)).as_dict(f"{metric}_above_{null}"))
        if units.has_icc():
            row.update(units.interval(lambda w, n=null: _icc(units, n, w), (null,), bounds=ICC_RANGE)
                       .as_dict(f"icc_{null}"))
            row.update(units.interval(lambda w, n=null: icc_beyond(_icc(units, MAIN, w), _icc(units, n, w)),
                                      (MAIN, null)).as_dict(f"icc_beyond_{null}"))
    if units.has_icc():
        for facet in ("shared", "model", "explainer"):
            row.update(units.interval(lambda w, f=facet: g_components(units, w)[f]).as_dict(f"g_{facet}"))
    if "control" in units.by_set:
        # main (splits and seeds differ) minus control (seeds only): what disjoint data adds
        with_p(row, "spearman_main_minus_control", units.interval(
            lambda w: pair_mean(units.pair(MAIN, "spearman"), w, MAIN)
            - pair_mean(units.pair("control", "spearman"), w, "control"),
            (MAIN, "control"), bounds=difference_range("spearman")), difference_range("spearman"))
    sets = tuple(s for s in (MAIN, "control") if s in units.by_set)
    components = variance_components(units, Weights.ones(units.n_images, units.counts))
    for component in components:
        if component == "total":
            continue
        with_p(row, f"share_{component}", units.interval(lambda w, c=component: _share(units, c, w), sets))
    row.update(units.interval(lambda w: variance_components(units, w)["total"], sets).as_dict("variance_total"))
    if "seed" in components and "split" in components:
        # the paired difference of the two shares (same images and models): the ordering a reading may state
        with_p(row, "share_split_minus_seed", units.interval(
            lambda w: _share(units, "split", w) - _share(units, "seed", w), sets))
    same, different = _mege_distances(main)
    # Fel et al.'s fold protocol is in fold_study; this is the held-out test-image variant
    row["mege_test"], row["reco_test"] = mege(same), reco(same, different)
    for metric in MODEL_0_METRICS:
        if metric in main:
            values = units.image(metric)
            # model 0's maps only: an interval over images, conditional on model 0
            row.update(units.interval(lambda w, v=values: image_mean(v, w), (), conditional=True).as_dict(metric))
    return row


def _mege_distances(main: dict) -> tuple[list, list]:
    """MeGe / ReCo (Fel et al., WACV 2022) distances √(1 − |ρ|) on the held-out test images:
    pairs where both models are right (S=) and where exactly one is (S≠)."""
    same = [math.sqrt(max(0.0, 1 - abs(r["spearman"]))) for r in main["rows"]
            if r["a_correct"] and r["b_correct"] and np.isfinite(r["spearman"])]
    different = [math.sqrt(max(0.0, 1 - abs(r["spearman"]))) for r in main["rows"]
                 if r["a_correct"] != r["b_correct"] and np.isfinite(r["spearman"])]
    return same, different


def grouping_contrast(grouped: dict, method: str, grouping: str, reference: str) -> dict | None:
    """``grouping`` − ``reference`` for one method on the main models: every pairwise metric
    (design interval: same models, same images), model 0's fidelity and localisation (interval
    over images) and, when both are partitions of the pixel maps, the bias of the projection."""
    first, second = grouped.get((method, grouping), {}).get(MAIN), grouped.get((method, reference), {}).get(MAIN)
    if first is None or second is None:
        return None
    a, b = UnitArrays({MAIN: first}), UnitArrays({MAIN: second})
    row = {"method": method, "grouping": grouping, "reference": reference,
           "segment_size": first.get("mean_segment_size", 1.0), "reference_segment_size":
           second.get("mean_segment_size", 1.0)}
    for metric in pairwise_metrics():
        with_p(row, f"{metric}_difference", a.interval(lambda w, m=metric: pair_mean(a.pair(MAIN, m), w, MAIN)
                                                       - pair_mean(b.pair(MAIN, m), w, MAIN),
                                                       bounds=difference_range(metric)), difference_range(metric))
    for metric in MODEL_0_METRICS[:5]:  # the sanity check is not compared across groupings
        if metric in first and metric in second:
            difference = a.image(metric) - b.image(metric)
            with_p(row, f"{metric}_difference", a.interval(lambda w, v=difference: image_mean(v, w), ()))
    pixel = grouped.get((method, "pixel"), {}).get(MAIN)
    if pixel is not None and pixel["rows"] and all(f"residual_cross@{g}" in pixel["rows"][0]
                                                   for g in (grouping, reference)):
        units = UnitArrays({MAIN: pixel})
        resolved = signal_resolved(units)
        with_p(row, "bias_difference", units.interval(
            lambda w: _bias(units, grouping, w) - _bias(units, reference, w) if resolved else float("nan")))
    return row


def with_p(row: dict, key: str, interval, bounds=None, value: float = 0.0) -> dict:
    """``row`` with ``key`` (estimate and interval) and ``key_p``, the p-value of ``key = value``
    that matches the interval (:func:`interval_p_value`): what a count across rows adjusts (Holm)."""
    row.update(interval.as_dict(key))
    row[f"{key}_p"] = interval_p_value(interval, value, bounds)
    return row


def grid_contrast_rows(results: list[dict]) -> list[dict]:
    """Every super-pixel grouping against its size-matched grid (``grid@<name>``), every method."""
    grouped = _group_results(results)
    rows = []
    for method, grouping in grouped:
        if grouping.startswith("grid@"):
            row = grouping_contrast(grouped, method, grouping.split("@", 1)[1], grouping)
            if row is not None:
                rows.append(row)
    return rows


def pixel_contrast_rows(results: list[dict]) -> list[dict]:
    """Every grouping against the pixel map of the same method (grouped − pixel)."""
    grouped = _group_results(results)
    rows = []
    for method, grouping in grouped:
        if grouping != "pixel":
            row = grouping_contrast(grouped, method, grouping, "pixel")
            if row is not None:
                rows.append(row)
    return rows


def _bias(units: UnitArrays, partition: str, weights: Weights) -> float:
    """‖μ − Pμ‖²/‖μ‖² of the mean unit map μ across models, each norm estimated without the
    noise bias of a K-model mean: ⟨x_a, x_b⟩ averaged over model pairs a ≠ b."""
    cross = 1 - units.pair(MAIN, "sq_distance") / 2  # ⟨u_a, u_b⟩ of unit-norm maps
    return ratio(pair_mean(units.pair(MAIN, f"residual_cross@{partition}"), weights, MAIN),
                 pair_mean(cross, weights, MAIN))


def signal_resolved(units: UnitArrays) -> bool:
    """Whether ‖μ‖², estimated as the mean ⟨u_a, u_b⟩ over model pairs, is above 0 with 95 %
    confidence. Bias and noise-to-signal ratios divide by it: when its interval reaches 0 they
    have no bound and are reported as NaN."""
    cross = 1 - units.pair(MAIN, "sq_distance") / 2
    return bool(units.interval(lambda w: pair_mean(cross, w, MAIN)).low > 0)


def _noise_to_signal(units: UnitArrays, key: str, weights: Weights) -> float:
    """tr(Σ)/‖μ‖² of unit-norm maps, both unbiased: v/(1 − v) with v the mean ‖u_a − u_b‖²/2."""
    v = pair_mean(units.pair(MAIN, key), weights, MAIN) / 2
    return ratio(v, 1 - v)


def variance_reduction_rows(results: list[dict]) -> list[dict]:
    """The variance-reduction check for every method × partition, as predictions that can fail.

    * ``measured``: tr(Σ)/tr(PΣ) of the pixel maps across models (unit norm), from model pairs;
    * ``independent``: d/m, the mean segment size, what independent pixels would give;
    * ``predicted``: what the spatial correlation of the maps' differences predicts if it were
      the same everywhere in the image (:func:`stablesal.grouping.stationary_projection_energy`);
    * ``bias``: ‖μ − Pμ‖²/‖μ‖², the share of the mean map grouping discards;
    * ``nsr_gain``: the noise-to-signal ratio tr(Σ)/‖μ‖² of the pixel method over that of the
      grouped method *as computed* (grouping inside each sample for gradient methods): below 1,
      grouping made the map noisier relative to its signal.
    """
    grouped = _group_results(results)
    rows = []
    for (method, grouping), by_set in grouped.items():
        main = by_set.get(MAIN)
        if grouping != "pixel" or main is None or not main["rows"]:
            continue
        units = UnitArrays({MAIN: main})
        resolved = signal_resolved(units)  # one per method: it reads the pixel maps only
        for key in main["rows"][0]:
            if not key.startswith("projected@"):
                continue
            partition = key.split("@", 1)[1]
            segment = grouped.get((method, partition), {}).get(MAIN, {})
            size = segment.get("mean_segment_size", float("nan"))
            row = {"method": method, "partition": partition, "mean_segment_size": size}
            row.update(units.interval(lambda w, p=partition: ratio(
                pair_mean(units.pair(MAIN, "sq_distance"), w, MAIN),
                pair_mean(units.pair(MAIN, f"projected@{p}"), w, MAIN))).as_dict("measured"))
            row.update(units.interval(lambda w, p=partition: ratio(
                pair_mean(units.pair(MAIN, "sq_distance"), w, MAIN),
                pair_mean(units.pair(MAIN, f"predicted@{p}"), w, MAIN))).as_dict("predicted"))
            row.update(units.interval(lambda w, p=partition: ratio(
                pair_mean(units.pair(MAIN, f"predicted@{p}"), w, MAIN),
                pair_mean(units.pair(MAIN, f"projected@{p}"), w, MAIN))).as_dict("measured_over_predicted"))
            row["signal_resolved"] = resolved
            row.update(units.interval(lambda w, p=partition: _bias(units, p, w) if resolved else float("nan"))
                       .as_dict("bias"))
            if segment:
                grouped_units = UnitArrays({MAIN: segment})
                both_resolved = resolved and signal_resolved(grouped_units)
                row.update(units.interval(lambda w: ratio(
                    _noise_to_signal(units, "sq_distance", w),
                    _noise_to_signal(grouped_units, "sq_distance", w)) if both_resolved else float("nan")
                ).as_dict("nsr_gain"))
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------------
# Readings that order or count rows: paired differences and multiplicity control
# --------------------------------------------------------------------------------------

FAMILY_ALPHA = 0.05  # the family-wise error rate of every count and ordering the readings state (Holm)

RANKING_INTERVALS = interval_note(
    "design-jackknife", sampled=["test images", "main models and the null set N of the column: every row of a "
                                 "paired difference reads the same images and models, so the jackknife deletes them "
                                 "from both rows at once"],
    reference="docs/methods.md §3")


def interval_p_value(interval, value: float = 0.0, bounds: tuple[float, float] | None = None) -> float:
    """The two-sided p-value of ``estimate = value`` that matches the design interval: Student t
    with the interval's degrees of freedom, on the scale the interval was built on (Fisher's z of
    the range for a "jackknife-z" interval). NaN where the interval is not estimable."""
    if not (math.isfinite(interval.se) and math.isfinite(interval.df)) or interval.se <= 0:
        return float("nan")
    if interval.method == "jackknife-z" and bounds is not None:
        margin = (bounds[1] - bounds[0]) * 1e-9
        clipped = min(max(value, bounds[0] + margin), bounds[1] - margin)
        distance = to_fisher_z(interval.estimate, bounds) - to_fisher_z(clipped, bounds)
    else:
        distance = interval.estimate - value
    return float(2 * stats.t.sf(abs(distance) / interval.se, interval.df))


def _excess(units: UnitArrays, metric: str, null: str, weights: Weights) -> float:
    return pair_mean(units.pair(MAIN, metric), weights, MAIN) - pair_mean(units.pair(null, metric), weights, null)


# Method pairs whose paired difference the readings state, per grouping: suppression-based
# sampling (erasing) against Gaussian noise (SmoothGrad), the stabiliser the report compares.
CONTRASTS = (("suppression", "smoothgrad"),)


def ranking_rows(results: list[dict], metric: str = "spearman", contrasts=CONTRASTS) -> dict:
    """The ranking the headline states, from paired differences with family-wise control.

    Every main method × grouping (the random-map control aside) gets its agreement beyond every
    null family N present, ``above_N`` = mean ``metric`` of the main models − that of N, with its
    design interval, p-value (``above_N_p``) and Holm's adjusted p-value across the rows
    (``above_N_holm``: a count of rows "above N" counts those with it ≤ α); ``excess`` is
    ``above_<strictest null>`` (the raw mean when no null ran). Rows are sorted
    by ``excess``; each row after the first gets the *paired* difference ``first − row`` (same
    images, same models: one jackknife over both) with its interval, p-value and Holm's adjusted
    p-value across those comparisons: the first place is resolved against a row when that adjusted
    p-value is ≤ α, not when two marginal intervals happen not to overlap.

    ``contrasts``: method pairs ``(a, b)`` compared in every grouping both ran, ``a − b`` of the
    excess, paired, in ``"contrasts"``.

    Returns ``{"metric", "null", "alpha", "rows", "contrasts"}``; ``null`` is None (and every
    excess is the raw mean) when no null set ran."""
    grouped = {key: by_set for key, by_set in _group_results(results).items()
               if MAIN in by_set and by_set[MAIN].get("family") != "control" and family(key[0]) != "control"}
    if not grouped:
        return {"metric": metric, "null": None, "alpha": FAMILY_ALPHA, "rows": [], "contrasts": []}
    nulls = [n for n in NULL_SETS if all(n in by_set for by_set in grouped.values())]
    null = nulls[0] if nulls else None
    bounds = difference_range(metric) if null else metric_range(metric)
    rows, units = [], {}
    for (method, grouping), by_set in grouped.items():
        unit = units[(method, grouping)] = UnitArrays({s: by_set[s] for s in (MAIN, *nulls)})
        row = {"method": method, "grouping": grouping}
        for other in nulls:  # every null's excess, each with its p-value (Holm below, per null)
            interval = unit.interval(lambda w, u=unit, n=other: _excess(u, metric, n, w), (MAIN, other),
                                     bounds=difference_range(metric))
            row.update(interval.as_dict(f"above_{other}"))
            row[f"above_{other}_p"] = interval_p_value(interval, 0.0, difference_range(metric))
        if null is None:
            interval = unit.interval(lambda w, u=unit: pair_mean(u.pair(MAIN, metric), w, MAIN), bounds=bounds)
            row.update(interval.as_dict("excess"))
            row["excess_p"] = interval_p_value(interval, 0.0, bounds)
        else:
            row.update({key.replace(f"above_{null}", "excess"): row[key] for key in list(row)
                        if key.startswith(f"above_{null}")})
        rows.append(row)
    for key in ["excess"] + [f"above_{n}" for n in nulls]:
        for row, adjusted in zip(rows, holm(np.array([r[f"{key}_p"] for r in rows]))):
            row[f"{key}_holm"] = float(adjusted)
    rows.sort(key=lambda r: -(r["excess"] if math.isfinite(r["excess"]) else -math.inf))
    first = (rows[0]["method"], rows[0]["grouping"])
    for row in rows[1:]:
        row.update(_paired(units, first, (row["method"], row["grouping"]), metric, null, bounds, "behind_first"))
    behind = rows[1:]
    for row, adjusted in zip(behind, holm(np.array([r["behind_first_p"] for r in behind]))):
        row["behind_first_holm"] = float(adjusted)
    pairs = []
    for a, b in contrasts:
        for (method, grouping) in units:
            if method == a and (b, grouping) in units:
                pairs.append({"method": a, "reference": b, "grouping": grouping,
                              **_paired(units, (a, grouping), (b, grouping), metric, null, bounds, "difference")})
    for row, adjusted in zip(pairs, holm(np.array([r["difference_p"] for r in pairs]))):
        row["difference_holm"] = float(adjusted)
    return {"metric": metric, "null": null, "alpha": FAMILY_ALPHA, "rows": rows, "contrasts": pairs}


def _paired(units: dict, first: tuple, second: tuple, metric: str, null: str | None, bounds, prefix: str) -> dict:
    """The paired difference of two rows' excess (``first − second``; same images and models,
    one jackknife over both), with its interval and p-value under ``prefix``."""
    a, b = units[first], units[second]
    if null:
        statistic = lambda w: _excess(a, metric, null, w) - _excess(b, metric, null, w)  # noqa: E731
    else:
        statistic = lambda w: pair_mean(a.pair(MAIN, metric), w, MAIN) - pair_mean(b.pair(MAIN, metric), w, MAIN)  # noqa: E731
    half = bounds[1] - bounds[0]  # a difference of two values in bounds lies in ±(high − low)
    interval = _Joined(a, b).interval(statistic, (MAIN,) + ((null,) if null else ()), bounds=(-half, half))
    return {**interval.as_dict(prefix), f"{prefix}_p": interval_p_value(interval, 0.0, (-half, half))}


class _Joined:
    """Two units read with one set of weights (their images and models are the same): the design
    interval of a paired difference."""

    def __init__(self, first: UnitArrays, second: UnitArrays):
        if first.n_images != second.n_images or any(first.counts.get(s) != second.counts.get(s)
                                                    for s in set(first.counts) & set(second.counts)):
            raise ValueError("a paired difference needs the same images and models in both rows")
        self.n_images, self.counts = first.n_images, {**second.counts, **first.counts}

    def interval(self, statistic, sets, bounds=None):
        return design_interval(statistic, self.n_images, {s: self.counts[s] for s in sets if s in self.counts},
                               bounds=bounds)


def null_rank_agreement(results: list[dict], metric: str = "spearman") -> list[dict]:
    """How the ranking of the methods × groupings moves across null families: for every pair of
    nulls present, the Spearman rank correlation across rows of their excess (main − null), with
    a design interval (images, main models and both nulls' models deleted in turn: every row reads
    the same ones). A correlation near 1: the choice of null does not change the ranking."""
    grouped = {key: by_set for key, by_set in _group_results(results).items()
               if MAIN in by_set and family(key[0]) != "control"}
    if len(grouped) < 3:
        return []
    present = [null for null in NULL_SETS if all(null in by_set for by_set in grouped.values())]
    units = [UnitArrays(by_set) for by_set in grouped.values()]
    reference = units[0]
    out = []
    for a_index, first in enumerate(present):
        for second in present[a_index + 1:]:
            def statistic(weights, a=first, b=second):
                x = [_excess(u, metric, a, weights) for u in units]
                y = [_excess(u, metric, b, weights) for u in units]
                if not (np.isfinite(x).all() and np.isfinite(y).all()):
                    return float("nan")
                return float(stats.spearmanr(x, y).statistic)
            interval = reference.interval(statistic, (MAIN, first, second), bounds=(-1.0, 1.0))
            out.append({"null": first, "other": second, "n_rows": len(units), **interval.as_dict("rank_correlation")})
    return out
