"""Effect sizes of the perturbation factor study (docs/methods.md §4.3): η² of each factor's main
effect on a balanced (fully crossed) design, with bias-corrected bootstrap intervals over images, and
which orderings of the factors those intervals resolve.

Why a balanced design: in a fully crossed design with equal cell counts the main-effect sums of
squares are orthogonal, so each η² is the share of the variance across configurations that its
factor explains *alone* and the η² plus the interactions' share sum to one. The single-feature
samplers (``single``, ``inverse-single``) fix N = M and are the only samplers CIU accepts, so
they cannot be crossed with N or with the other samplers: they form a second balanced design of
their own (segmentation × sampler × calculator × map), reported separately.

The interval is conditional on the model (model 0) and on the explainers' draws: it answers
"would the ranking hold on other images of the same distribution". η² from a finite number of
images is biased upwards by the images' noise in the configuration means (every factor alike).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ...core.intervals import bias_corrected_quantiles, interval_note

FACTORS = ("segmentation", "sampler", "n_samples", "calculator", "map")
SINGLE_FEATURE_SAMPLERS = ("single", "inverse-single")
SINGLE_FEATURE_CALCULATORS = ("ciu",)
METRICS = ("srg", "deletion_auc", "insertion_auc")


def split_designs(rows: list[dict]) -> dict[str, list[dict]]:
    """The factor study's rows as two balanced designs: ``"main"`` (every sampler but the single-
    feature ones, every calculator but CIU) and ``"single_feature"`` (the single-feature samplers at
    N = M, every calculator). A design whose crossing is incomplete raises ``ValueError``."""
    main = [r for r in rows if r["sampler"] not in SINGLE_FEATURE_SAMPLERS
            and r["calculator"] not in SINGLE_FEATURE_CALCULATORS]
    single = [r for r in rows if r["sampler"] in SINGLE_FEATURE_SAMPLERS]
    out = {}
    for name, design in (("main", main), ("single_feature", single)):
        if design:
            check_crossed(design, name)
            out[name] = design
    return out


def varying_factors(rows: list[dict]) -> list[str]:
    """The factors with more than one level among ``rows``."""
    return [f for f in FACTORS if len({str(r[f]) for r in rows}) > 1]


def check_crossed(rows: list[dict], name: str = "design") -> None:
    """Raise ``ValueError`` unless every combination of the varying factors' levels occurs once."""
    factors = varying_factors(rows)
    levels = [sorted({str(r[f]) for r in rows}) for f in factors]
    seen = [tuple(str(r[f]) for f in factors) for r in rows]
    if len(set(seen)) != len(seen):
        raise ValueError(f"the {name} design has repeated configurations")
    missing = set(itertools.product(*levels)) - set(seen)
    if missing:
        example = dict(zip(factors, sorted(missing)[0]))
        raise ValueError(f"the {name} design is not fully crossed: {len(missing)} of "
                         f"{math.prod(len(l) for l in levels)} configurations missing, e.g. {example}")


def score_matrix(rows: list[dict], metric: str) -> np.ndarray:
    """Per-image scores ``[configurations, images]`` of ``metric``."""
    matrix = np.asarray([r[metric] for r in rows], dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"rows must hold one {metric!r} score per image, got an array of shape {matrix.shape}")
    return matrix


