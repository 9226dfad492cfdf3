"""MeGe and ReCo by the protocol of Fel, Vigouroux, Cadène & Serre (*How Good is your Explanation?
Algorithmic Stability Measures to Assess the Quality of Explanations for Deep Neural Networks*,
WACV 2022; docs/methods.md §3.6).

The training pool is cut into K folds and model i trains on every fold but fold i
(``train_seeds(vary="leave-fold-out")``). For a pair of models (i, j) only samples of fold i or
fold j are used: exactly one model of the pair trained on each of them. On those samples the
distance between the two models' explanations, d = √(1 − |ρ|) with ρ Spearman's rank correlation
of the grey maps, is collected into S= when both models are right and into S≠ when exactly one
is. MeGe = 1 / (1 + mean S=) and ReCo = max_γ TPR_γ + TNR_γ − 1 (distances ≤ γ called "same
correctness"). The |ρ| makes a map and its negative (or an anti-correlated map) count as
identical, as in Fel et al.; it matters for signed maps only (grey maps are magnitudes).

The test-image variant (every model pair on held-out test images that no model trained on; the
rows of the main stability study) is reported apart as ``mege_test``/``reco_test``.

MeGe gets a design interval (two-way jackknife over samples and fold models,
:mod:`stablesal.intervals`); ReCo, a maximum over thresholds, is not smooth enough for the
jackknife and is reported without one, with the sizes of S= and S≠.

Beside MeGe stand its ceiling and its null. The ceiling (``mege_retest``) is MeGe computed on
the test–retest distances: each fold model's map against a second run of the same explainer
with another seed, on the samples that model gets right; 1 exactly for deterministic explainers.
A random explainer is not expected to score above it (two models add their differences to the
explainer's noise), so ``mege_below_retest`` (ceiling − MeGe, with its interval) is the part of
the instability that retraining adds to the explainer's own noise. The ceiling averages over all
of a model's right samples, trained-on and held-out alike, while S= holds only pairs where one
model trained on the sample: it assumes the explainer's noise is the same on both kinds (on the
default report, restricting the ceiling to the S= cells moves it by at most 0.006). The null is
the i.i.d. random map on the same samples and models (``mege_above_random``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...explain.explainers import is_control
from ...core.intervals import (
    Weights, design_interval, interval_note, model_mean, pair_mean, rows_to_model_array, rows_to_pair_array,
)
from ...metrics.agreement import reco
from ...models.training import PARTS_SEED, split_indices

# results.json "intervals": MeGe's design interval treats the samples and the fold models as drawn
FOLD_INTERVALS = interval_note("design-jackknife", sampled=["samples of the fold pool", "fold models"],
                               columns="mege*_ci_low / _ci_high (ReCo has none: a maximum over thresholds)",
                               reference="docs/methods.md §3.6")

FOLD_SET = "fold"


def fold_samples(n_train: int, folds: int, per_fold: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_fold`` training indices drawn (without replacement, seeded) from each of the ``folds``
    folds of :func:`stablesal.seeds.split_indices`: indices ``[folds·per_fold]`` and the fold of
    each ``[folds·per_fold]``."""
    if per_fold < 1:
        raise ValueError(f"per_fold must be a positive integer, got {per_fold!r}")
    parts = split_indices(n_train, folds, seed=PARTS_SEED)
    if per_fold > min(len(p) for p in parts):
        raise ValueError(f"per_fold={per_fold} exceeds the smallest fold ({min(len(p) for p in parts)} images)")
    generator = torch.Generator().manual_seed(seed)
    chosen = [part[torch.randperm(len(part), generator=generator)[:per_fold]].sort().values for part in parts]
    fold_of = torch.cat([torch.full((per_fold,), index) for index in range(folds)])
    return torch.cat(chosen), fold_of


def eligible(fold_of: np.ndarray, held_out: list[int]) -> np.ndarray:
    """``[n, K, K]``: sample n is in the fold that model a or model b held out (so exactly one of the
    pair trained on it)."""
    fold_of = np.asarray(fold_of)[:, None, None]
    held = np.asarray(held_out)
    return (fold_of == held[None, :, None]) | (fold_of == held[None, None, :])


def fold_distance_arrays(rows: list[dict], fold_of, held_out: list[int], n_models: int) -> tuple[np.ndarray, np.ndarray]:
    """The S= and S≠ distances as ``[n, K, K]`` arrays (NaN where a pair does not contribute)."""
    n = len(fold_of)
    rho = rows_to_pair_array(rows, "spearman", n, n_models)
    a_right = rows_to_pair_array(rows, "a_correct", n, n_models)
    b_right = rows_to_pair_array(rows, "b_correct", n, n_models)
    distance = np.sqrt(np.clip(1 - np.abs(rho), 0, None))
    usable = eligible(fold_of, held_out) & np.isfinite(distance)
    both = (a_right == 1) & (b_right == 1)
    one = (a_right + b_right) == 1
    same = np.where(usable & both, distance, np.nan)
    different = np.where(usable & one, distance, np.nan)
    return same, different


