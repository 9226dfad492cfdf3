"""Coverage of the design interval of a mean pairwise similarity, by simulation.

    python analysis/coverage.py [--replicates 500] [--boot 200] [--sweep-replicates 2000]
        [--out experiments/results/coverage.json]

**The design simulated.** n = 24 test images (the default report's) × K models; the statistic is the study's: the mean
over images and model pairs a < b of a pairwise similarity (``pair_mean``), with the interval
on the Spearman range, ``bounds=(-1, 1)``, as ``stablesal.studies.stability`` asks for it.
A similarity is drawn from the crossed random-effects model

    s_iab = μ + v_i + m_a + m_b + w_ia + w_ib + e_iab          (a < b)

v_i ~ N(0, σ_v²) the image effect (some images give stable maps, some not), m_a the model (seed)
effect (a seed whose maps are off from everyone else's lowers every pair it is in), w_ia ~
N(0, σ_w²) the image × model interaction (seed a is off on image i) and e_iab ~ N(0, σ_e²) the
pair's own noise. It is the two-factor crossed model with a symmetric (pairwise) second factor —
the additive part of a Spearman of two noisy copies of one map, whose distortion is a sum of what
the image, each model and the model on that image contribute — and it is the model under which
the two-way jackknife is the right variance: the statistic is linear in every effect,

    θ̂ − θ = v̄ + 2(m̄ − E m) + 2 w̄ + ē,

so its variance is σ_v²/n + 4σ_m²/K + 4σ_w²/(nK) + σ_e²/(n K(K−1)/2). Single similarities are
not clipped to [−1, 1]: the scales keep almost all of them inside (the share outside is recorded
per scenario, ``outside_range``), clipping would make the truth non-additive, and the interval only
ever sees the *mean* (whose range the bound is). **The true value** is the expectation over new
images and new models, θ = μ + 2 E[m_a], computed analytically (every other effect has mean 0;
E[m] = −p Δ in the bad-seed mixture, 0 otherwise).

**Scenarios** (``SCENARIOS``; μ = 0.4, σ_w = σ_e = 0.05; standard deviations in Spearman units;
the shares of Var θ̂ at K = 4 are in the JSON):

1. ``models-dominate``: σ_m = 0.03, σ_v = 0.05 (the model term is 80 % of Var θ̂ at K = 4);
2. ``balanced``: σ_m = 0.02, σ_v = 0.15 (images 64 %, models 27 %);
3. ``bad-seed``: μ = 0.45, m_a ~ N(0, 0.02²) shifted by −Δ = −0.20 (10 σ_m) with probability
   0.15 — a seed that trained badly; θ = 0.39. A study of K models drew no bad seed with
   probability 0.85^K (0.52 at K = 4), and its estimate is then 2pΔ = 0.06 too high while its
   model spread looks small. Coverage is reported split by whether a bad seed was drawn, and
   ``bad_seed_shift`` in the JSON repeats K = 3, 4 for Δ from 0.06 to 0.30;
4. ``heavy-tailed``: m_a = 0.03 · t₃/√3 (Student t with 3 df, scaled to σ_m = 0.03);
5. ``images-dominate``: σ_v = 0.25, σ_m = 0.005 (images 95 %); about 1 % of single values fall
   outside [−1, 1] here, none elsewhere.

The average estimate over the replicates is recorded next to the truth (``mean_estimate``), a
Monte-Carlo check of the analytic value.

**Intervals measured** (``INTERVALS``), each from the same two-way delete-one jackknife (images,
then models; computed in closed form, ``jackknife_parts``; on Fisher's z of the mean with the
1 % margin rule of ``design_interval``):

* ``satterthwaite`` — the old ``design_interval``: t quantile on Satterthwaite's ν;
* ``model-df`` — t quantile on the model facet's K − 1 degrees of freedom;
* ``inflated-models`` — Satterthwaite, with the model variance multiplied by K/(K − 1) (ad hoc:
  for a statistic linear in the model effects the model jackknife variance is already unbiased);
* ``banerjee`` — the factors' t half-widths added in quadrature,
  half = √(t²_{n−1} V_images + t²_{K−1} V_models) (Banerjee, *Sankhyā* 22, 1960, for linear
  functions of means with unequal variances; never below nominal for normal means with independent
  variance estimates; never narrower than Satterthwaite's), now ``design_interval``'s default;
* ``bootstrap-t`` — the pigeonhole bootstrap (images and models resampled with replacement,
  Owen 2007) of the studentised mean, the studentising SE the two-way jackknife over the draws of
  each resample (``draw_jackknife``); resamples where a deletion leaves no model pair are dropped;
* ``trimmed`` — drop the model whose deletion moves the estimate most, then the old interval on
  the remaining K − 1 (a robust estimator; K ≥ 4). It estimates a trimmed mean, not θ, and
  covers θ worst exactly where a seed is off.

Every replicate draws from its own ``numpy.random.Generator`` seeded with
``(SEED, scenario number, K, replicate)``, so a replicate is the same whatever the number of
replicates; the bootstrap's draws are seeded the same way with one more key. Before the grid the
closed forms are checked against ``design_interval`` itself (``check_against_library``); the
``sweep`` (K = 3…16, 2 000 studies, the old and the new interval) finds the smallest K at which
every scenario covers ≥ 90 %. The jackknife intervals of the whole grid take a few seconds (the
simulation most of it); the bootstrap-t about a minute.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stablesal.core.intervals import CONFIDENCE, FISHER_MARGIN  # noqa: E402

SEED = 20240628
N_IMAGES = 24  # the default report's [gradient] n_images
DESIGNS = (3, 4, 8, 16)
BOUNDS = (-1.0, 1.0)
BAD_SHIFT = 0.2  # Δ = 10 σ_m: the old interval then covers 0.75–0.78 at K = 3–8, near the audit's 0.74–0.79
TARGET = 0.90  # the coverage every scenario should keep at K = 4
OUT = Path(__file__).resolve().parents[1] / "experiments" / "results" / "coverage.json"


@dataclass(frozen=True)
class Scenario:
    """One data-generating process (see the module docstring). ``model`` is "normal", "bad-seed"
    (N(0, sd_model²) shifted by −``shift`` with probability ``bad_share``) or "t3"
    (sd_model · t₃/√3)."""

    name: str
    mu: float
    sd_image: float
    sd_model: float
    sd_interaction: float
    sd_pair: float
    model: str = "normal"
    bad_share: float = 0.0
    shift: float = 0.0

    @property
    def truth(self) -> float:
        """θ = E s_iab over new images and new models = μ + 2 E[m] (analytic)."""
        mean_model = -self.bad_share * self.shift if self.model == "bad-seed" else 0.0
        return self.mu + 2 * mean_model

    def model_variance(self) -> float:
        """Var m_a (analytic): σ_m², plus p(1 − p)Δ² for the mixture; t₃ is scaled to σ_m²."""
        extra = self.bad_share * (1 - self.bad_share) * self.shift ** 2 if self.model == "bad-seed" else 0.0
        return self.sd_model ** 2 + extra

    def variance_shares(self, n_images: int, n_models: int) -> dict:
        """The terms of Var θ̂ (module docstring) as shares of it."""
        pairs = n_models * (n_models - 1) / 2
        terms = {"images": self.sd_image ** 2 / n_images, "models": 4 * self.model_variance() / n_models,
                 "interaction": 4 * self.sd_interaction ** 2 / (n_images * n_models),
                 "pairs": self.sd_pair ** 2 / (n_images * pairs)}
        total = sum(terms.values())
        return {key: value / total for key, value in terms.items()}


SCENARIOS = (
    Scenario("models-dominate", mu=0.4, sd_image=0.05, sd_model=0.03, sd_interaction=0.05, sd_pair=0.05),
    Scenario("balanced", mu=0.4, sd_image=0.15, sd_model=0.02, sd_interaction=0.05, sd_pair=0.05),
    Scenario("bad-seed", mu=0.45, sd_image=0.05, sd_model=0.02, sd_interaction=0.05, sd_pair=0.05,
             model="bad-seed", bad_share=0.15, shift=BAD_SHIFT),
    Scenario("heavy-tailed", mu=0.4, sd_image=0.05, sd_model=0.03, sd_interaction=0.05, sd_pair=0.05, model="t3"),
    Scenario("images-dominate", mu=0.4, sd_image=0.25, sd_model=0.005, sd_interaction=0.05, sd_pair=0.05))


def draw_models(scenario: Scenario, generator: np.random.Generator, size):
    """Model effects m_a, and which of them are bad seeds (all False outside the mixture)."""
    if scenario.model == "normal":
        return generator.normal(0.0, scenario.sd_model, size), np.zeros(size, dtype=bool)
    if scenario.model == "bad-seed":
        bad = generator.random(size) < scenario.bad_share
        return generator.normal(0.0, scenario.sd_model, size) - scenario.shift * bad, bad
    if scenario.model == "t3":
        return scenario.sd_model * generator.standard_t(3, size) / math.sqrt(3), np.zeros(size, dtype=bool)
    raise ValueError(f"unknown model distribution {scenario.model!r}")


def replicate_seed(scenario_index: int, n_models: int, replicate: int, *extra: int) -> list[int]:
    return [SEED, scenario_index, n_models, replicate, *extra]


def simulate(scenario: Scenario, n_images: int, n_models: int, replicate: int, scenario_index: int,
             with_models: bool = False):
    """One study: ``values[n, K, K]``, symmetric with s_iab = s_iba for a ≠ b and 0 on the diagonal
    (only a < b is a pair; the lower triangle mirrors it for the closed forms below); with
    ``with_models`` also which models are bad seeds ``[K]``."""
    generator = np.random.default_rng(replicate_seed(scenario_index, n_models, replicate))
    image = generator.normal(0.0, scenario.sd_image, n_images)
    model, bad = draw_models(scenario, generator, n_models)
    interaction = generator.normal(0.0, scenario.sd_interaction, (n_images, n_models))
    pair = generator.normal(0.0, scenario.sd_pair, (n_images, n_models, n_models))
    pair = np.triu(pair, 1)
    values = (scenario.mu + image[:, None, None] + model[None, :, None] + model[None, None, :]
              + interaction[:, :, None] + interaction[:, None, :] + pair + pair.transpose(0, 2, 1))
    values = values * (1 - np.eye(n_models))[None]
    return (values, bad) if with_models else values


def simulate_many(scenario: Scenario, n_images: int, n_models: int, replicates: int, scenario_index: int,
                  start: int = 0):
    """``values[R, n, K, K]`` and the bad-seed flags ``[R, K]`` for replicates ``start, …, start + R − 1``."""
    studies = [simulate(scenario, n_images, n_models, r, scenario_index, with_models=True)
               for r in range(start, start + replicates)]
    return np.stack([v for v, _ in studies]), np.stack([m for _, m in studies])


def jackknife_parts(values: np.ndarray, image_weights: np.ndarray | None = None,
                    model_weights: np.ndarray | None = None):
    """The weighted pair mean (``pair_mean`` with weights) of symmetric ``values[..., n, K, K]`` and
    its delete-one replicates, in closed form: returns ``(estimate[...], by_image[..., n],
    by_model[..., K])``. With P_i = Σ_{a<b} w_a w_b s_iab, Q_ic = Σ_b w_b s_icb and
    W = Σ_{a<b} w_a w_b: deleting image j gives (Σ w_i P_i − w_j P_j)/((Σ w_i − w_j) W), deleting
    model c gives Σ_i w_i (P_i − w_c Q_ic)/(Σ w_i (W − w_c (Σ w − w_c))). Weights default to 1
    (``design_interval``'s deletions); a unit of weight 0 has a replicate equal to the estimate
    (mask it out)."""
    n, k = values.shape[-3], values.shape[-1]
    lead = values.shape[:-3]
    wi = np.ones(lead + (n,)) if image_weights is None else image_weights
    wm = np.ones(lead + (k,)) if model_weights is None else model_weights
    q = np.einsum("...ikl,...l->...ik", values, wm)  # Q_ic
    p = 0.5 * np.einsum("...ik,...k->...i", q, wm)  # P_i
    total_i = wi.sum(-1)
    numerator = (wi * p).sum(-1)
    sum_m = wm.sum(-1)
    pairs = 0.5 * (sum_m ** 2 - np.square(wm).sum(-1))
    estimate = numerator / (total_i * pairs)
    with np.errstate(divide="ignore", invalid="ignore"):
        by_image = (numerator[..., None] - wi * p) / ((total_i[..., None] - wi) * pairs[..., None])
        by_model = ((numerator[..., None] - wm * np.einsum("...i,...ic->...c", wi, q))
                    / (total_i[..., None] * (pairs[..., None] - wm * (sum_m[..., None] - wm))))
    return estimate, by_image, by_model


def _fisher(values):
    low, high = BOUNDS
    return np.arctanh((2 * values - low - high) / (high - low))


def _from_fisher(z):
    low, high = BOUNDS
    return low + (high - low) * (np.tanh(z) + 1) / 2


def _jackknife_variance(replicates: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(m − 1)/m Σ (r − r̄)² over the last axis (over the ``mask``ed units only)."""
    if mask is None:
        mask = np.ones(replicates.shape, dtype=bool)
    count = mask.sum(-1)
    safe = np.where(mask, replicates, 0.0)
    mean = safe.sum(-1) / count
    squares = np.where(mask, np.square(replicates - mean[..., None]), 0.0).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (count - 1) / count * squares


def scale_choice(estimate, by_image, by_model):
    """``design_interval``'s rule: Fisher's z while the estimate and every replicate lie
    ``FISHER_MARGIN`` of the range inside it (True), else the raw scale, clipped (False)."""
    margin = FISHER_MARGIN * (BOUNDS[1] - BOUNDS[0])
    low, high = BOUNDS[0] + margin, BOUNDS[1] - margin
    inside = lambda v: (v >= low) & (v <= high)  # noqa: E731
    return inside(estimate) & inside(by_image).all(-1) & inside(by_model).all(-1)


def _finish(estimate, z_scale, half):
    """The ends from the half-width (on Fisher's z where ``z_scale``, else raw and clipped to the
    range), as ``design_interval`` forms them."""
    centre = _fisher(np.clip(estimate, -1 + 1e-12, 1 - 1e-12))
    low = np.where(z_scale, _from_fisher(centre - half), np.maximum(estimate - half, BOUNDS[0]))
    high = np.where(z_scale, _from_fisher(centre + half), np.minimum(estimate + half, BOUNDS[1]))
    return low, high


def _variances(by_image, by_model, z_scale, image_mask=None, model_mask=None):
    """(V_images, V_models) on the scale each replicate uses."""
    with np.errstate(invalid="ignore", divide="ignore"):
        zi, zm = _fisher(by_image), _fisher(by_model)
    vi = np.where(z_scale, _jackknife_variance(zi, image_mask), _jackknife_variance(by_image, image_mask))
    vm = np.where(z_scale, _jackknife_variance(zm, model_mask), _jackknife_variance(by_model, model_mask))
    return vi, vm


def quantile_intervals(estimate, by_image, by_model, kind: str, confidence: float = CONFIDENCE,
                       image_mask=None, model_mask=None):
    """Intervals of the jackknife family for every replicate: ``kind`` one of "satterthwaite",
    "model-df", "inflated-models", "banerjee". The masks restrict the jackknife to the units kept
    (the trimmed estimator). Returns (low, high)."""
    z_scale = scale_choice(estimate, np.where(image_mask, by_image, 0.0) if image_mask is not None else by_image,
                           np.where(model_mask, by_model, 0.0) if model_mask is not None else by_model)
    vi, vm = _variances(by_image, by_model, z_scale, image_mask, model_mask)
    n = by_image.shape[-1] if image_mask is None else image_mask.sum(-1)
    k = by_model.shape[-1] if model_mask is None else model_mask.sum(-1)
    level = 0.5 + confidence / 2
    if kind == "inflated-models":
        vm = vm * k / (k - 1)
    if kind in ("satterthwaite", "inflated-models"):
        total = vi + vm
        df = total ** 2 / (vi ** 2 / (n - 1) + vm ** 2 / (k - 1))
        half = stats.t.ppf(level, df) * np.sqrt(total)
    elif kind == "model-df":
        half = stats.t.ppf(level, k - 1) * np.sqrt(vi + vm)
    elif kind == "banerjee":
        half = np.sqrt(stats.t.ppf(level, n - 1) ** 2 * vi + stats.t.ppf(level, k - 1) ** 2 * vm)
    else:
        raise ValueError(f"unknown interval {kind!r}")
    return _finish(estimate, z_scale, half)


def trimmed_intervals(values, estimate, by_image, by_model, confidence: float = CONFIDENCE):
    """Drop, in each study, the model whose deletion moves the estimate most; the pair mean of the
    other K − 1 with the old (Satterthwaite) interval. Needs K ≥ 4."""
    k = values.shape[-1]
    if k < 4:
        nan = np.full(estimate.shape, np.nan)
        return nan, nan, nan
    drop = np.abs(by_model - estimate[..., None]).argmax(-1)
    weights = np.ones(by_model.shape)
    np.put_along_axis(weights, drop[..., None], 0.0, -1)
    trimmed, trimmed_image, trimmed_model = jackknife_parts(values, model_weights=weights)
    low, high = quantile_intervals(trimmed, trimmed_image, trimmed_model, "satterthwaite", confidence,
                                   model_mask=weights > 0)
    return trimmed, low, high


def draw_jackknife(values: np.ndarray, image_weights: np.ndarray, model_weights: np.ndarray):
    """The two-way jackknife *over draws* of a resample with multiplicities ``image_weights[B, n]``
    and ``model_weights[B, K]``: delete one copy of a drawn image (weight w_j → w_j − 1) or model,
    so that the resample is studentised as a sample of n images and K models, as the original is
    (deleting every copy of a unit would count a unit drawn twice as one with twice the spread and
    overstate the SE by about √2). With P, Q, W as in :func:`jackknife_parts`: one copy of image j
    out gives (Σ w_i P_i − P_j)/((Σ w_i − 1) W), one copy of model c out
    Σ_i w_i (P_i − Q_ic)/(Σ w_i (W − Σ w + w_c)). Returns (estimate[B], by_image[B, n],
    by_model[B, K]) on the raw scale (a unit not drawn has a meaningless entry: weight it 0);
    :func:`_draw_variance` turns them into (N − 1)/N Σ_j w_j (r_j − r̄)² over the N draws."""
    wi, wm = image_weights, model_weights
    q = np.einsum("ikl,bl->bik", values, wm)
    p = 0.5 * np.einsum("bik,bk->bi", q, wm)
    total_i = wi.sum(-1)
    numerator = (wi * p).sum(-1)
    sum_m = wm.sum(-1)
    pairs = 0.5 * (sum_m ** 2 - np.square(wm).sum(-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = numerator / (total_i * pairs)
        by_image = (numerator[:, None] - p) / ((total_i[:, None] - 1) * pairs[:, None])
        by_model = ((numerator[:, None] - np.einsum("bi,bic->bc", wi, q))
                    / (total_i[:, None] * (pairs[:, None] - sum_m[:, None] + wm)))
    return estimate, by_image, by_model


def _draw_variance(replicates: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(N − 1)/N Σ_j w_j (r_j − r̄)², r̄ the w-weighted mean, N = Σ w (units of weight 0 ignored)."""
    total = weights.sum(-1)
    safe = np.where(weights > 0, replicates, 0.0)
    mean = (weights * safe).sum(-1) / total
    return (total - 1) / total * (weights * np.square(safe - mean[..., None])).sum(-1)


def bootstrap_t_interval(values: np.ndarray, n_boot: int, seed: list[int], confidence: float = CONFIDENCE):
    """One study's pigeonhole bootstrap-t interval (module docstring): resample images and models
    with replacement, studentise each resample's mean by its own two-way jackknife over draws
    (:func:`draw_jackknife`), on the scale ``design_interval`` would use, and read the interval off
    the quantiles of the studentised resamples. Resamples whose statistic or SE is undefined or 0
    (too few distinct models) are dropped. Returns (low, high, share of resamples kept)."""
    n, k = values.shape[0], values.shape[-1]
    estimate, by_image, by_model = jackknife_parts(values)
    z_scale = bool(scale_choice(estimate, by_image, by_model))
    vi, vm = _variances(by_image, by_model, z_scale)
    transform = _fisher if z_scale else (lambda v: v)
    centre, se = transform(estimate), math.sqrt(vi + vm)
    generator = np.random.default_rng(seed)
    wi = np.stack([np.bincount(generator.integers(0, n, n), minlength=n) for _ in range(n_boot)]).astype(float)
    wm = np.stack([np.bincount(generator.integers(0, k, k), minlength=k) for _ in range(n_boot)]).astype(float)
    star, star_image, star_model = draw_jackknife(values, wi, wm)
    with np.errstate(invalid="ignore", divide="ignore"):
        s_image = np.where(wi > 0, transform(np.clip(star_image, -1 + 1e-12, 1 - 1e-12)), 0.0)
        s_model = np.where(wm > 0, transform(np.clip(star_model, -1 + 1e-12, 1 - 1e-12)), 0.0)
        v_star = _draw_variance(s_image, wi) + _draw_variance(s_model, wm)
        t_star = (transform(np.clip(star, -1 + 1e-12, 1 - 1e-12)) - centre) / np.sqrt(v_star)
    usable = np.isfinite(t_star) & (v_star > 0)
    if usable.sum() < 10 or not math.isfinite(se):
        return float("nan"), float("nan"), float(usable.mean())
    upper, lower = np.quantile(t_star[usable], [0.5 + confidence / 2, 0.5 - confidence / 2])
    low, high = centre - upper * se, centre - lower * se
    if z_scale:
        return float(_from_fisher(low)), float(_from_fisher(high)), float(usable.mean())
    return max(float(low), BOUNDS[0]), min(float(high), BOUNDS[1]), float(usable.mean())


QUANTILE_KINDS = ("satterthwaite", "model-df", "inflated-models", "banerjee")
INTERVALS = QUANTILE_KINDS + ("bootstrap-t", "trimmed")


def cell(scenario_index: int, n_models: int, replicates: int, n_boot: int = 200, n_images: int = N_IMAGES,
         kinds=INTERVALS, confidence: float = CONFIDENCE, scenario: Scenario | None = None) -> dict:
    """Coverage of the truth and mean width of each interval in ``kinds`` over ``replicates``
    simulated studies of one scenario × K (``SCENARIOS[scenario_index]``, or ``scenario`` drawn
    with that index's seeds). Also the share of single similarities outside [−1, 1] and the
    seconds it took."""
    scenario = SCENARIOS[scenario_index] if scenario is None else scenario
    started = time.perf_counter()
    values, bad = simulate_many(scenario, n_images, n_models, replicates, scenario_index)
    estimate, by_image, by_model = jackknife_parts(values)
    seconds = {"simulation_and_jackknife": time.perf_counter() - started}
    truth = scenario.truth
    ends = {}
    for kind in kinds:
        kind_started = time.perf_counter()
        if kind in QUANTILE_KINDS:
            ends[kind] = quantile_intervals(estimate, by_image, by_model, kind, confidence)
        elif kind == "trimmed":
            ends[kind] = trimmed_intervals(values, estimate, by_image, by_model, confidence)[1:]
        elif kind == "bootstrap-t":
            rows = [bootstrap_t_interval(values[r], n_boot, replicate_seed(scenario_index, n_models, r, 1), confidence)
                    for r in range(replicates)]
            ends[kind] = (np.array([row[0] for row in rows]), np.array([row[1] for row in rows]))
        else:
            raise ValueError(f"unknown interval {kind!r}")
        seconds[kind] = time.perf_counter() - kind_started
    a, b = np.triu_indices(n_models, 1)
    out = {"scenario": scenario.name, "K": n_models, "n_images": n_images, "replicates": replicates,
           "truth": truth, "mean_estimate": float(estimate.mean()),
           "outside_range": float((np.abs(values[:, :, a, b]) > 1).mean()), "intervals": {}}
    for kind, (low, high) in ends.items():
        defined = np.isfinite(low) & np.isfinite(high)
        if not defined.any():
            out["intervals"][kind] = None
            continue
        covered = (low <= truth) & (truth <= high)
        out["intervals"][kind] = {"coverage": float(covered[defined].mean()), "covered": int(covered[defined].sum()),
                                  "defined": int(defined.sum()), "mean_width": float((high - low)[defined].mean()),
                                  "median_width": float(np.median((high - low)[defined]))}
        if scenario.model == "bad-seed":
            none = ~bad.any(-1)
            out["intervals"][kind]["coverage_no_bad_seed_drawn"] = float(covered[defined & none].mean())
            out["intervals"][kind]["coverage_bad_seed_drawn"] = float(covered[defined & ~none].mean())
    if scenario.model == "bad-seed":
        out["share_no_bad_seed_drawn"] = float((~bad.any(-1)).mean())
    out["seconds"] = round(time.perf_counter() - started, 3)
    out["seconds_by_part"] = {key: round(value, 4) for key, value in seconds.items()}
    return out


def grid(replicates: int = 500, n_boot: int = 200, designs=DESIGNS, kinds=INTERVALS, log=print) -> list[dict]:
    cells = []
    for index, scenario in enumerate(SCENARIOS):
        for k in designs:
            result = cell(index, k, replicates, n_boot, kinds=kinds)
            cells.append(result)
            log(f"{scenario.name:16s} K={k:2d} " + "  ".join(
                f"{kind} {v['coverage']:.3f}/{v['mean_width']:.3f}" if v else f"{kind} –"
                for kind, v in result["intervals"].items()) + f"  ({result['seconds']:.1f} s)")
    return cells


def smallest_k(cells: list[dict], kind: str, target: float = TARGET) -> int | None:
    """The smallest K of ``cells`` from which on (that K and every larger one measured) every
    scenario's coverage is ≥ ``target`` (point estimates)."""
    designs = sorted({c["K"] for c in cells})
    ok = {k: all(c["intervals"].get(kind) and c["intervals"][kind]["coverage"] >= target
                 for c in cells if c["K"] == k) for k in designs}
    for index, k in enumerate(designs):
        if all(ok[later] for later in designs[index:]):
            return k
    return None


def check_against_library(studies: int = 3, designs=(3, 4), quantiles=("banerjee", "satterthwaite")) -> int:
    """The closed forms here against ``stablesal.core.intervals.design_interval`` itself (the
    statistic ``pair_mean`` with ``bounds=(-1, 1)``) on a few studies of every scenario: raises if
    an end differs; returns the number of intervals compared."""
    from stablesal.core.intervals import design_interval, pair_mean

    compared = 0
    for index, scenario in enumerate(SCENARIOS):
        for k in designs:
            values, _ = simulate_many(scenario, N_IMAGES, k, studies, index)
            estimate, by_image, by_model = jackknife_parts(values)
            for quantile in quantiles:
                low, high = quantile_intervals(estimate, by_image, by_model, quantile)
                for r in range(studies):
                    study = values[r]
                    interval = design_interval(lambda w: pair_mean(study, w, "main"), N_IMAGES, {"main": k},
                                               bounds=BOUNDS, quantile=quantile)
                    if not np.allclose([interval.estimate, interval.low, interval.high], [estimate[r], low[r], high[r]],
                                       rtol=0, atol=1e-10):
                        raise AssertionError(f"{scenario.name} K={k} {quantile} study {r}: {interval} vs "
                                             f"{estimate[r]}, [{low[r]}, {high[r]}]")
                    compared += 1
    return compared


def write_json(payload: dict, path: Path) -> None:
    """Atomically: a temporary name in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(temporary, path)


SWEEP = tuple(range(3, 17))  # the K of the sweep that finds the smallest K reaching the target
SHIFTS = (0.06, 0.08, 0.10, 0.12, 0.14, 0.16, 0.20, 0.30)  # Δ of the bad-seed sensitivity rows


def bad_seed_shift(replicates: int, shifts=SHIFTS, designs=(3, 4),
                   kinds=("satterthwaite", "banerjee", "model-df")) -> list[dict]:
    """Coverage and mean width in the bad-seed scenario with the bad seeds ``Δ`` below the others,
    for each Δ of ``shifts`` and K of ``designs`` (the same seeds as the grid's scenario 3)."""
    index = next(i for i, s in enumerate(SCENARIOS) if s.model == "bad-seed")
    rows = []
    for shift in shifts:
        for k in designs:
            result = cell(index, k, replicates, kinds=kinds, scenario=replace(SCENARIOS[index], shift=shift))
            rows.append({"shift": shift, "K": k, "truth": result["truth"],
                         "share_no_bad_seed_drawn": result["share_no_bad_seed_drawn"],
                         **{kind: {"coverage": v["coverage"], "mean_width": v["mean_width"]}
                            for kind, v in result["intervals"].items()}})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=500)
    parser.add_argument("--boot", type=int, default=200, help="bootstrap-t resamples per study")
    parser.add_argument("--sweep-replicates", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    compared = check_against_library()
    print(f"closed forms agree with design_interval on {compared} intervals")
    cells = grid(args.replicates, args.boot)
    grid_seconds = time.perf_counter() - started
    sweep = [cell(index, k, args.sweep_replicates, kinds=("satterthwaite", "banerjee"))
             for index in range(len(SCENARIOS)) for k in SWEEP]
    shifts = bad_seed_shift(args.sweep_replicates)
    seconds = time.perf_counter() - started
    smallest = {kind: smallest_k(cells, kind) for kind in INTERVALS}
    smallest_sweep = {kind: smallest_k(sweep, kind) for kind in ("satterthwaite", "banerjee")}
    payload = {
        "what": "coverage of 95 % intervals of a mean pairwise similarity (" + str(N_IMAGES) + " images x K models) by simulation; "
                "analysis/coverage.py; module docstring there for the model and the intervals",
        "model": "s_iab = mu + v_i + m_a + m_b + w_ia + w_ib + e_iab; truth = mu + 2 E[m] (analytic)",
        "seed": SEED, "replicates": args.replicates, "bootstrap_resamples": args.boot, "confidence": CONFIDENCE,
        "bounds": list(BOUNDS), "target": TARGET, "n_images": N_IMAGES,
        "binomial_sd_at_0.95": math.sqrt(0.95 * 0.05 / args.replicates),
        "scenarios": [{**asdict(s), "truth": s.truth, "variance_shares_K4": s.variance_shares(N_IMAGES, 4)}
                      for s in SCENARIOS],
        "intervals": list(INTERVALS),
        "design_interval": "banerjee (stablesal.core.intervals.design_interval's default quantile); "
                           "satterthwaite = quantile='satterthwaite', the interval of earlier versions",
        "library_check": f"closed forms equal design_interval on {compared} intervals",
        "smallest_K_all_scenarios_at_target": smallest,
        "cells": cells,
        "sweep": {"K": list(SWEEP), "replicates": args.sweep_replicates,
                  "smallest_K_all_scenarios_at_target": smallest_sweep,
                  "coverage": {kind: {s.name: {str(c["K"]): c["intervals"][kind]["coverage"] for c in sweep
                                               if c["scenario"] == s.name} for s in SCENARIOS}
                               for kind in ("satterthwaite", "banerjee")},
                  "mean_width": {kind: {s.name: {str(c["K"]): c["intervals"][kind]["mean_width"] for c in sweep
                                                 if c["scenario"] == s.name} for s in SCENARIOS}
                                 for kind in ("satterthwaite", "banerjee")}},
        "bad_seed_shift": {"replicates": args.sweep_replicates, "K": [3, 4], "rows": shifts},
        "seconds": {"grid": round(grid_seconds, 1), "total": round(seconds, 1)},
    }
    write_json(payload, args.out)
    print(f"smallest K with every scenario >= {TARGET}: grid {smallest}, sweep {smallest_sweep}")
    print(f"wrote {args.out} (grid {grid_seconds:.0f} s, total {seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