def eta_squared(means: np.ndarray, codes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """η² of each factor's main effect: Σ_levels n_l (ȳ_l − ȳ)² / Σ_c (y_c − ȳ)².

    means : configuration means ``[..., C]`` (leading axes, e.g. bootstrap replicates, are kept).
    codes : factor → level index of every configuration ``[C]``.
    Returns factor → η² ``[...]`` and ``"interactions"`` → 1 − Σ η² (exact on a balanced design).
    """
    grand = means.mean(-1, keepdims=True)
    total = np.square(means - grand).sum(-1)
    out = {}
    for factor, code in codes.items():
        between = np.zeros(means.shape[:-1])
        for level in np.unique(code):
            group = means[..., code == level]
            between = between + group.shape[-1] * np.square(group.mean(-1) - grand[..., 0])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[factor] = np.where(total > 0, between / np.where(total > 0, total, 1.0), np.nan)
    out["interactions"] = 1.0 - sum(out[f] for f in codes)
    return out


def level_codes(rows: list[dict], factors) -> dict[str, np.ndarray]:
    """factor → integer level index of every row ``[C]`` (levels in sorted string order)."""
    out = {}
    for factor in factors:
        levels = sorted({str(r[factor]) for r in rows})
        out[factor] = np.asarray([levels.index(str(r[factor])) for r in rows])
    return out


def bootstrap_weights(n_images: int, n_boot: int, seed: int) -> np.ndarray:
    """Resampling weights ``[n_boot, n_images]``: how often each image is drawn, divided by n."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, size=(n_boot, n_images))
    counts = np.zeros((n_boot, n_images))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    return counts / n_images


def effect_sizes(rows: list[dict], metrics=METRICS, n_boot: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> dict:
    """η² per factor and metric on one balanced design, with bias-corrected bootstrap intervals
    over images (η² is biased upwards, so its plain percentile interval can sit above it), and every pairwise ordering of the factors with the interval of the difference.

    Returns ``{"effects": [{factor, levels, eta2_<m>, eta2_<m>_ci_low, eta2_<m>_ci_high}, ...]``
    (factors by decreasing SRG η², then ``interactions``), ``"orderings": [{metric, larger,
    smaller, difference, ci_low, ci_high, resolved}, ...]``, ``"n_images"``, ``"n_configurations"``}.
    """
    if not rows:
        raise ValueError("effect_sizes needs at least one configuration row")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    factors = varying_factors(rows)
    codes = level_codes(rows, factors)
    n_images = score_matrix(rows, metrics[0]).shape[1]
    weights = bootstrap_weights(n_images, n_boot, seed)
    effects = {f: {"factor": f, "levels": len(np.unique(codes[f]))} for f in factors}
    effects["interactions"] = {"factor": "interactions", "levels": math.prod(e["levels"] for e in effects.values())}
    orderings = []
    for metric in metrics:
        scores = score_matrix(rows, metric)
        finite = np.isfinite(scores).all(0)  # an image with a NaN score leaves every configuration
        scores, resampled = scores[:, finite], weights[:, finite]
        resampled = resampled / resampled.sum(1, keepdims=True).clip(min=1e-30)
        point = eta_squared(scores.mean(1), codes)
        replicates = eta_squared(resampled @ scores.T, codes)
        for name in effects:
            low, high = bias_corrected_quantiles(replicates[name], point[name], confidence)
            effects[name].update({f"eta2_{metric}": float(point[name]), f"eta2_{metric}_ci_low": float(low),
                                  f"eta2_{metric}_ci_high": float(high)})
        for first, second in itertools.combinations(factors, 2):
            difference = replicates[first] - replicates[second]
            value = float(point[first] - point[second])
            low, high = (float(bound) for bound in bias_corrected_quantiles(difference, value, confidence))
            larger, smaller = (first, second) if value >= 0 else (second, first)
            low, high = (low, high) if value >= 0 else (-high, -low)
            orderings.append({"metric": metric, "larger": larger, "smaller": smaller, "difference": abs(value),
                              "ci_low": float(low), "ci_high": float(high), "resolved": bool(low > 0)})
    ranked = sorted((effects[f] for f in factors), key=lambda e: -e[f"eta2_{metrics[0]}"])
    return {"effects": ranked + [effects["interactions"]], "orderings": orderings, "n_images": int(n_images),
            "n_configurations": len(rows), "confidence": confidence, "n_boot": n_boot}


def rank_agreement(rows: list[dict], confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict | None:
    """How alike different calculators' maps of the same samples order the pixels (rows carry it
    per image: ``rank_agreement``, the mean Spearman ρ with the other calculators, and
    ``rank_identical``, the share of them with an identical order), averaged over configurations
    per image, with percentile-bootstrap intervals over images. SRG and deletion/insertion read
    only the order of the map: where two calculators order the pixels identically their scores are
    equal, whatever their values."""
    rows = [r for r in rows if "rank_agreement" in r]
    if not rows:
        return None
    out = {"n_images": 0}
    alpha = (1 - confidence) / 2
    for key, name in (("rank_agreement", "spearman"), ("rank_identical", "identical")):
        per_image = np.nanmean(np.asarray([r[key] for r in rows], dtype=float), 0)
        per_image = per_image[np.isfinite(per_image)]
        if per_image.size == 0:
            return None
        weights = bootstrap_weights(per_image.size, n_boot, seed)
        low, high = np.quantile(weights @ per_image, [alpha, 1 - alpha])
        out.update({name: float(per_image.mean()), f"{name}_ci_low": float(low), f"{name}_ci_high": float(high),
                    "n_images": int(per_image.size)})
    return out


def analyse(rows: list[dict], n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    """The factor study's statistics: η² with intervals on each balanced design and the rank
    agreement between calculators (over every configuration)."""
    designs = {name: effect_sizes(design, n_boot=n_boot, confidence=confidence, seed=seed)
               for name, design in split_designs(rows).items()}
    return {"designs": designs, "rank_agreement": rank_agreement(rows, confidence, n_boot, seed)}


def interval_notes(analysis: dict, seed: int) -> dict:
    """results.json "intervals" of the factor study: bootstrap over images for the η² and the rank
    agreement (``analysis`` from :func:`analyse`, run with ``seed``), t over images for the
    configurations' mean scores."""
    design = next(iter(analysis["designs"].values()), {"confidence": 0.95, "n_boot": 0})
    fixed = ["model 0", "the explainers' draws"]
    return {"factor_study.analysis": interval_note(
                "bias-corrected-bootstrap", sampled=["test images"], fixed=fixed, level=design["confidence"],
                columns="eta2_<metric>_ci_low / _ci_high, orderings' ci_low / ci_high, rank_agreement's *_ci_low "
                        "(a mean, unbiased: its plain percentile interval)",
                n_boot=design["n_boot"], seed=seed, reference="docs/methods.md §4.3"),
            "factor_study.configurations": interval_note("t-over-units", sampled=["test images"], fixed=fixed)}


