"""The perturbation factor study (SEG-SMOOTH, docs/methods.md §4): segmentation/smoothing × sampler ×
sample size × attribution calculation × per-segment/per-pixel map, each configuration scored by
SRG (LIF − MIF) and by deletion/insertion AUC, and the factors ranked by effect size.

Work units are one segmentation × sampler × sample size (one set of model passes); every
calculator and both map types are computed from it. Each unit's scores are cached atomically
under ``cache_dir`` keyed by a hash of its configuration, so an interrupted study resumes.

Effect size: for each factor, η² = Σ_levels n_l (ȳ_l − ȳ)² / Σ (y − ȳ)² over the configurations'
mean scores (main effects; the design is unbalanced because single-feature samplers fix N and CIU
needs them, so the η² do not sum to one).
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field

import torch

from .metrics import deletion_insertion, mean_ci, srg
from .perturbation import Perturbation
from .storage import cached_unit, save_json_checked

FACTORS = ("segmentation", "sampler", "n_samples", "calculator", "map")


@dataclass
class FactorSettings:
    segmentations: list = field(default_factory=lambda: ["grid-bilinear", "grid/gaussian", "slic/gaussian"])
    samplers: list = field(default_factory=lambda: ["random", "shap", "single", "inverse-single"])
    sample_sizes: list = field(default_factory=lambda: ["M", 400, 2000])   # "M" = the number of segments
    calculators: list = field(default_factory=lambda: ["rise", "lime-ols", "kernel-shap", "pda", "ciu"])
    maps: list = field(default_factory=lambda: ["segment", "pixel"])
    n_segments: int = 49
    replacement: str | float = 0.0
    n_images: int = 32
    srg_steps: int = 10
    srg_fill: str | float = "mean"
    deletion_steps: int = 10
    seed: int = 0


def settings_from_config(section) -> FactorSettings:
    """:class:`FactorSettings` from the ``[factors]`` configuration section."""
    try:
        replacement = float(section.replacement)
    except ValueError:
        replacement = section.replacement
    return FactorSettings(segmentations=list(section.segmentations), samplers=list(section.samplers),
                          sample_sizes=list(section.sample_sizes), calculators=list(section.calculators),
                          maps=list(section.maps), n_segments=section.n_segments, replacement=replacement,
                          n_images=section.n_images, srg_steps=section.srg_steps, deletion_steps=section.srg_steps,
                          seed=section.seed)


def parse_segmentation(spec: str) -> tuple[str, str]:
    """``"slic/gaussian"`` → (segmenter, smoothing); ``"grid-bilinear"`` alone means no smoothing."""
    name, _, smoothing = spec.partition("/")
    return name, smoothing or "none"


def units(settings: FactorSettings) -> list[tuple[str, str, object]]:
    """Valid (segmentation, sampler, sample size) units: single-feature samplers take N = M only."""
    out = []
    for segmentation in settings.segmentations:
        for sampler in settings.samplers:
            sizes = ["M"] if sampler in ("single", "inverse-single") else settings.sample_sizes
            for size in sizes:
                out.append((segmentation, sampler, size))
    return out


def run_unit(model, images, targets, segmentation: str, sampler: str, size, settings: FactorSettings) -> list[dict]:
    """One segmentation × sampler × N: maps for every calculator × map type, scored per image."""
    segmenter, smoothing = parse_segmentation(segmentation)
    n_samples = settings.n_segments if size == "M" else int(size)
    calculators = [c for c in settings.calculators if c != "ciu" or sampler in ("single", "inverse-single")]
    pipeline = Perturbation(model, segmenter=segmenter, smoothing=smoothing, sampler=sampler, n_samples=n_samples,
                            n_segments=settings.n_segments, replacement=settings.replacement, calculator=calculators[0])
    began = time.perf_counter()
    maps = pipeline.attribute_all(images, targets, seed=settings.seed, calculators=calculators, maps=settings.maps)
    seconds = time.perf_counter() - began
    rows = []
    for (calculator, kind), attributions in maps.items():
        scores = srg(model, images, attributions, targets, steps=settings.srg_steps, fill=settings.srg_fill)
        _, deletion = deletion_insertion(model, images, attributions, targets, steps=settings.deletion_steps,
                                         mode="deletion", substrate="mean")
        _, insertion = deletion_insertion(model, images, attributions, targets, steps=settings.deletion_steps,
                                          mode="insertion", substrate="mean")
        rows.append({
            "segmentation": segmentation, "sampler": sampler, "n_samples": str(size), "calculator": calculator,
            "map": kind, "pipeline": "|".join(str(pipeline).split("|")[:5] + [calculator, kind]), "srg": scores["srg"].tolist(), "lif": scores["lif"].tolist(), "mif": scores["mif"].tolist(),
            "deletion_auc": deletion.tolist(), "insertion_auc": insertion.tolist(),
            "explain_seconds": seconds / len(images),
        })
    return rows


def run_factor_study(model, images, targets, settings: FactorSettings, cache_dir=None, progress: bool = True,
                     identity: dict | None = None, executor=None) -> list[dict]:
    """Every unit of the grid (cached units are loaded): rows of per-image scores. With an
    ``executor`` (process pool or Dask) the missing units run in parallel; each is written
    atomically as soon as it arrives."""
    all_units = units(settings)
    results: dict[int, list] = {}
    pending = []
    for index, (segmentation, sampler, size) in enumerate(all_units):
        path, cached = cached_unit(cache_dir, "", {"settings": asdict(settings),
                                                   "unit": [segmentation, sampler, str(size)],
                                                   "identity": identity or {}, "n_images": int(images.shape[0])})
        if cached is not None:  # a missing, unfinished or corrupt (checksum) unit is recomputed
            results[index] = cached
            continue
        pending.append((index, path))

    def finished(position, rows):
        index, path = pending[position]
        if path is not None:
            save_json_checked(path, rows)
        results[index] = rows

    work = functools.partial(_factor_unit, settings=settings)
    shared = (model, images, targets)
    items = [all_units[index] for index, _ in pending]
    if executor is None:
        from tqdm.auto import tqdm

        bar = tqdm(items, desc="factor study", disable=not progress)
        for position, unit in enumerate(bar):
            bar.set_postfix_str(f"{unit[0]} {unit[1]} N={unit[2]}")
            finished(position, work(*shared, unit))
    else:
        executor.map(work, items, on_result=finished, desc="factor study", progress=progress, shared=shared)
    return [row for index in range(len(all_units)) for row in results[index]]


def _factor_unit(model, images, targets, unit, *, settings) -> list[dict]:
    segmentation, sampler, size = unit
    return run_unit(model, images, targets, segmentation, sampler, size, settings)


def summarise_configurations(rows: list[dict]) -> list[dict]:
    """One row per configuration: mean and 95 % CI of each score over images."""
    out = []
    for row in rows:
        summary = {factor: row[factor] for factor in FACTORS}
        for metric in ("srg", "lif", "mif", "deletion_auc", "insertion_auc"):
            mean, low, high = mean_ci(row[metric])
            summary[metric], summary[f"{metric}_ci_low"], summary[f"{metric}_ci_high"] = mean, low, high
        summary["explain_seconds"] = row["explain_seconds"]
        out.append(summary)
    return out


def effect_sizes(configurations: list[dict], metrics=("srg", "deletion_auc", "insertion_auc")) -> list[dict]:
    """η² of each factor's main effect on each metric's configuration means, largest first (by SRG)."""
    out = []
    for factor in FACTORS:
        row = {"factor": factor, "levels": len({c[factor] for c in configurations})}
        for metric in metrics:
            values = torch.tensor([c[metric] for c in configurations], dtype=torch.float64)
            grand = values.mean()
            total = (values - grand).square().sum().clamp(min=1e-30)
            between = 0.0
            for level in {c[factor] for c in configurations}:
                group = torch.tensor([c[metric] for c in configurations if c[factor] == level], dtype=torch.float64)
                between += len(group) * float((group.mean() - grand) ** 2)
            row[f"eta2_{metric}"] = between / float(total)
        out.append(row)
    return sorted(out, key=lambda r: -r["eta2_srg"])


def level_means(configurations: list[dict], metric: str = "srg") -> dict[str, dict[str, float]]:
    """Mean score per level of each factor."""
    out = {}
    for factor in FACTORS:
        levels = {}
        for level in sorted({c[factor] for c in configurations}, key=str):
            values = [c[metric] for c in configurations if c[factor] == level]
            levels[level] = sum(values) / len(values)
        out[factor] = levels
    return out


def factor_reading(effects: list[dict], configurations: list[dict]) -> str:
    """A plain-language reading of the study, from the numbers."""
    if not effects:
        return "The factor study did not run."
    ranked = ", ".join(f"{e['factor']} (η² = {e['eta2_srg']:.2f})" for e in effects)
    means = level_means(configurations)
    best = max(configurations, key=lambda c: c["srg"])
    worst = min(configurations, key=lambda c: c["srg"])
    calc = means["calculator"]
    calc_spread = max(calc.values()) - min(calc.values())
    maps = means.get("map", {})
    map_text = ""
    if {"pixel", "segment"} <= set(maps):
        map_text = (f" Per-pixel maps score {maps['pixel']:.3f} SRG on average against {maps['segment']:.3f} "
                    f"per segment.")
    eta = {e["factor"]: e["eta2_srg"] for e in effects}
    claims = []
    for factor, label in (("segmentation", "segmentation"), ("map", "per-pixel vs per-segment attribution")):
        if factor in eta and "calculator" in eta:
            relation = "more" if eta[factor] > eta["calculator"] else "less"
            claims.append(f"{label} explains {relation} than the attribution calculation "
                          f"({eta[factor]:.2f} vs {eta['calculator']:.2f})")
    verdict = ("Against SEG-SMOOTH's finding that segmentation and per-pixel attribution matter more than the "
               "attribution calculation: " + "; ".join(claims) + ".") if claims else ""
    return (f"Factors ranked by the share of SRG variance their main effect explains: {ranked}. The attribution "
            f"calculation moves mean SRG by {calc_spread:.3f} between its best and worst level.{map_text} "
            f"{verdict} Best configuration: {best['segmentation']}, {best['sampler']}, "
            f"N={best['n_samples']}, {best['calculator']}, {best['map']} (SRG {best['srg']:.3f}); worst: "
            f"{worst['segmentation']}, {worst['sampler']}, N={worst['n_samples']}, {worst['calculator']}, "
            f"{worst['map']} (SRG {worst['srg']:.3f}).")
