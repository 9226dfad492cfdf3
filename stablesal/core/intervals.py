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
then each model of each set in turn (all images kept); the standard error is the root of the sum
of the factors' jackknife variances, and the half-width adds the factors' own Student-t
half-widths in quadrature (Banerjee, *Sankhyā* 1960),

    V = V_images + Σ_s V_models(s),   half = √(t²_{n−1} V_images + Σ_s t²_{K_s−1} V_models(s)),

t_ν the (1 + confidence)/2 quantile with ν degrees of freedom: each factor's variance is paid for
at its own degrees of freedom (n − 1 for the images, K_s − 1 for a set of K_s models), so that
with K = 3 or 4 models the model factor is not borrowed into the images' many degrees of freedom.
Banerjee's interval never covers less than nominal for a sum of independent normal means with
independent variance estimates, and it is never narrower than one t quantile on Satterthwaite's ν
(the interval of earlier versions; ``quantile="satterthwaite"`` still gives it): with
24 images at most 21 % wider with K = 4 models, 44 % with K = 3 and 7 % with K = 8, the most
where the two variances are equal. Satterthwaite's ν undercovers with few models because a model variance
estimated low also raises ν̂ and shrinks the quantile. Simulated over crossed image × model
studies (``analysis/coverage.py`` → ``experiments/results/coverage.json``: 24 images, K = 3, 4,
8, 16, 500 studies per cell), where models dominate, images dominate, both matter or the model
effect is heavy-tailed (t₃), this interval covered 0.942–0.988 (Satterthwaite's 0.938–0.976) and
was 5–16 % wider at K = 4 (at most 5 % from K = 8). Neither reaches 90 % when seeds train
badly now and then (15 % of them 10 σ below the rest): 0.89 / 0.84 / 0.79 at K = 3 / 4 / 8
(Satterthwaite's 0.80 / 0.79 / 0.78), because the studies that drew no bad seed (0.85^K of them)
cannot see one; every scenario reaches 90 % from K = 15. ``Interval.df`` is the equivalent
degrees of freedom: the ν with t_ν · √V = half, so a t test on (estimate, se, df) rejects at
1 − confidence exactly when the interval excludes the value.

It treats images and models as random draws (an *unconditional* interval: it covers what a new
set of test images *and* newly retrained models would give), in the spirit of the crossed
random-effects analysis of variance (Searle, Casella & McCulloch, *Variance Components*, 1992).
The delete-one-model jackknife of a pairwise mean is the jackknife of a U-statistic (Arvesen,
*Ann. Math. Stat.* 1969); summing the two factors counts the image × model interaction twice,
which errs on the wide side. ``conditional=True`` deletes images only: an interval for these
trained models (then the interval is Student's t with n − 1 degrees of freedom on the image
jackknife, as with no model set at all). A statistic with a bounded range (a mean correlation) is
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
from scipy import optimize, stats

CONFIDENCE = 0.95  # the level of every interval in the report

# The kinds of interval that results.json names (``results["intervals"]``), each once, in words a
# reader of the JSON alone can check against the code.
INTERVAL_KINDS = {
    "design-jackknife": "two-way delete-one jackknife (each image deleted in turn, then each model of each model "
                        "set the statistic reads); variance V = sum of the factors' jackknife variances; half-width = "
                        "sqrt(t_{n-1}^2 V_images + sum over sets of t_{K-1}^2 V_models), each factor's Student t "
                        "quantile (level (1 + confidence)/2) on its own degrees of freedom (n - 1 images, K - 1 "
                        "models of a set; Banerjee 1960), df reported = the nu with t_nu * sqrt(V) = half-width; a mean of a bounded metric (and a difference "
                        "of two) is jackknifed on Fisher's z of its value rescaled to [-1, 1] and transformed back "
                        "while it and every replicate lie 1 % of the range inside it, else on the raw scale clipped "
                        "to the range, so the interval stays in the range (stablesal.core.intervals.design_interval)",
    "t-over-units": "mean ± Student t quantile (n − 1 degrees of freedom) × SD / √n over n units treated as "
                    "independent; NaN units are dropped (stablesal.metrics.agreement.mean_ci)",
    "percentile-bootstrap": "percentile interval of the statistic over bootstrap resamples of images drawn with "
                            "replacement (stablesal.studies.factors.effects.bootstrap_weights)",
    "model-percentile-bootstrap": "percentile interval of the statistic over bootstrap resamples of models (the "
                                  "planner's pilot models and the null's) drawn with replacement; a resampled model "
                                  "is never paired with its own copies (stablesal.studies.consensus.planner)",
    "bias-corrected-bootstrap": "bias-corrected percentile interval (Efron 1981) over bootstrap resamples of images "
                                "drawn with replacement: the percentiles Φ(2 z0 ± z) of the replicates, z0 = Φ⁻¹(share "
                                "of replicates below the estimate), so an estimate whose resamples are biased (η² is "
                                "biased upwards by the images' noise) stays inside its interval "
                                "(stablesal.core.intervals.bias_corrected_quantiles)",
    "wilson": "Wilson score interval of a proportion (normal quantile); half-width stored "
              "(stablesal.studies.removal.fill_quality.wilson_half_width)",
}


# Coverage of the nominal 95 % design interval by simulation, per number of models K and scenario
# (analysis/coverage.py → experiments/results/coverage.json, 24 images, 500 studies per cell; a test
# keeps this table equal to that file). The report states the row of the run's K.
COVERAGE_BY_K = {
    3: {"models-dominate": 0.978, "balanced": 0.988, "bad-seed": 0.89, "heavy-tailed": 0.986, "images-dominate": 0.982},
    4: {"models-dominate": 0.964, "balanced": 0.984, "bad-seed": 0.842, "heavy-tailed": 0.978, "images-dominate": 0.958},
    8: {"models-dominate": 0.964, "balanced": 0.98, "bad-seed": 0.788, "heavy-tailed": 0.972, "images-dominate": 0.948},
    16: {"models-dominate": 0.974, "balanced": 0.95, "bad-seed": 0.902, "heavy-tailed": 0.958, "images-dominate": 0.942},
}
COVERAGE_TARGET = 0.9  # the coverage a scenario must keep for the report to call its intervals honest there


def coverage_note(k: int) -> str:
    """One sentence on how well the design interval covers with ``k`` models: the simulated coverage
    at the largest simulated K not above ``k`` (:data:`COVERAGE_BY_K`), naming the scenarios below
    :data:`COVERAGE_TARGET`."""
    simulated = [size for size in COVERAGE_BY_K if size <= k]
    if not simulated:
        return f"With {k} models the design interval's coverage was not simulated (it needs at least 3)."
    size = max(simulated)
    row = COVERAGE_BY_K[size]
    models = f"K = {k} models" if size == k else f"K = {k} models (simulated at K = {size})"
    low = {name: value for name, value in row.items() if value < COVERAGE_TARGET}
    good = [value for name, value in row.items() if name not in low]
    text = (f"With {models} the nominal 95 % intervals covered {min(good):.2f}–{max(good):.2f} in simulated "
            f"studies where model effects are normal or heavy-tailed and whichever of images or models dominates")
    if low:
        text += ("; " + ", ".join(f"{value:.2f} when {name.replace('-', ' ')}s make 15 % of the models"
                                  if name == "bad-seed" else f"{value:.2f} ({name})" for name, value in low.items())
                 + f", below {COVERAGE_TARGET * 100:.0f} %: a seed that trains differently now and then is not seen by a "
                 "study that did not draw one (every scenario reaches 90 % from K = 15)")
    return text + " (docs/methods.md §3, experiments/results/coverage.json)."


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


QUANTILES = ("banerjee", "satterthwaite")  # how design_interval turns the factors' variances into a half-width


def _equivalent_df(ratio: float, level: float, dfs: list[float]) -> float:
    """The ν in [min dfs, max dfs] with t_ν(level) = ``ratio`` (t's quantile falls as ν grows)."""
    low, high = min(dfs), max(dfs)
    quantile = lambda df: float(stats.t.ppf(level, df))  # noqa: E731
    if ratio >= quantile(low):
        return float(low)
    if ratio <= quantile(high):
        return float(high)
    return float(optimize.brentq(lambda df: quantile(df) - ratio, low, high, xtol=1e-10))


def design_interval(statistic: Callable[[Weights], float], n_images: int, model_counts: Mapping[str, int],
                    confidence: float = CONFIDENCE, conditional: bool = False,
                    bounds: tuple[float, float] | None = None, quantile: str = "banerjee") -> Interval:
    """The two-way (images × models of every set) delete-one jackknife interval of ``statistic``.

    ``statistic(weights)`` must return the statistic computed with those weights (see the
    module docstring); ``model_counts`` names the model sets it reads and their sizes. Sets with
    one model contribute no model variance (nothing to delete). ``conditional`` keeps the models
    fixed. Returns NaN bounds when a deletion leaves the statistic undefined (e.g. 2 models:
    deleting one leaves no pair).

    ``quantile``: "banerjee" (the default) adds each factor's t half-width in quadrature,
    half = √(Σ_f t²_{ν_f} V_f) with ν = n − 1 for the images and K_s − 1 for a model set, and
    reports as ``df`` the equivalent ν (t_ν √V = half, between the smallest and the largest ν_f);
    "satterthwaite" (the interval of earlier versions; it undercovers with 3 or 4 models, see the
    module docstring) uses one t quantile on ν = V² / Σ_f (V_f² / ν_f). With one factor (no model
    set, or ``conditional``) both are Student's t interval on n − 1 degrees of freedom.

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
    if quantile not in QUANTILES:
        raise ValueError(f"quantile must be one of {list(QUANTILES)}, got {quantile!r}")
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
    level = 0.5 + confidence / 2
    se = math.sqrt(total)
    if quantile == "satterthwaite":
        denominator = sum(v * v / df for v, df in variances)
        df = total * total / denominator if denominator > 0 else float(n_images - 1)
        half = float(stats.t.ppf(level, df)) * se
    else:
        half = math.sqrt(sum(float(stats.t.ppf(level, df)) ** 2 * v for v, df in variances))
        df = _equivalent_df(half / se, level, [df for _, df in variances]) if total > 0 else float(n_images - 1)
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


def bias_corrected_quantiles(replicates: np.ndarray, estimate: np.ndarray | float,
                             confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The bias-corrected percentile interval (Efron 1981) of ``estimate`` from bootstrap
    ``replicates`` ``[B, ...]`` (NaN replicates ignored): with z0 = Φ⁻¹(share of replicates below
    the estimate, ties counted half), the replicates' Φ(2 z0 − z) and Φ(2 z0 + z) quantiles, z the
    normal quantile of ``(1 + confidence) / 2``. With unbiased replicates (z0 = 0) it is the
    percentile interval; when the replicates sit above the estimate (a statistic biased upwards,
    like η²), the interval moves down with them instead of leaving the estimate below it. The share
    is kept within [1/(2B), 1 − 1/(2B)] so z0 stays finite. Returns ``(low, high)``, shaped like
    ``estimate``."""
    values = np.asarray(replicates, dtype=float)
    point = np.asarray(estimate, dtype=float)
    count = np.isfinite(values).sum(0)
    # a replicate within rounding of the estimate is a tie (a resample of the same images computed
    # in another order), counted half
    tied = np.isclose(values, point, rtol=1e-9, atol=1e-12)
    below = ((values < point) & ~tied).sum(0) + 0.5 * tied.sum(0)
    share = np.clip(below / np.maximum(count, 1), 0.5 / np.maximum(count, 1), 1 - 0.5 / np.maximum(count, 1))
    z0, z = stats.norm.ppf(share), stats.norm.ppf(0.5 + confidence / 2)
    lows, highs = stats.norm.cdf(2 * z0 - z), stats.norm.cdf(2 * z0 + z)
    flat, flat_low, flat_high = values.reshape(len(values), -1), np.ravel(lows), np.ravel(highs)
    low = np.array([np.nanquantile(flat[:, i], flat_low[i]) if count.flat[i] else np.nan for i in range(flat.shape[1])])
    high = np.array([np.nanquantile(flat[:, i], flat_high[i]) if count.flat[i] else np.nan for i in range(flat.shape[1])])
    return low.reshape(point.shape), high.reshape(point.shape)


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
