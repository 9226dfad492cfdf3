"""Confidence intervals that respect the design of a cross-seed study (docs/methods.md §3, "Intervals").

In a stability study every model pair shares its models with other pairs and every image is in
every pair, so the rows ``(image, model a, model b)`` are far from independent. A statistic of
the study (a mean similarity, a ratio of two means, a difference between model sets, a variance
share) is written here as a function of *weights*: one weight per image and one per model of
each model set. Every weighted mean below takes them:

* ``pair_mean(values[n, K, K], w, set)``: Σ_i Σ_{a<b} w_i w_a w_b v_iab / Σ w_i w_a w_b;
* ``model_mean(values[n, K], w, set)``: per-model values (a test–retest pair of one model);
* ``image_mean(values[n], w)``.

The interval is the two-way delete-one jackknife: delete each image in turn (all models kept),
then each model of each set in turn (all images kept); the variance is the sum of the factors'
jackknife variances, and the quantile is Student's t with Satterthwaite's degrees of freedom

    V = V_images + Σ_s V_models(s),   ν = V² / (V_images²/(n − 1) + Σ_s V_models(s)²/(K_s − 1)).

It treats images and models as random draws (an *unconditional* interval: it covers what a new
set of test images *and* newly retrained models would give), in the spirit of the crossed
random-effects analysis of variance (Searle, Casella & McCulloch, *Variance Components*, 1992).
The delete-one-model jackknife of a pairwise mean is the jackknife of a U-statistic (Arvesen,
*Ann. Math. Stat.* 1969); summing the two factors counts the image × model interaction twice,
which errs on the wide side. With few models (K = 4) the model factor has 3 degrees of freedom
and Satterthwaite's ν keeps the t quantile honest. ``conditional=True`` deletes images only: an
interval for these trained models. A statistic with a bounded range (a mean correlation) is
jackknifed on Fisher's z scale and transformed back (``bounds=``), or, next to a bound, on the raw
scale and clipped, so its interval cannot leave the range when models are few.

The pigeonhole bootstrap (Owen, *Ann. Appl. Stat.* 2007: resample images and models
independently, with replacement) is here too, for comparison. With K = 4 models its percentile
interval is too narrow (the resampled models repeat, and the spread across 4 models is
underestimated by (K − 1)/K); ``tests/test_intervals.py`` measures both by simulation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Mapping

import numpy as np
from scipy import stats

CONFIDENCE = 0.95  # the level of every interval in the report

# The kinds of interval that results.json names (``results["intervals"]``), each once, in words a
# reader of the JSON alone can check against the code.
INTERVAL_KINDS = {
    "design-jackknife": "two-way delete-one jackknife (each image deleted in turn, then each model of each model "
                        "set the statistic reads); variance = sum of the factors' jackknife variances; Student t "
                        "quantile with Satterthwaite's degrees of freedom; a mean of a bounded metric (and a difference "
                        "of two) is jackknifed on Fisher's z of its value rescaled to [-1, 1] and transformed back "
                        "while it and every replicate lie 1 % of the range inside it, else on the raw scale clipped "
                        "to the range, so the interval stays in the range (stablesal.core.intervals.design_interval)",
    "t-over-units": "mean ± Student t quantile (n − 1 degrees of freedom) × SD / √n over n units treated as "
                    "independent; NaN units are dropped (stablesal.metrics.agreement.mean_ci)",
    "percentile-bootstrap": "percentile interval of the statistic over bootstrap resamples of images drawn with "
                            "replacement (stablesal.studies.factors.effects.bootstrap_weights)",
    "wilson": "Wilson score interval of a proportion (normal quantile); half-width stored "
              "(stablesal.studies.removal.fill_quality.wilson_half_width)",
}


def interval_note(kind: str, sampled: list[str], fixed: list[str] = (), columns: str = "<name>_ci_low / "
                  "<name>_ci_high", level: float = CONFIDENCE, **extra) -> dict:
    """How one section of ``results.json`` computed its intervals: the ``kind`` (a key of
    :data:`INTERVAL_KINDS`) and its description, the ``level``, what the interval treats as
    ``sampled`` (its width covers a new draw of these) and what it holds ``fixed`` (conditional on
    them), and which ``columns`` hold the bounds; ``extra`` adds the kind's settings (resamples, seed)."""
    if kind not in INTERVAL_KINDS:
        raise ValueError(f"kind must be one of {sorted(INTERVAL_KINDS)}, got {kind!r}")
    return {"kind": kind, "method": INTERVAL_KINDS[kind], "level": level, "sampled": list(sampled),
            "fixed": list(fixed), "columns": columns, **extra}


