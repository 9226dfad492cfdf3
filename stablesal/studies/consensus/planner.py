"""How many retrained models and explainer samples a reliable mean map needs (docs/methods.md §7.3).

Model of a map (each model's grey map, centred over its pixels so that an offset is no signal):
``g_{k,r}(x) = μ(x) + m_k(x) + s_{k,r}(x)``, with μ the mean over infinitely many models, m_k the
deviation of retrained model k (variance σ²_m(x)), and s_{k,r} the Monte Carlo noise of explainer
run r on model k (variance σ²_s(x), which falls as 1 / n with n samples).

**What is predicted.** The mean of K′ models explained with n samples each *correlates* with μ,
over the pixels of an image, as

    ρ(K′, n) = sqrt( V_μ / (V_μ + (E_m + E_s · n₀ / n) / K′) ),

the Spearman–Brown formula of classical test theory (Spearman 1910; Brown 1910) with the two
noise sources kept apart; V_μ is the spatial variance of μ, E_m and E_s are σ²_m and σ²_s(n₀)
averaged over pixels. ρ is a *correlation* (the correlation of the K′-model mean map with the
infinite-model mean map); its square ρ² = V_μ / (V_μ + noise / K′) is the *reliability* of the
K′-model mean in the ICC sense (ICC(C,K′): the share of the mean map's spatial variance that is the
infinite-model map's). ``target`` (0.9 by default) is a value of ρ, so ρ² = 0.81: every sentence and
recommendation names both.

**Estimates.** A pilot of K ≥ 3 models with two explainer runs each (one for deterministic methods,
where E_s = 0) estimates the three terms per image:

* E_s from the repeats: the mean over models and pixels of (g_{k,1} − g_{k,2})² / 2;
* E_m + E_s from the unbiased variance across models of the first runs, minus E_s;
* V_μ from the spatial variance of the pilot mean, minus its noise (E_m + E_s) / K.

**Beyond the null** (docs/methods.md §7.3). Maps of networks that
learned nothing about the classes (a null family: random-label, BN-calibrated or untrained networks)
share structure too (edges, architecture), and V_μ counts it. Given the maps of L ≥ 3 null models
(the consensus explains them anyway), the plan is for the part of μ that the null's mean map μ₀
does not explain: per image, the spatial variance of the residual of μ regressed on μ₀ over pixels,

    V_μ,beyond = V_μ − C² / V_μ₀,       C = cov_x(μ, μ₀),

estimated with V_μ and V_μ₀ noise-corrected as above (V_μ₀ from the null's first runs, its noise
their variance across null models / L) and C by the mean over pixels of the product of the two
centred pilot means (unbiased: the two sets' noises are independent); the amount removed is capped
at the observed mean map's own mean square. Then

    ρ_beyond(K′, n) = sqrt( V_μ,beyond / (V_μ,beyond + (E_m + E_s · n₀ / n) / K′) )

is the correlation of the K′-model mean map with the infinite-model mean map, both with the null's
mean map partialled out (the noise that lies along μ₀, one direction of H·W, is neglected).
Partialling out was chosen over the difference V_μ − V_μ₀: the difference is the variance of no map,
it changes with the scale of either set's maps (grey maps are rescaled per map, so a set with more
concentrated maps has another V_μ for the same pattern) and it counts a trained mean map equal to
twice the null's as 3 V_μ₀ "beyond the null" although it adds no spatial pattern; the residual
variance is invariant to the null map's scale and is never above V_μ.

**Interval.** The pilot is bootstrapped over models: ``resamples`` (1000) draws of K pilot models
with replacement (and, with a null, of its L models with replacement), seeded explicitly, each
giving the three terms (from per-image Gram matrices of the kept maps, so a resample costs no pass
over pixels) and its recommended model count; the 2.5 and 97.5 % percentiles are the 95 % interval.
With 3 pilot models a ninth of the resamples repeat one model and see no model-to-model variance,
so the interval's lower end is then 1: it is honest about what 3 models can say.

**Refusal.** When the shared component is not above the null (with no null: not above the noise),
i.e. the 95 % bootstrap interval of the image-mean V_μ,beyond (unclamped) reaches 0 or the point
estimate is not positive, no plan is given: the sentence says so in one line.

The prediction is averaged over images. It is validated against held-out models: two disjoint
groups of K′ models give mean maps whose correlation estimates ρ(K′, n₀)², so the observed
correlation with the infinite-model map is its square root (:func:`observed_reliability`; with the
null's mean map partialled out from both group means for ρ_beyond).

Accumulation: per image, running sums ``[N, H, W]`` over models for the point estimates; the pilot's
centred maps (a few models) are kept for the bootstrap's Gram matrices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ...metrics.similarity import grey_maps
from ...core.intervals import interval_note
from ...core.seeding import derive
from ...core.settings import ConsensusSettings, StudySettings
from ..stability.run import explain_groupings, method_is_random

MAX_MODELS = 10_000
MAX_SAMPLES = 1_000_000
_SETTINGS = ConsensusSettings()  # the planner's defaults are [consensus] target and max_samples, written once there
RESAMPLES = _SETTINGS.planner_resamples  # bootstrap resamples of the pilot models (the interval on the recommended count)
QUANTITY = "correlation of the K′-model mean map with the infinite-model mean map"
# results.json "intervals": the planner's bootstrap over models (consensus.units.plan and
# consensus.units.recommendation)
PLAN_INTERVALS = interval_note(
    "model-percentile-bootstrap", sampled=["pilot models", "reference (null) models"],
    fixed=["the images", "the explainer draws"],
    columns="models_low / models_high (recommended model count), shared_low / shared_high (shared component)",
    resamples=RESAMPLES, caveat="the resamples draw models with replacement, not images: each set's models are "
                                "resampled separately (stablesal.studies.consensus.planner.bootstrap_plan)")


def centred(grey: torch.Tensor) -> torch.Tensor:
    """Grey maps ``[N, H, W]`` minus each map's mean over pixels (float64)."""
    grey = grey.double()
    return grey - grey.flatten(1).mean(1).view(-1, 1, 1)