def resolved_orderings(orderings: list[dict], metric: str = "srg") -> tuple[list[dict], list[dict]]:
    """The ``metric``'s orderings split into (resolved, unresolved), each by decreasing difference."""
    chosen = sorted((o for o in orderings if o["metric"] == metric), key=lambda o: -o["difference"])
    return [o for o in chosen if o["resolved"]], [o for o in chosen if not o["resolved"]]


def _eta(effect: dict, metric: str = "srg") -> str:
    return (f"{effect[f'eta2_{metric}']:.2f} [{effect[f'eta2_{metric}_ci_low']:.2f}, "
            f"{effect[f'eta2_{metric}_ci_high']:.2f}]")


def design_reading(analysis: dict, label: str) -> str:
    """What one design's η² say, naming only orderings whose interval excludes 0."""
    effects = [e for e in analysis["effects"] if e["factor"] != "interactions"]
    interactions = next(e for e in analysis["effects"] if e["factor"] == "interactions")
    resolved, unresolved = resolved_orderings(analysis["orderings"])
    level = round(100 * analysis["confidence"])
    text = (f"{label} ({analysis['n_configurations']} configurations, {analysis['n_images']} images): η² of SRG "
            + ", ".join(f"{e['factor']} {_eta(e)}" for e in effects)
            + f"; interactions {_eta(interactions)}. ")
    if resolved:
        text += (f"Resolved at {level} % (the interval of the η² difference excludes 0): "
                 + ", ".join(f"{o['larger']} > {o['smaller']}" for o in resolved) + ". ")
    else:
        text += f"No ordering of the factors is resolved at {level} %. "
    if unresolved:
        text += "Not resolved: " + ", ".join(f"{o['larger']} vs {o['smaller']}" for o in unresolved) + "."
    return text.strip()


def seg_smooth_verdict(analysis: dict) -> str:
    """SEG-SMOOTH's claim, that segmentation and per-pixel vs per-segment attribution matter more
    than the attribution calculation, checked against the resolved orderings only."""
    resolved, _ = resolved_orderings(analysis["orderings"])
    pairs = {(o["larger"], o["smaller"]) for o in resolved}
    parts = []
    for factor, label in (("segmentation", "segmentation"), ("map", "the map type")):
        if (factor, "calculator") in pairs:
            parts.append(f"{label} matters more than the attribution calculation (resolved)")
        elif ("calculator", factor) in pairs:
            parts.append(f"{label} matters less than the attribution calculation (resolved)")
        else:
            parts.append(f"{label} vs the attribution calculation is not resolved")
    return "SEG-SMOOTH's claim on these data: " + "; ".join(parts) + "."


def factor_reading(analysis: dict, configurations: list[dict]) -> str:
    """The factor study in words, from the designs' η², their intervals and the rank agreement."""
    designs = analysis.get("designs", {})
    if not designs:
        return "The factor study did not run."
    parts = []
    if "main" in designs:
        parts.append(design_reading(designs["main"], "Main design (random and SHAP samplers, all N, no CIU)"))
        parts.append(seg_smooth_verdict(designs["main"]))
    if "single_feature" in designs:
        parts.append(design_reading(designs["single_feature"],
                                    "Single-feature samplers at N = M, with CIU (reported apart: they fix N)"))
    agreement = analysis.get("rank_agreement")
    if agreement is not None:
        parts.append(
            f"SRG and deletion/insertion read only the order of a map, so two calculators can differ in them only "
            f"where they order the pixels differently. Between the calculators' maps of the same samples, mean "
            f"Spearman ρ is {agreement['spearman']:.2f} [{agreement['spearman_ci_low']:.2f}, "
            f"{agreement['spearman_ci_high']:.2f}], and {100 * agreement['identical']:.0f} % "
            f"[{100 * agreement['identical_ci_low']:.0f}, {100 * agreement['identical_ci_high']:.0f}] of the "
            f"calculator pairs order them identically (ρ ≥ 0.999; their SRG is equal by construction), over "
            f"{agreement['n_images']} images.")
    best = max(configurations, key=lambda c: c["srg"])
    parts.append(f"Highest mean SRG: {best['segmentation']}, {best['sampler']}, N={best['n_samples']}, "
                 f"{best['calculator']}, {best['map']} ({best['srg']:.3f} [{best['srg_ci_low']:.3f}, "
                 f"{best['srg_ci_high']:.3f}]).")
    return " ".join(parts)