@dataclass
class Weights:
    """One weight per image ``[n]`` and one per model of each model set ``{set: [K]}``."""

    images: np.ndarray
    models: dict

    @classmethod
    def ones(cls, n_images: int, model_counts: Mapping[str, int]) -> "Weights":
        return cls(np.ones(n_images), {name: np.ones(count) for name, count in model_counts.items()})

    def without_image(self, index: int) -> "Weights":
        images = self.images.copy()
        images[index] = 0.0
        return Weights(images, self.models)

    def without_model(self, model_set: str, index: int) -> "Weights":
        models = dict(self.models)
        models[model_set] = models[model_set].copy()
        models[model_set][index] = 0.0
        return Weights(self.images, models)


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """Σ w v / Σ w over the finite entries of ``values`` (NaN entries carry no weight)."""
    finite = np.isfinite(values)
    weights = np.where(finite, weights, 0.0)
    total = weights.sum()
    if total <= 0:
        return float("nan")
    return float((np.where(finite, values, 0.0) * weights).sum() / total)


def pair_mean(values: np.ndarray, weights: Weights, model_set: str) -> float:
    """Weighted mean of a pairwise quantity ``values[n, K, K]`` over images and unordered model
    pairs a < b (only the upper triangle is read)."""
    values = np.asarray(values, dtype=float)
    count = values.shape[1]
    a, b = np.triu_indices(count, 1)
    model_weights = weights.models[model_set]
    pair_weights = model_weights[a] * model_weights[b]
    return _weighted_mean(values[:, a, b], weights.images[:, None] * pair_weights[None, :])


def model_mean(values: np.ndarray, weights: Weights, model_set: str) -> float:
    """Weighted mean of a per-model quantity ``values[n, K]`` over images and models."""
    values = np.asarray(values, dtype=float)
    return _weighted_mean(values, weights.images[:, None] * weights.models[model_set][None, :])


def image_mean(values: np.ndarray, weights: Weights) -> float:
    """Weighted mean of a per-image quantity ``values[n]``."""
    return _weighted_mean(np.asarray(values, dtype=float), weights.images)


@dataclass
class Interval:
    """A point estimate with its interval: ``low``/``high`` at ``confidence``, the standard error
    ``se`` and the degrees of freedom ``df`` of the t quantile (NaN where not estimable). ``method``
    says how: "jackknife", "jackknife-z" (on Fisher's z: ``se`` is on that scale) or
    "jackknife-clipped" (raw scale, clipped to the statistic's range); see :func:`design_interval`."""

    estimate: float
    low: float
    high: float
    se: float
    df: float
    confidence: float = CONFIDENCE
    method: str = "jackknife"

    def as_dict(self, prefix: str) -> dict:
        """``{prefix: estimate, prefix_ci_low: low, prefix_ci_high: high}``."""
        return {prefix: self.estimate, f"{prefix}_ci_low": self.low, f"{prefix}_ci_high": self.high}

    def to_dict(self) -> dict:
        return asdict(self)


def _jackknife_variance(replicates: list[float]) -> float:
    values = np.asarray(replicates, dtype=float)
    if values.size < 2 or not np.isfinite(values).all():
        return float("nan")
    return float((values.size - 1) / values.size * np.square(values - values.mean()).sum())


def to_fisher_z(value: float, bounds: tuple[float, float]) -> float:
    """Fisher's z of ``value`` rescaled from ``bounds`` to [−1, 1]: atanh((2v − lo − hi)/(hi − lo)).
    A value on a bound is moved 1e-12 inside it (its z is then large but finite)."""
    low, high = bounds
    scaled = (2 * value - low - high) / (high - low)
    return math.atanh(min(max(scaled, -1 + 1e-12), 1 - 1e-12))


def from_fisher_z(z: float, bounds: tuple[float, float]) -> float:
    """The inverse of :func:`to_fisher_z`: a value inside ``bounds``."""
    low, high = bounds
    return low + (high - low) * (math.tanh(z) + 1) / 2


# The Fisher-z scale is used only while the estimate and every jackknife replicate lie at least
# this share of the range inside it: near a bound z runs off to infinity, and one replicate on the
# bound (a top-k overlap of exactly 1 on all images but one) would stretch the interval over the
# whole range. There the interval is computed on the raw scale and clipped to the range.
FISHER_MARGIN = 0.01