def retest_distances(result: dict, n_samples: int) -> np.ndarray | None:
    """``[n, K]``: √(1 − |ρ|) between each fold model's map and its second run with another
    explainer seed, on the samples the model gets right (NaN elsewhere); ``None`` when the unit has
    no test–retest rows."""
    if not result.get("retest_rows"):
        return None
    count = result["n_models"]
    rho = rows_to_model_array(result["retest_rows"], "spearman", n_samples, count)
    right = rows_to_model_array(result["retest_rows"], "correct", n_samples, count) == 1
    return np.where(right, np.sqrt(np.clip(1 - np.abs(rho), 0, None)), np.nan)


def fold_summary(result: dict, fold_of, held_out: list[int]) -> dict:
    """MeGe (with its design interval), its test–retest ceiling, ReCo and the sizes of S= and S≠
    for one method × grouping of the fold models (``result``: a unit of
    :func:`stablesal.stability.run_study`)."""
    same, different = fold_distance_arrays(result["rows"], fold_of, held_out, result["n_models"])
    return _summary(result, same, different)


def _mege_of(same: np.ndarray, weights: Weights) -> float:
    """1 / (1 + weighted mean of the S= distances ``[n, K, K]``); NaN when no distance has weight
    (the mean is then NaN, and distances lie in [0, 1], so it is never infinite)."""
    return 1.0 / (1.0 + pair_mean(same, weights, FOLD_SET))


def _retest_mege_of(retest: np.ndarray, weights: Weights) -> float:
    """1 / (1 + weighted mean of the test–retest distances ``[n, K]``); NaN when none has weight."""
    return 1.0 / (1.0 + model_mean(retest, weights, FOLD_SET))


def _nan_interval(prefix: str) -> dict:
    return {prefix: math.nan, f"{prefix}_ci_low": math.nan, f"{prefix}_ci_high": math.nan}


def _summary(result: dict, same: np.ndarray, different: np.ndarray) -> dict:
    count, n = result["n_models"], same.shape[0]
    same_values, different_values = same[np.isfinite(same)], different[np.isfinite(different)]
    out = {"method": result["method"], "grouping": result["grouping"], "n_same": int(same_values.size),
           "n_different": int(different_values.size)}
    if same_values.size:
        out.update(design_interval(lambda w: _mege_of(same, w), n, {FOLD_SET: count}).as_dict("mege"))
    else:
        out.update(_nan_interval("mege"))
    out.update(_ceiling(result, same, n, count))
    out["reco"] = reco(same_values.tolist(), different_values.tolist())  # NaN when either set is empty
    return out


def _ceiling(result: dict, same: np.ndarray, n: int, count: int) -> dict:
    """``mege_retest`` and ``mege_below_retest`` (ceiling − MeGe), with design intervals; for a
    deterministic explainer 1 and 1 − MeGe (whose interval is 1 minus MeGe's); NaN for a random
    explainer without test–retest rows."""
    if not result.get("random", True):
        mege = design_interval(lambda w: _mege_of(same, w), n, {FOLD_SET: count})
        return {"mege_retest": 1.0, "mege_retest_ci_low": 1.0, "mege_retest_ci_high": 1.0,
                "mege_below_retest": 1.0 - mege.estimate, "mege_below_retest_ci_low": 1.0 - mege.high,
                "mege_below_retest_ci_high": 1.0 - mege.low}
    retest = retest_distances(result, n)
    if retest is None or not np.isfinite(retest).any():
        return {**_nan_interval("mege_retest"), **_nan_interval("mege_below_retest")}

    def gap(weights: Weights) -> float:
        return _retest_mege_of(retest, weights) - _mege_of(same, weights)

    return {**design_interval(lambda w: _retest_mege_of(retest, w), n, {FOLD_SET: count}).as_dict("mege_retest"),
            **design_interval(gap, n, {FOLD_SET: count}).as_dict("mege_below_retest")}


def fold_rows(results: list[dict], fold_of, held_out: list[int]) -> list[dict]:
    """:func:`fold_summary` for every unit of a fold study; where the i.i.d. random map ran under
    the same grouping, also ``mege_above_random``: the difference with the null's MeGe on the same
    samples and models, with its design interval."""
    arrays = [fold_distance_arrays(r["rows"], fold_of, held_out, r["n_models"]) for r in results]
    rows = [_summary(result, *pair) for result, pair in zip(results, arrays)]
    nulls = {r["grouping"]: same for r, (same, _) in zip(results, arrays) if is_control(r)}
    for row, result, (same, _) in zip(rows, results, arrays):
        same_null = nulls.get(result["grouping"])
        if same_null is None or is_control(result):
            continue

        def difference(weights: Weights, same=same, same_null=same_null) -> float:
            return _mege_of(same, weights) - _mege_of(same_null, weights)

        row.update(design_interval(difference, len(fold_of), {FOLD_SET: result["n_models"]})
                   .as_dict("mege_above_random"))
    return rows
