"""Agreement across models and metrics: MeGe and ReCo (Fel et al., WACV 2022), Kendall τ between
metric rankings, and the t interval of a mean.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.stats import kendalltau

from .registry import register_metric


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------

def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and a t-based confidence interval ``(mean, low, high)``, ignoring NaN."""
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(array.mean())
    if array.size < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, array.size - 1) * array.std(ddof=1) / math.sqrt(array.size))
    return mean, mean - half, mean + half


# --------------------------------------------------------------------------------------
# MeGe and ReCo (Fel, Vigouroux, Cadène & Serre, WACV 2022)
# --------------------------------------------------------------------------------------

@register_metric("mege", higher_is_better=True, low=0.0, high=1.0,
                 description="1 / (1 + mean distance between explanations of models that are both right)",
                 kind="models")
def mege(same_distances) -> float:
    """MeGe = 1 / (1 + mean S=), S= the distances for pairs where both models are right."""
    values = np.asarray(same_distances, float)
    return float(1.0 / (1.0 + values.mean())) if values.size else float("nan")


@register_metric("reco", higher_is_better=True, low=0.0, high=1.0,
                 description="max over thresholds of TPR + TNR − 1 separating S= from S≠", kind="models")
def reco(same_distances, different_distances) -> float:
    """ReCo = max_γ TPR_γ + TNR_γ − 1, where distances ≤ γ are predicted 'same correctness'."""
    same, different = np.asarray(same_distances, float), np.asarray(different_distances, float)
    if same.size == 0 or different.size == 0:
        return float("nan")
    best = 0.0
    for gamma in np.unique(np.concatenate([same, different])):
        best = max(best, float((same <= gamma).mean() + (different > gamma).mean() - 1))
    return best




def kendall_tau_matrix(scores: dict[str, dict[str, float]], higher_is_better: dict[str, bool]) -> list[dict]:
    """Kendall τ between the rankings of the same methods by every pair of metrics.

    ``scores``: metric → {method: score}; rankings put the best method first by each metric's
    direction. Rows ``{metric_a, metric_b, tau, p_value, n_methods}``.
    """
    names = list(scores)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            methods = sorted(set(scores[a]) & set(scores[b]))
            if len(methods) < 3:
                continue
            sign_a = 1 if higher_is_better[a] else -1
            sign_b = 1 if higher_is_better[b] else -1
            result = kendalltau([sign_a * scores[a][m] for m in methods], [sign_b * scores[b][m] for m in methods])
            rows.append({"metric_a": a, "metric_b": b, "tau": float(result.statistic), "p_value": float(result.pvalue),
                         "n_methods": len(methods)})
    return rows
