"""How well a proxy's variants stand in for independently retrained models (docs/methods.md §8).

The stability study's pairwise rows of three model sets on the same images: the retrained models
(the truth, K_true of them), one proxy's K′ variants of model 0, and a null family (random-label
networks). Per method × grouping:

* ``truth_agreement`` and ``proxy_agreement``: the mean between-model Spearman of each set, and
  each one's excess over the null's (``truth_beyond_null``, ``proxy_beyond_null``: agreement beyond
  the same null);
* ``difference``: proxy − truth (the null cancels: the two excesses differ by exactly this);
* ``rank_correlation``: Spearman's ρ across images between the proxy's per-image agreement and the
  truth's (does the proxy find the images whose maps retraining moves most?).

Every interval is the two-way design jackknife of :func:`stablesal.core.intervals.design_interval`
over the images and the models of every set the statistic reads.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ...core.intervals import Weights, design_interval, pair_mean, rows_to_pair_array

# |proxy − truth| within which a proxy's mean agreement counts as close (the target)
AGREEMENT_TOLERANCE = 0.05
RANK_TARGET = 0.7  # the per-image rank correlation a proxy should reach


def pair_arrays(units: list[dict], key: str = "spearman") -> dict[tuple[str, str, str], np.ndarray]:
    """``{(model set, method, grouping): values [n_images, K, K]}`` from the stability study's units
    (:func:`stablesal.studies.stability.run.run_study`); degenerate pairs are left out (NaN)."""
    out = {}
    for unit in units:
        rows = [row for row in unit["rows"] if not row.get("degenerate")]
        out[(unit["model_set"], unit["method"], unit["grouping"])] = rows_to_pair_array(
            rows, key, unit["n_images"], unit["n_models"])
    return out


def per_image_agreement(values: np.ndarray, weights: Weights, model_set: str) -> np.ndarray:
    """``[n]``: each image's weighted mean of ``values[n, K, K]`` over the pairs a < b."""
    count = values.shape[1]
    a, b = np.triu_indices(count, 1)
    pair_weights = weights.models[model_set][a] * weights.models[model_set][b]
    pairs = values[:, a, b]
    usable = np.isfinite(pairs)
    total = (np.where(usable, pairs, 0.0) * pair_weights).sum(1)
    mass = (usable * pair_weights).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / mass


def image_rank_correlation(first: np.ndarray, second: np.ndarray, weights: Weights, first_set: str,
                           second_set: str) -> float:
    """Spearman's ρ across the images with a positive weight between the per-image agreements of
    two sets (images where either is undefined left out)."""
    x = per_image_agreement(first, weights, first_set)
    y = per_image_agreement(second, weights, second_set)
    keep = (weights.images > 0) & np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return float("nan")
    return float(stats.spearmanr(x[keep], y[keep]).statistic)


def calibrate(arrays: dict, proxy: str, method: str, grouping: str, truth: str = "truth",
              null: str = "random_label") -> dict:
    """One proxy's calibration row for ``method`` × ``grouping`` (see the module docstring), each
    quantity with its 95 % design interval."""
    t, p, n = (arrays[(name, method, grouping)] for name in (truth, proxy, null))
    n_images = t.shape[0]
    counts = {truth: t.shape[1], proxy: p.shape[1], null: n.shape[1]}
    row = {"proxy": proxy, "method": method, "grouping": grouping, "n_images": n_images,
           "k_truth": counts[truth], "k_proxy": counts[proxy], "k_null": counts[null], "null": null}
    statistics = {
        "truth_agreement": (lambda w: pair_mean(t, w, truth), {truth: counts[truth]}, (-1, 1)),
        "proxy_agreement": (lambda w: pair_mean(p, w, proxy), {proxy: counts[proxy]}, (-1, 1)),
        "null_agreement": (lambda w: pair_mean(n, w, null), {null: counts[null]}, (-1, 1)),
        "truth_beyond_null": (lambda w: pair_mean(t, w, truth) - pair_mean(n, w, null),
                              {truth: counts[truth], null: counts[null]}, (-2, 2)),
        "proxy_beyond_null": (lambda w: pair_mean(p, w, proxy) - pair_mean(n, w, null),
                              {proxy: counts[proxy], null: counts[null]}, (-2, 2)),
        "difference": (lambda w: pair_mean(p, w, proxy) - pair_mean(t, w, truth),
                       {proxy: counts[proxy], truth: counts[truth]}, (-2, 2)),
        "rank_correlation": (lambda w: image_rank_correlation(p, t, w, proxy, truth),
                             {proxy: counts[proxy], truth: counts[truth]}, (-1, 1)),
    }
    for name, (statistic, sets, bounds) in statistics.items():
        row.update(design_interval(statistic, n_images, sets, bounds=bounds).as_dict(name))
    row["within_tolerance"] = bool(abs(row["difference"]) <= AGREEMENT_TOLERANCE)
    row["interval_within_tolerance"] = bool(-AGREEMENT_TOLERANCE <= row["difference_ci_low"]
                                            and row["difference_ci_high"] <= AGREEMENT_TOLERANCE)
    row["rank_target_met"] = bool(row["rank_correlation"] >= RANK_TARGET)
    return row


def calibration_rows(units: list[dict], proxies: list[str], truth: str = "truth",
                     null: str = "random_label") -> list[dict]:
    """Every proxy × method × grouping the units hold (:func:`calibrate`)."""
    arrays = pair_arrays(units)
    pairs = sorted({(method, grouping) for (name, method, grouping) in arrays if name == truth})
    return [calibrate(arrays, proxy, method, grouping, truth, null) for proxy in proxies
            for method, grouping in pairs if (proxy, method, grouping) in arrays and (null, method, grouping) in arrays]