@dataclass
class PilotAccumulator:
    """Running sums over pilot models for one method × grouping (all ``[N, H, W]`` float64), and
    the models' centred first runs (``[N, H·W]`` each) and repeat terms for the bootstrap."""

    n_models: int = 0
    mean: torch.Tensor | None = None        # running mean of the first runs
    m2: torch.Tensor | None = None          # running sum of squared deviations (Welford)
    repeat_sq: torch.Tensor | None = None   # sum over models of (g1 − g2)² / 2
    repeats: int = 0
    kept: list = field(default_factory=list, repr=False)          # centred first runs [N, H·W]
    repeat_terms: list = field(default_factory=list, repr=False)  # per model: [N] or None

    def add(self, first: torch.Tensor, second: torch.Tensor | None = None) -> None:
        """One model's maps: its first run and, for random explainers, a second run."""
        first = centred(first)
        self.n_models += 1
        if self.mean is None:
            self.mean, self.m2 = first.clone(), torch.zeros_like(first)
            self.repeat_sq = torch.zeros_like(first)
        else:
            delta = first - self.mean
            self.mean += delta / self.n_models
            self.m2 += delta * (first - self.mean)
        self.kept.append(first.flatten(1))
        if second is not None:
            term = (first - centred(second)).square() / 2
            self.repeat_sq += term
            self.repeats += 1
            self.repeat_terms.append(term.flatten(1).mean(1).numpy())
        else:
            self.repeat_terms.append(None)

    def components(self) -> dict:
        """Per image ``[N]``: V_μ, E_m and E_s (the variance terms of the module docstring)."""
        if self.n_models < 3:
            raise ValueError(f"a pilot needs at least 3 models, got {self.n_models}")
        between = (self.m2 / (self.n_models - 1)).flatten(1).mean(1)           # E_m + E_s
        explainer = (self.repeat_sq / max(self.repeats, 1)).flatten(1).mean(1) if self.repeats else torch.zeros_like(between)
        spatial = self.mean.square().flatten(1).mean(1) - between / self.n_models
        return {"V_mu": spatial.clamp(min=0).numpy(), "E_m": (between - explainer).clamp(min=0).numpy(),
                "E_s": explainer.numpy()}

    def stacked(self) -> torch.Tensor:
        """The kept centred first runs ``[K, N, H·W]``."""
        return torch.stack(self.kept)