def design_interval(statistic: Callable[[Weights], float], n_images: int, model_counts: Mapping[str, int],
                    confidence: float = CONFIDENCE, conditional: bool = False,
                    bounds: tuple[float, float] | None = None) -> Interval:
    """The two-way (images × models of every set) delete-one jackknife interval of ``statistic``.

    ``statistic(weights)`` must return the statistic computed with those weights (see the
    module docstring); ``model_counts`` names the model sets it reads and their sizes. Sets with
    one model contribute no model variance (nothing to delete). ``conditional`` keeps the models
    fixed. Returns NaN bounds when a deletion leaves the statistic undefined (e.g. 2 models:
    deleting one leaves no pair).

    ``bounds = (lo, hi)``: the statistic's range (a mean correlation: (−1, 1); a difference of two:
    (−2, 2)); the interval then stays inside it (a t interval on the raw scale leaves it with few
    models: 0.09 [−1.08, 1.26]). The jackknife runs on Fisher's z of the statistic rescaled to
    [−1, 1] (:func:`to_fisher_z`) and the ends are transformed back (``method`` "jackknife-z", ``se``
    on the z scale) while the estimate and every replicate lie :data:`FISHER_MARGIN` of the range
    inside it; otherwise on the raw scale, clipped to the range (``method`` "jackknife-clipped").
    The estimate itself is never transformed.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if n_images < 2:
        raise ValueError(f"an interval needs at least 2 images, got n_images={n_images}")
    if bounds is not None and not bounds[0] < bounds[1]:
        raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")
    full = Weights.ones(n_images, model_counts)
    estimate = float(statistic(full))
    factors = [([float(statistic(full.without_image(i))) for i in range(n_images)], n_images - 1)]
    if not conditional:
        for name, count in model_counts.items():
            if count >= 2:
                factors.append(([float(statistic(full.without_model(name, a))) for a in range(count)], count - 1))
    scale, method = (lambda value: value), "jackknife"
    if bounds is not None:
        margin = FISHER_MARGIN * (bounds[1] - bounds[0])
        values = [estimate] + [v for replicates, _ in factors for v in replicates]
        if all(bounds[0] + margin <= v <= bounds[1] - margin for v in values):
            scale, method = (lambda value: to_fisher_z(value, bounds)), "jackknife-z"
        else:
            method = "jackknife-clipped"
    variances = [(_jackknife_variance([scale(v) if math.isfinite(v) else v for v in replicates]), df)
                 for replicates, df in factors]
    total = sum(v for v, _ in variances)
    if not math.isfinite(estimate) or not math.isfinite(total):
        return Interval(estimate, float("nan"), float("nan"), float("nan"), float("nan"), confidence, method)
    denominator = sum(v * v / df for v, df in variances)
    df = total * total / denominator if denominator > 0 else float(n_images - 1)
    se = math.sqrt(total)
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    if method == "jackknife-z":
        centre = scale(estimate)
        low, high = from_fisher_z(centre - half, bounds), from_fisher_z(centre + half, bounds)
    else:
        low, high = estimate - half, estimate + half
        if bounds is not None:
            low, high = max(low, bounds[0]), min(high, bounds[1])
    return Interval(estimate, low, high, se, df, confidence, method)


def bootstrap_interval(statistic: Callable[[Weights], float], n_images: int, model_counts: Mapping[str, int],
                       n_boot: int = 1000, seed: int = 0, confidence: float = 0.95) -> Interval:
    """The pigeonhole bootstrap (Owen 2007): images and each set's models resampled independently
    with replacement (multiplicity = weight); percentile interval. Kept for comparison: it is
    too narrow with few models (see the module docstring)."""
    generator = np.random.default_rng(seed)
    estimate = float(statistic(Weights.ones(n_images, model_counts)))
    replicates = []
    for _ in range(n_boot):
        images = np.bincount(generator.integers(0, n_images, n_images), minlength=n_images).astype(float)
        models = {name: np.bincount(generator.integers(0, count, count), minlength=count).astype(float)
                  for name, count in model_counts.items()}
        replicates.append(statistic(Weights(images, models)))
    values = np.asarray(replicates, dtype=float)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return Interval(estimate, float("nan"), float("nan"), float("nan"), float("nan"), confidence, "bootstrap")
    low, high = np.quantile(values, [0.5 - confidence / 2, 0.5 + confidence / 2])
    return Interval(estimate, float(low), float(high), float(values.std(ddof=1)), float("nan"), confidence,
                    "bootstrap")


def rows_to_pair_array(rows: list[dict], key: str, n_images: int, n_models: int) -> np.ndarray:
    """``values[n, K, K]`` (upper triangle filled, NaN elsewhere) from rows with ``image``,
    ``model_a`` < ``model_b`` and ``key``."""
    out = np.full((n_images, n_models, n_models), np.nan)
    for row in rows:
        value = row.get(key)
        if value is not None:
            out[row["image"], row["model_a"], row["model_b"]] = value
    return out


def rows_to_model_array(rows: list[dict], key: str, n_images: int, n_models: int) -> np.ndarray:
    """``values[n, K]`` from rows with ``image``, ``model`` and ``key``."""
    out = np.full((n_images, n_models), np.nan)
    for row in rows:
        value = row.get(key)
        if value is not None:
            out[row["image"], row["model"]] = value
    return out
