"""The perturbation factor study (SEG-SMOOTH, docs/methods.md §4): segmentation/smoothing × sampler ×
sample size × attribution calculation × per-segment/per-pixel map, each configuration scored by
SRG (LIF − MIF) and by deletion/insertion AUC, and the factors ranked by effect size.

Work units are one segmentation × sampler × sample size (one set of model passes); every
calculator and both map types are computed from it. Each unit's scores are cached atomically
under ``cache_dir`` keyed by a hash of its configuration, so an interrupted study resumes.

Effect sizes, on balanced sub-designs with bootstrap intervals over images, are in
:mod:`stablesal.factor_effects`.
"""

from __future__ import annotations

import dataclasses

import functools
import itertools
import time
from dataclasses import asdict

import torch

from .effects import FACTORS, SINGLE_FEATURE_SAMPLERS
from ...metrics.fidelity import deletion_insertion, srg
from ...metrics.agreement import mean_ci
from ...metrics.similarity import spearman
from ...explain.perturbation import Perturbation
from ...core.executor import SERIAL, Executor, check_executor
from ...core.settings import FactorSettings
from ...core.version import source_hash
from ...core.storage import cached_unit, save_json_checked, tensor_digest

IDENTICAL_ORDER = 0.999  # Spearman ρ above which two maps order the pixels the same way


def settings_from_config(section) -> FactorSettings:
    """:class:`FactorSettings` from the ``[factors]`` configuration section (a FactorSettings with
    keys of its own), the replacement read as a number when it is one (TOML ``"0.0"``)."""
    values = {f.name: getattr(section, f.name) for f in dataclasses.fields(FactorSettings)}
    try:
        values["replacement"] = float(values["replacement"])
    except ValueError:
        pass
    return FactorSettings(**values)


def parse_segmentation(spec: str) -> tuple[str, str]:
    """``"slic/gaussian"`` → (segmenter, smoothing); ``"grid-bilinear"`` alone means no smoothing."""
    name, _, smoothing = spec.partition("/")
    return name, smoothing or "none"


def units(settings: FactorSettings) -> list[tuple[str, str, object]]:
    """Valid (segmentation, sampler, sample size) units: single-feature samplers take N = M only."""
    out = []
    for segmentation in settings.segmentations:
        for sampler in settings.samplers:
            sizes = ["M"] if sampler in SINGLE_FEATURE_SAMPLERS else settings.sample_sizes
            for size in sizes:
                out.append((segmentation, sampler, size))
    return out


def run_unit(model, images, targets, segmentation: str, sampler: str, size, settings: FactorSettings) -> list[dict]:
    """One segmentation × sampler × N: maps for every calculator × map type, scored per image."""
    segmenter, smoothing = parse_segmentation(segmentation)
    n_samples = settings.n_segments if size == "M" else int(size)
    calculators = [c for c in settings.calculators if c != "ciu" or sampler in SINGLE_FEATURE_SAMPLERS]
    pipeline = Perturbation(model, segmenter=segmenter, smoothing=smoothing, sampler=sampler, n_samples=n_samples,
                            n_segments=settings.n_segments, replacement=settings.replacement, calculator=calculators[0])
    began = time.perf_counter()
    maps = pipeline.attribute_all(images, targets, seed=settings.seed, calculators=calculators, maps=settings.maps)
    seconds = time.perf_counter() - began
    agreement = _rank_agreement(maps)
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
            "explain_seconds": seconds / len(images), **agreement.get((calculator, kind), {}),
        })
    return rows


def _rank_agreement(maps: dict) -> dict:
    """Per image, how alike each calculator's map orders the pixels compared with the other
    calculators' maps of the same samples and map type: ``rank_agreement`` (mean Spearman ρ of the
    channel-summed maps) and ``rank_identical`` (share of the others with ρ ≥ IDENTICAL_ORDER)."""
    out = {}
    for kind in {k for _, k in maps}:
        names = [c for c, k in maps if k == kind]
        if len(names) < 2:
            continue
        rho = {}
        for first, second in itertools.combinations(names, 2):
            value = spearman(maps[(first, kind)].sum(1), maps[(second, kind)].sum(1)).double()
            rho[(first, second)] = rho[(second, first)] = value
        for name in names:
            others = torch.stack([rho[(name, other)] for other in names if other != name])
            out[(name, kind)] = {"rank_agreement": others.mean(0).tolist(),
                                 "rank_identical": (others >= IDENTICAL_ORDER).double().mean(0).tolist()}
    return out


def run_factor_study(model, images, targets, settings: FactorSettings, cache_dir=None, progress: bool = True,
                     identity: dict | None = None, executor: Executor = SERIAL) -> list[dict]:
    """Every unit of the grid (cached units are loaded): rows of per-image scores. With an
    ``executor`` (process pool or Dask) the missing units run in parallel; each is written
    atomically as soon as it arrives."""
    check_executor(executor)
    all_units = units(settings)
    results: dict[int, list] = {}
    pending = []
    for index, (segmentation, sampler, size) in enumerate(all_units):
        path, cached = cached_unit(cache_dir, "", {"settings": asdict(settings),
                                                   "unit": [segmentation, sampler, str(size)],
                                                   "identity": identity or {}, "n_images": int(images.shape[0]),
                                                   "images": tensor_digest(images, targets),
                                                   "code": source_hash("core", "explain", "metrics", "studies/factors")})
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
    executor.map(work, items, on_result=finished, desc="factor study", progress=progress, shared=shared,
                 describe=lambda unit: f"{unit[0]} {unit[1]} N={unit[2]}")
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