def gram_statistics(pilot: PilotAccumulator, null: PilotAccumulator | None = None) -> dict:
    """What the bootstrap needs, per image: the pilot's Gram matrix ``G [N, K, K]`` (mean over
    pixels of g_k·g_l, centred maps), its repeat terms ``r [N, K]`` with ``has_repeat [K]``, and
    with ``null`` (L ≥ 3 models) the null's Gram ``H [N, L, L]`` and the cross products
    ``X [N, K, L]``."""
    maps = pilot.stacked()
    pixels = maps.shape[-1]
    out = {"G": torch.einsum("knp,lnp->nkl", maps, maps).numpy() / pixels,
           "r": np.stack([np.zeros(maps.shape[1]) if term is None else term for term in pilot.repeat_terms], 1),
           "has_repeat": np.array([term is not None for term in pilot.repeat_terms])}
    if null is not None and null.n_models >= 3:
        reference = null.stacked()
        out["H"] = torch.einsum("knp,lnp->nkl", reference, reference).numpy() / pixels
        out["X"] = torch.einsum("knp,lnp->nkl", maps, reference).numpy() / pixels
    return out


def _set_terms(gram: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For resampling weights ``[B, K]`` (how often each model is drawn) and a Gram ``[N, K, K]``,
    each ``[B, N]``: the mean square S of the weighted mean map, the between-model variance and V_μ.

    V_μ = S − between / K is, rewritten, the mean of the off-diagonal Gram entries (products of
    *distinct* models), and between = mean diagonal − that; in a resample a drawn model's products
    with its own copies are left out of the off-diagonal mean (they are signal plus its noise, not
    signal), which keeps the bootstrap centred on the estimate instead of above it by the noise / K.
    NaN where a resample holds fewer than two distinct models."""
    k = gram.shape[-1]
    square = np.einsum("bk,nkl,bl->bn", weights, gram, weights) / k ** 2
    diagonal = weights @ np.diagonal(gram, axis1=1, axis2=2).T                  # Σ w_k G_kk
    pairs = weights.sum(1) ** 2 - (weights ** 2).sum(1)                          # Σ_{k≠l} w_k w_l
    cross = np.einsum("bk,nkl,bl->bn", weights, gram, weights) - (weights ** 2) @ np.diagonal(
        gram, axis1=1, axis2=2).T
    with np.errstate(divide="ignore", invalid="ignore"):
        spatial = np.where(pairs[:, None] > 0, cross / pairs[:, None], np.nan)
    return square, diagonal / weights.sum(1)[:, None] - spatial, spatial


def resampled_components(stats: dict, weights: np.ndarray, null_weights: np.ndarray | None = None) -> dict:
    """The variance terms ``[B, N]`` for each row of resampling weights (all ones: the point
    estimate): ``V_mu`` (unclamped), ``E_m``, ``E_s`` and, with a null, ``V_mu_null``, ``C`` and
    ``V_mu_beyond`` (unclamped; module docstring). NaN rows: fewer than two distinct models."""
    square, between, spatial = _set_terms(stats["G"], weights)
    has = stats["has_repeat"].astype(float)
    if has.any():
        counted = weights @ has
        explainer = (weights * has) @ stats["r"].T / np.where(counted > 0, counted, 1.0)[:, None]
    else:
        explainer = np.zeros_like(between)
    out = {"V_mu": spatial, "E_m": np.clip(between - explainer, 0, None), "E_s": explainer}
    if "H" in stats and null_weights is not None:
        _, _, null_spatial = _set_terms(stats["H"], null_weights)
        cross = np.einsum("bk,nkl,bl->bn", weights, stats["X"], null_weights) / (
            weights.sum(1) * null_weights.sum(1))[:, None]
        out.update(V_mu_null=null_spatial, C=cross,
                   V_mu_beyond=beyond_null_variance(spatial, null_spatial, cross, square))
    return out


def beyond_null_variance(v_mu, v_mu_null, covariance, mean_square=None):
    """V_μ,beyond = V_μ − C² / V_μ₀ (0 removed where V_μ₀ ≤ 0; the removed amount capped at
    ``mean_square``, the observed mean map's mean square, when given): the spatial variance of the
    residual of μ regressed on the null's mean map μ₀ over an image's pixels."""
    v_mu, v_mu_null, covariance = (np.asarray(a, dtype=float) for a in (v_mu, v_mu_null, covariance))
    with np.errstate(divide="ignore", invalid="ignore"):
        removed = np.where(v_mu_null > 0, covariance ** 2 / v_mu_null, np.where(np.isnan(v_mu_null), np.nan, 0.0))
    if mean_square is not None:
        removed = np.minimum(removed, mean_square)
    return v_mu - removed


def predicted_reliability(components: dict, n_models: int | np.ndarray, n_samples: float | None = None,
                          pilot_samples: float | None = None) -> float:
    """ρ(K′, n), the correlation of the K′-model mean map with the infinite-model mean map,
    averaged over images (NaN-free: an image with no signal counts as 0). Its square is the
    reliability (ICC-type) of the module docstring."""
    scale = 1.0 if n_samples is None or pilot_samples is None else pilot_samples / n_samples
    noise = components["E_m"] + components["E_s"] * scale
    signal = components["V_mu"]
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.sqrt(np.where(signal > 0, signal / (signal + noise / n_models), 0.0))
    return float(np.mean(rho))


def models_needed_many(signal: np.ndarray, noise: np.ndarray, target: float) -> np.ndarray:
    """For each row of ``signal`` and ``noise`` ``[B, N]`` (V_μ and E_m + E_s·scale per image): the
    fewest models whose mean map reaches ρ ≥ ``target`` (averaged over images, as
    :func:`predicted_reliability`), by bisection in parallel; MAX_MODELS + 1 where even MAX_MODELS
    does not."""
    signal, noise = np.atleast_2d(signal), np.atleast_2d(noise)

    def rho(models: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.sqrt(np.where(signal > 0, signal / (signal + noise / models[:, None]), 0.0))
        return value.mean(1)

    rows = signal.shape[0]
    reachable = rho(np.full(rows, MAX_MODELS)) >= target
    low, high = np.ones(rows, dtype=np.int64), np.full(rows, MAX_MODELS, dtype=np.int64)
    while np.any(low < high):
        middle = (low + high) // 2
        reaches = rho(middle) >= target
        high = np.where(reaches, middle, high)
        low = np.where(reaches, low, middle + 1)
    return np.where(reachable, low, MAX_MODELS + 1)


def bootstrap_plan(stats: dict, target: float, scale: float = 1.0, resamples: int = RESAMPLES, seed: int = 0,
                   beyond: bool | None = None) -> dict:
    """The pilot bootstrapped over models (module docstring): ``resamples`` draws of the K pilot
    models (and L null models) with replacement from ``seed``; for each, the planned terms and the
    fewest models reaching ρ ≥ ``target`` at the sample scale n₀/n = ``scale``. Returns the 95 %
    percentile intervals of the recommended model count (``models_high`` None: beyond MAX_MODELS)
    and of the image-mean shared component V (beyond the null when it is given, unclamped)."""
    if not isinstance(resamples, int) or resamples < 2:
        raise ValueError(f"resamples must be an integer of at least 2, got {resamples!r}")
    beyond = "H" in stats if beyond is None else beyond
    rng = np.random.default_rng(derive(seed, "planner-bootstrap"))
    k = stats["G"].shape[-1]
    weights = rng.multinomial(k, np.full(k, 1.0 / k), size=resamples).astype(float)
    null_weights = None
    if beyond:
        n_null = stats["H"].shape[-1]
        null_weights = rng.multinomial(n_null, np.full(n_null, 1.0 / n_null), size=resamples).astype(float)
    terms = resampled_components(stats, weights, null_weights)
    shared = terms["V_mu_beyond"] if beyond else terms["V_mu"]
    usable = np.isfinite(shared).all(1)  # resamples with two distinct models or more in each set
    if usable.sum() < 2:
        raise ValueError("the bootstrap needs resamples with at least two distinct models in each set")
    shared = shared[usable]
    noise = (terms["E_m"] + terms["E_s"] * scale)[usable]
    counts = models_needed_many(np.clip(shared, 0, None), noise, target)
    values = shared.mean(1)
    low, high = (int(np.quantile(counts, 0.025, method="lower")), int(np.quantile(counts, 0.975, method="higher")))
    return {"resamples": resamples, "used": int(usable.sum()), "seed": seed, "confidence": 0.95,
            "models_low": None if low > MAX_MODELS else low, "models_high": None if high > MAX_MODELS else high,
            "shared_low": float(np.quantile(values, 0.025)), "shared_high": float(np.quantile(values, 0.975))}


@dataclass
class Plan:
    """A pilot's predictions for one method × grouping.

    ``components``: the pilot's terms per image (V_μ of the trained maps, E_m, E_s). With a null
    (``null``: its set name), ``beyond`` holds the same terms with V_μ replaced by V_μ,beyond
    (clamped at 0 per image), and the plan, its interval and its sentence are for that part.
    ``shared``: the image-mean shared component (V_μ,beyond, or V_μ without a null; unclamped);
    ``interval``: :func:`bootstrap_plan`'s result; ``refusal``: why no plan is given, or None."""

    method: str
    grouping: str
    random: bool
    pilot_models: int
    pilot_samples: int | None
    components: dict = field(repr=False)
    null: str | None = None
    null_models: int = 0
    beyond: dict | None = field(default=None, repr=False)
    shared: float | None = None
    interval: dict | None = None
    refusal: str | None = None

    def planned(self, part: str = "planned") -> dict:
        """The terms planned for: ``"planned"`` (beyond the null when one is given), ``"raw"``
        (the trained maps' V_μ) or ``"beyond"``."""
        if part not in ("planned", "raw", "beyond"):
            raise ValueError(f"part must be 'planned', 'raw' or 'beyond', got {part!r}")
        if part == "beyond" and self.beyond is None:
            raise ValueError("this plan has no null: there is no component beyond it")
        return self.components if part == "raw" or (part == "planned" and self.beyond is None) else self.beyond

    def reliability(self, n_models: int, n_samples: int | None = None, part: str = "planned") -> float:
        """ρ(K′, n): the correlation of the K′-model mean map with the infinite-model mean map
        (beyond the null for a plan that has one, unless ``part="raw"``); ρ² is the reliability."""
        if n_samples is not None and not self.random:
            raise ValueError(f"{self.method} is deterministic: its maps have no sample count to plan")
        return predicted_reliability(self.planned(part), n_models, n_samples, self.pilot_samples)

    def models_needed(self, target: float, n_samples: int | None = None) -> int | None:
        """The fewest models whose mean map reaches ρ ≥ ``target`` (None: not within MAX_MODELS)."""
        check_target(target)
        return smallest_reaching(lambda k: self.reliability(k, n_samples) >= target, MAX_MODELS)

    def samples_needed(self, target: float, n_models: int) -> int | None:
        """The fewest explainer samples with which ``n_models`` reach ρ ≥ ``target`` (None: not even
        with MAX_SAMPLES, because model-to-model variation alone keeps the mean below it)."""
        check_target(target)
        if not self.random:
            raise ValueError(f"{self.method} is deterministic: the sample planner needs a random method "
                             f"(smoothgrad, vargrad, gradient_shap, ...)")
        return smallest_reaching(lambda n: self.reliability(n_models, n) >= target, MAX_SAMPLES)

    def quantity(self) -> str:
        """What ρ is, in words."""
        return QUANTITY + (f", both with the {self.null} null's mean map partialled out" if self.null else "")

    def recommendation(self, target: float, max_samples: int = _SETTINGS.max_samples) -> dict:
        """The fewest models that reach ρ ≥ ``target`` with at most ``max_samples`` samples, and
        the fewest samples those models need (models cost a training run each, samples one pass);
        ``target`` is the correlation ρ, ``reliability`` its square; with ``refused`` no plan."""
        check_target(target)
        out = {"method": self.method, "grouping": self.grouping, "target": target, "models": None,
               "samples": None, "quantity": self.quantity(), "reliability": target ** 2, "null": self.null}
        if self.interval is not None:
            out.update(models_low=self.interval["models_low"], models_high=self.interval["models_high"])
        if self.refusal is not None:
            return dict(out, refused=self.refusal, models_low=None, models_high=None)
        if not self.random:
            return dict(out, models=self.models_needed(target))
        models = self.models_needed(target, max_samples)
        return dict(out, models=models, samples=None if models is None else self.samples_needed(target, models))

    def sentence(self, target: float, max_samples: int = _SETTINGS.max_samples) -> str:
        """What to do, in one line a user can act on, naming what is predicted: the correlation ρ
        of the mean map with the infinite-model mean map (and its square, the reliability)."""
        where = f"{self.method} with {self.grouping}"
        if self.refusal is not None:
            return f"{where}: no plan, {self.refusal}"
        plan = self.recommendation(target, max_samples)
        beyond = f" beyond the {self.null} null (its mean map partialled out)" if self.null else ""
        what = (f"correlation with the infinite-model mean map{beyond} is {target:g} (reliability "
                f"ρ² = {target ** 2:.3g})")
        if plan["models"] is None:
            return (f"{where}: a mean map whose {what} is out of reach (more than {MAX_MODELS} models"
                    + (f" at {max_samples} samples)" if self.random else ")"))
        samples = (f" and {plan['samples']} sample" + ("" if plan["samples"] == 1 else "s")
                   if plan["samples"] is not None else "")
        models = f"{plan['models']} model" + ("" if plan["models"] == 1 else "s")
        text = (f"{where}: {models}{samples} for a mean map whose {what} (predicted from {self.pilot_models} "
                "pilot models)")
        if self.interval is not None:
            high = self.interval["models_high"]
            span = (f"{self.interval['models_low']}–{high}" if high is not None else
                    f"{self.interval['models_low']} to more than {MAX_MODELS}")
            text += (f"; 95 % interval {span} models ({self.interval['resamples']} bootstrap resamples of the pilot "
                     "models)")
        return text


def refusal_reason(shared: float, interval: dict | None, null: str | None) -> str | None:
    """Why no plan is given (one clause), or None: the shared component (V_μ,beyond with a null,
    V_μ without) is not positive, or its 95 % bootstrap interval reaches 0."""
    low = None if interval is None else interval["shared_low"]
    if shared > 0 and (low is None or low > 0):
        return None
    span = "" if interval is None else f", 95 % bootstrap interval [{low:.2g}, {interval['shared_high']:.2g}]"
    if null:
        return (f"because the mean map's shared component is not above the {null} null (its spatial variance "
                f"beyond the null's mean map is {shared:.2g}{span}, which reaches 0): more models would only "
                f"average toward what {null} models show too")
    return (f"because the pilot's mean map has no spatial variance above its noise ({shared:.2g}{span}, which "
            "reaches 0)")


def make_plan(method: str, grouping: str, random: bool, pilot_samples: int | None, accumulator: PilotAccumulator,
              null: PilotAccumulator | None = None, null_name: str | None = None, target: float = _SETTINGS.target,
              max_samples: int = _SETTINGS.max_samples, resamples: int = RESAMPLES, seed: int = 0) -> Plan:
    """A :class:`Plan` from a pilot's accumulator and, with ``null`` (L ≥ 3 models; ``null_name``
    its set name), for the component beyond the null; bootstrapped over models (``resamples``
    from ``seed``) for the interval on the count reaching ρ ≥ ``target`` at ``max_samples``
    samples (random methods), and refused when the shared component is not above the null."""
    components = accumulator.components()
    use_null = null is not None and null.n_models >= 3
    stats = gram_statistics(accumulator, null if use_null else None)
    point = resampled_components(stats, np.ones((1, accumulator.n_models)),
                                 np.ones((1, null.n_models)) if use_null else None)
    beyond = None
    if use_null:
        beyond = dict(components, V_mu=np.clip(point["V_mu_beyond"][0], 0, None))
        shared = float(point["V_mu_beyond"][0].mean())
    else:
        shared = float(point["V_mu"][0].mean())
    scale = pilot_samples / max_samples if random and pilot_samples else 1.0
    interval = bootstrap_plan(stats, target, scale, resamples, seed, beyond=use_null) if resamples else None
    name = (null_name or "reference") if use_null else None
    return Plan(method=method, grouping=grouping, random=random, pilot_models=accumulator.n_models,
                pilot_samples=pilot_samples, components=components, null=name,
                null_models=null.n_models if use_null else 0, beyond=beyond, shared=shared, interval=interval,
                refusal=refusal_reason(shared, interval, name))


def smallest_reaching(reaches, largest: int) -> int | None:
    """The smallest count in 1 … ``largest`` for which ``reaches(count)`` holds, by bisection (ρ grows
    with both the number of models and of samples); None when even ``largest`` does not."""
    if not reaches(largest):
        return None
    low, high = 1, largest
    while low < high:
        middle = (low + high) // 2
        if reaches(middle):
            high = middle
        else:
            low = middle + 1
    return low


def check_target(target: float) -> None:
    if not (isinstance(target, (int, float)) and 0.0 < target < 1.0):
        raise ValueError(f"target reliability must be in (0, 1), got {target!r}: a mean of finitely many models "
                         "never correlates perfectly with the mean over all models")


def pilot(models: Sequence[torch.nn.Module], images: torch.Tensor, targets: torch.Tensor, method: str,
          groupings: dict, settings: StudySettings, progress: bool = False, null_models=None,
          null_name: str | None = None, target: float = _SETTINGS.target, max_samples: int = _SETTINGS.max_samples,
          resamples: int = RESAMPLES,
          seed: int | None = None) -> Plan:
    """A :class:`Plan` from pilot ``models`` (K ≥ 3): every model explained once, random methods
    twice with independent draws (``derive(settings.seed, "pilot", k, repeat)``); with
    ``null_models`` (L ≥ 3, explained once each with ``derive(settings.seed, "pilot-null", j)``) the
    plan is for the component beyond that null (:func:`make_plan`). The bootstrap draws from
    ``seed`` (``settings.seed`` when None)."""
    if len(models) < 3:
        raise ValueError(f"models: a pilot needs at least 3 models, got {len(models)}")
    grouping = next(iter(groupings))
    random = method_is_random(method, models[0])
    accumulator = PilotAccumulator()
    for index, model in enumerate(tqdm(models, desc=f"pilot {method}/{grouping}", disable=not progress)):
        runs = [grey_maps(explain_groupings(method, model, derive(settings.seed, "pilot", index, repeat), images,
                                            targets, groupings, settings)[grouping]).cpu()
                for repeat in range(2 if random else 1)]
        accumulator.add(runs[0], runs[1] if random else None)
    null = None
    if null_models:
        null = PilotAccumulator()
        for index, model in enumerate(null_models):
            null.add(grey_maps(explain_groupings(method, model, derive(settings.seed, "pilot-null", index), images,
                                                 targets, groupings, settings)[grouping]).cpu())
    samples = settings.n_samples if random else None
    return make_plan(method, grouping, random, samples, accumulator, null, null_name, target, max_samples, resamples,
                     settings.seed if seed is None else seed)


def _partialled(maps: torch.Tensor, partial_out: torch.Tensor | None) -> torch.Tensor:
    """Centred maps ``[N, P]`` with, given ``partial_out`` ``[N, H, W]``, its centred direction
    regressed out per image."""
    x = centred(maps).flatten(1)
    if partial_out is None:
        return x
    z = centred(partial_out).flatten(1)
    slope = (x * z).sum(1) / (z * z).sum(1).clamp(min=1e-300)
    return x - slope[:, None] * z


def observed_reliability(group_means: Sequence[torch.Tensor], partial_out: torch.Tensor | None = None) -> float:
    """Observed correlation with the infinite-model mean map, from the mean maps ``[N, H, W]`` of
    disjoint groups of K′ models each: the square root of the correlation between two groups' mean
    maps (clipped at 0; the correlation itself estimates the reliability ρ²), averaged over images
    and over every pair of groups. With ``partial_out`` (the null's mean map ``[N, H, W]``) it is
    regressed out of every group mean first (ρ_beyond)."""
    values = []
    for a in range(len(group_means)):
        for b in range(a + 1, len(group_means)):
            x, y = _partialled(group_means[a], partial_out), _partialled(group_means[b], partial_out)
            correlation = (x * y).sum(1) / (x.norm(dim=1) * y.norm(dim=1)).clamp(min=1e-300)
            values.append(correlation.clamp(min=0).sqrt())
    if not values:
        raise ValueError("observed_reliability needs at least two groups of models")
    return float(torch.stack(values).mean())


def reliability_curve(plan: Plan, models: Sequence[int] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
                      samples: Sequence[int] | None = None) -> list[dict]:
    """Predicted ρ for each K′ (and each sample count, for random methods): ``reliability`` of the
    trained maps (what held-out models check) and, for a plan with a null, ``reliability_beyond``."""
    samples = list(samples) if samples is not None and plan.random else [plan.pilot_samples]
    rows = []
    for k in models:
        for n in samples:
            count = n if plan.random else None
            row = {"method": plan.method, "grouping": plan.grouping, "models": k, "samples": n,
                   "reliability": plan.reliability(k, count, part="raw")}
            if plan.beyond is not None:
                row["reliability_beyond"] = plan.reliability(k, count, part="beyond")
            rows.append(row)
    return rows


def held_out_reliability(maps: torch.Tensor, n_models: int, n_draws: int = 20, seed: int = 0,
                         partial_out: torch.Tensor | None = None) -> float:
    """Observed correlation of K′-model mean maps with the infinite-model mean map from held-out
    models' grey maps ``[P, N, H, W]`` (P ≥ 2 K′): ``n_draws`` random draws of two disjoint groups of
    ``n_models``, each scored by :func:`observed_reliability` (with ``partial_out``), averaged."""
    if maps.shape[0] < 2 * n_models:
        raise ValueError(f"held-out reliability at K′ = {n_models} needs at least {2 * n_models} models, got "
                         f"{maps.shape[0]}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_draws):
        order = torch.from_numpy(rng.permutation(maps.shape[0]))
        values.append(observed_reliability([maps[order[:n_models]].double().mean(0),
                                            maps[order[n_models:2 * n_models]].double().mean(0)], partial_out))
    return float(np.mean(values))
