"""Statistics of the cross-seed stability study (docs/methods.md §3): every number of the report's
stability sections, computed from the rows that :func:`stablesal.stability.run_study` returns
(pairwise and per-image values, no model passes), with intervals from :mod:`stablesal.intervals`.

- :func:`summarise`: one row per model set × method × grouping (mean similarities, the test–retest
  ceiling and the corrected value, the untrained-network null, the variance decomposition,
  fidelity, localisation, sanity, the test-image MeGe/ReCo);
- :func:`grid_contrast_rows`, :func:`pixel_contrast_rows`: super-pixel − matched grid and
  grouped − pixel differences;
- :func:`variance_reduction_rows`: the variance reduction of grouping against its predictions.
"""

from __future__ import annotations

import math

import numpy as np

from ...core.intervals import (
    Weights, design_interval, image_mean, interval_note, model_mean, pair_mean, rows_to_model_array,
    rows_to_pair_array,
)
from ...metrics.agreement import mege, reco
from ...explain.explainers import family as registered_family
from ...core.settings import MAIN
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
                                 "pairwise means; main for *_retest and *_corrected; untrained for *_untrained; main "
                                 "and untrained for *_above_untrained; main and control for "
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
    design intervals. ``main`` rows add the test–retest ceiling, the similarity relative to it
    (Spearman's correction for attenuation), the untrained-network null and the difference above
    it, the variance decomposition, and model 0's fidelity, localisation and sanity."""
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
            if model_set == MAIN:
                row.update(_main_statistics(units))
            row["explain_seconds_per_model"] = result["explain_seconds_per_model"]
            summary.append(row)
    return summary


def _main_statistics(units: UnitArrays) -> dict:
    row = {}
    main = units.by_set[MAIN]
    row["retest_exact"] = not main["random"]
    row["n_control"], row["n_untrained"] = units.counts.get("control", 0), units.counts.get("untrained", 0)
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
    if "untrained" in units.by_set:
        for metric in pairwise_metrics():
            row.update(units.interval(lambda w, m=metric: pair_mean(units.pair("untrained", m), w, "untrained"),
                                      ("untrained",), bounds=metric_range(metric)).as_dict(f"{metric}_untrained"))
            row.update(units.interval(
                lambda w, m=metric: pair_mean(units.pair(MAIN, m), w, MAIN)
                - pair_mean(units.pair("untrained", m), w, "untrained"),
                (MAIN, "untrained"), bounds=difference_range(metric)).as_dict(f"{metric}_above_untrained"))
    if "control" in units.by_set:
        # main (splits and seeds differ) minus control (seeds only): what disjoint data adds
        row.update(units.interval(
            lambda w: pair_mean(units.pair(MAIN, "spearman"), w, MAIN)
            - pair_mean(units.pair("control", "spearman"), w, "control"),
            (MAIN, "control"), bounds=difference_range("spearman")).as_dict("spearman_main_minus_control"))
    sets = tuple(s for s in (MAIN, "control") if s in units.by_set)
    components = variance_components(units, Weights.ones(units.n_images, units.counts))
    for component in components:
        if component == "total":
            continue
        row.update(units.interval(lambda w, c=component: _share(units, c, w), sets).as_dict(f"share_{component}"))
    row.update(units.interval(lambda w: variance_components(units, w)["total"], sets).as_dict("variance_total"))
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
        row.update(a.interval(lambda w, m=metric: pair_mean(a.pair(MAIN, m), w, MAIN)
                              - pair_mean(b.pair(MAIN, m), w, MAIN), bounds=difference_range(metric))
                   .as_dict(f"{metric}_difference"))
    for metric in MODEL_0_METRICS[:5]:  # the sanity check is not compared across groupings
        if metric in first and metric in second:
            difference = a.image(metric) - b.image(metric)
            row.update(a.interval(lambda w, v=difference: image_mean(v, w), ())
                       .as_dict(f"{metric}_difference"))
    pixel = grouped.get((method, "pixel"), {}).get(MAIN)
    if pixel is not None and pixel["rows"] and all(f"residual_cross@{g}" in pixel["rows"][0]
                                                   for g in (grouping, reference)):
        units = UnitArrays({MAIN: pixel})
        resolved = signal_resolved(units)
        row.update(units.interval(lambda w: _bias(units, grouping, w) - _bias(units, reference, w) if resolved
                                  else float("nan")).as_dict("bias_difference"))
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
