"""The cross-seed stability study: explain the same test images with K retrained models, for every
method × grouping, and measure how much the maps depend on training randomness (Gong et al.,
BMVC 2024; Ye & Farnia, AISTATS 2025; methods.md §3).

Work is split into units (one model set × method, all groupings from the same model passes); each unit's result is written
atomically to ``<cache_dir>/<unit-hash>.json`` and reused on a re-run, so an interrupted study
resumes where it stopped. Memory per unit is K grey maps of the explained images plus running
moments; no unit holds the maps of other units.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .attribution import make_method
from .grouping import Partition
from .perturbation import PRESETS, make_preset
from .metrics import (
    RunningMoments, deletion_insertion, grey_maps, mean_ci, mege, mu_fidelity, output_drops, pairwise_similarity,
    random_cell_subsets, randomised_copy, reco, spearman, ssim, unit_maps,
)
from .segmentation import make_segmenter, matched_grid
from .storage import cached_unit, save_json_checked

PAIR_METRICS = ("ssim", "spearman", "normalised_l2", "topk_intersection")


@dataclass
class StudySettings:
    methods: list = field(default_factory=lambda: ["saliency", "integrated_gradients", "smoothgrad", "suppression"])
    groupings: list = field(default_factory=lambda: ["pixel", "fastslic", "grid"])
    n_segments: int = 64
    n_samples: int = 32
    n_steps: int = 32
    noise_level: float = 0.15
    seed: int = 0
    deletion_steps: int = 16
    # Petsiuk's insertion blur (σ = 5 px at 224 px) scales to 0.7 px at 32 px and leaves small
    # objects intact, so both curves use the image's mean colour by default.
    deletion_substrate: str = "mean"
    insertion_substrate: str = "mean"
    mu_fidelity_subsets: int = 128   # random subsets of 20 % of a 9×9 grid (Bhatt et al. use 200)
    sanity: bool = True
    perturbation_samples: int = 500  # RISE masks / LIME and KernelSHAP samples of perturbation presets


def random_maps(images: torch.Tensor, model_index: int, seed: int) -> torch.Tensor:
    """The random-map control: i.i.d. uniform maps, different for every model."""
    generator = torch.Generator().manual_seed(seed * 1009 + model_index)
    return torch.rand(images.shape, generator=generator).to(images.device)


def compute_partitions(images: torch.Tensor, groupings: Sequence[str], n_segments: int) -> dict[str, torch.Tensor]:
    """Segments for every grouping; ``grid`` is matched to the mean count of the first super-pixel
    grouping (the control that separates 'follows the object' from 'is coarser')."""
    partitions: dict[str, torch.Tensor] = {}
    for name in groupings:
        if name not in ("pixel", "grid"):
            partitions[name] = make_segmenter(name, n_segments=n_segments)(images)
    if "grid" in groupings:
        reference = next(iter(partitions.values()), None)
        grid = matched_grid(reference) if reference is not None else make_segmenter("grid", n_segments=n_segments)
        partitions["grid"] = grid(images)
    return partitions


def explain_groupings(method_name: str, model, model_index: int, images, targets, partitions: dict,
                      settings: StudySettings) -> dict[str, torch.Tensor]:
    """Maps of one model under every grouping (``partitions``: name → segments or None), from
    one set of model passes."""
    if method_name == "random" or method_name in PRESETS:
        if method_name == "random":
            maps = random_maps(images, model_index, settings.seed)
        else:  # perturbation presets: the pixel map, projected for groupings
            options = {"n_masks": settings.perturbation_samples} if method_name == "rise" else (
                {"n_samples": settings.perturbation_samples} if method_name in ("lime", "kernel_shap") else {})
            maps = make_preset(method_name, model, **options).attribute(images, target=targets, seed=settings.seed)
        return {name: maps if seg is None else Partition(seg).project(maps) for name, seg in partitions.items()}
    method = make_method(method_name, model, grouping="segments", n_samples=settings.n_samples,
                         n_steps=settings.n_steps, noise_level=settings.noise_level)
    kwargs = {"baselines": _shap_references(images, settings.seed)} if method_name == "gradient_shap" else {}
    return method.attribute_groupings(images, target=targets, groupings=partitions, seed=settings.seed, **kwargs)


def _shap_references(images: torch.Tensor, seed: int) -> torch.Tensor:
    """References for GradientSHAP: the explained images' own pixels shuffled across positions
    (keeps the colour distribution, removes the object) plus a black image."""
    generator = torch.Generator().manual_seed(seed)
    flat = images.flatten(2)
    shuffled = flat[:, :, torch.randperm(flat.shape[2], generator=generator)].view_as(images)
    return torch.cat([shuffled[:8], torch.zeros_like(images[:1])])


def run_unit(models: Sequence[torch.nn.Module], images: torch.Tensor, targets: torch.Tensor, masks, method_name: str,
             partitions: dict, settings: StudySettings, model_set: str) -> list[dict]:
    """One method on every model under every grouping: pairwise similarity rows, variance across
    models, the projection check, fidelity, localisation and sanity. One result per grouping."""
    began = time.perf_counter()
    groupings = {name: (None if name == "pixel" else partitions[name]) for name in settings.groupings}
    greys = {name: [] for name in groupings}
    moments = {name: RunningMoments() for name in groupings}
    with torch.inference_mode():
        correct = [model(images).argmax(1).eq(targets).cpu() for model in models]  # for MeGe / ReCo
    projected = {name: RunningMoments() for name in partitions}  # theory: P applied to the pixel maps
    first_maps: dict[str, torch.Tensor] = {}
    explain_seconds = 0.0
    for index, model in enumerate(models):
        start = time.perf_counter()
        maps = explain_groupings(method_name, model, index, images, targets, groupings, settings)
        explain_seconds += time.perf_counter() - start
        for name, grouped in maps.items():
            greys[name].append(grey_maps(grouped))
            moments[name].update(unit_maps(grouped))
        if "pixel" in maps:
            unit = unit_maps(maps["pixel"])
            for name, part in partitions.items():
                projected[name].update(Partition(part).project(unit.unsqueeze(1))[:, 0])
        if index == 0:
            first_maps = maps
    sanity_greys = {}
    if settings.sanity and method_name != "random":
        randomised = randomised_copy(models[0], seed=settings.seed + 99)
        sanity_maps = explain_groupings(method_name, randomised, 0, images, targets, groupings, settings)
        sanity_greys = {name: grey_maps(m) for name, m in sanity_maps.items()}

    subsets = random_cell_subsets(images.shape[2], images.shape[3], settings.mu_fidelity_subsets, seed=settings.seed)
    drops = output_drops(models[0], images, targets, subsets)
    results = []
    for name in groupings:
        rows = []
        for i, j in itertools.combinations(range(len(models)), 2):
            scores = pairwise_similarity(greys[name][i], greys[name][j], PAIR_METRICS)
            for image in range(images.shape[0]):
                rows.append({"model_set": model_set, "method": method_name, "grouping": name, "image": image,
                             "model_a": i, "model_b": j, **{k: float(v[image]) for k, v in scores.items()},
                             "a_correct": bool(correct[i][image]), "b_correct": bool(correct[j][image])})
        result = {
            "model_set": model_set, "method": method_name, "grouping": name, "rows": rows,
            "total_variance": moments[name].total_variance().tolist(),
            "noise_to_signal": moments[name].noise_to_signal().tolist(),
            "explain_seconds_per_model": explain_seconds / len(models),  # all groupings together
            "n_images": int(images.shape[0]),
        }
        if groupings[name] is not None:
            result["mean_segments"] = float((groupings[name].flatten(1).max(1).values + 1).float().mean())
        if name == "pixel":
            result["projection"] = _projection_check(moments["pixel"], projected, partitions, images)
        model, maps = models[0], first_maps[name]
        _, deletion = deletion_insertion(model, images, maps, targets, steps=settings.deletion_steps,
                                         mode="deletion", substrate=settings.deletion_substrate)
        _, insertion = deletion_insertion(model, images, maps, targets, steps=settings.deletion_steps,
                                          mode="insertion", substrate=settings.insertion_substrate)
        result["deletion_auc"], result["insertion_auc"] = deletion.tolist(), insertion.tolist()
        result["mu_fidelity"] = mu_fidelity(maps, subsets, drops).tolist()
        if masks is not None:
            grey, inside = greys[name][0], masks.to(images.device).float()
            result["relevance_mass"] = ((grey * inside).flatten(1).sum(1)
                                        / grey.flatten(1).sum(1).clamp(min=1e-30)).tolist()
            result["pointing_game"] = inside.flatten(1).gather(1, grey.flatten(1).argmax(1, keepdim=True))[:, 0].tolist()
        if name in sanity_greys:
            result["sanity_spearman"] = spearman(greys[name][0], sanity_greys[name]).tolist()
            result["sanity_ssim"] = ssim(greys[name][0], sanity_greys[name]).tolist()
        results.append(result)
    for result in results:
        result["seconds"] = (time.perf_counter() - began) / len(results)
    return results


def _projection_check(pixel: RunningMoments, projected: dict, partitions: dict, images) -> dict:
    """tr(Σ)/tr(PΣ), the bias of P on the mean map, and the noise-to-signal gain, per partition."""
    pixels = images.shape[2] * images.shape[3]
    out = {}
    mean_map = pixel.mean
    for name, running in projected.items():
        count = float((partitions[name].flatten(1).max(1).values + 1).float().mean())
        projected_mean = Partition(partitions[name]).project(mean_map.unsqueeze(1).float())[:, 0].double()
        nsr_pixel = pixel.total_variance() / mean_map.flatten(1).square().sum(1).clamp(min=1e-30)
        nsr_grouped = running.total_variance() / projected_mean.flatten(1).square().sum(1).clamp(min=1e-30)
        out[name] = {
            "mean_segment_size": pixels / count,
            "variance_reduction": (pixel.total_variance() / running.total_variance().clamp(min=1e-30)).tolist(),
            "bias_fraction": ((mean_map - projected_mean).flatten(1).square().sum(1)
                              / mean_map.flatten(1).square().sum(1).clamp(min=1e-30)).tolist(),
            "nsr_reduction": (nsr_pixel / nsr_grouped.clamp(min=1e-30)).tolist(),
        }
    return out


def run_study(model_sets: dict[str, Sequence[torch.nn.Module]], images: torch.Tensor, targets: torch.Tensor,
              masks, settings: StudySettings, cache_dir: Path | str | None = None, progress: bool = True,
              identity: dict | None = None, include_random: bool = True, executor=None) -> list[dict]:
    """Every unit of the study; finished units found in ``cache_dir`` are loaded, not recomputed.

    ``identity`` (e.g. the model checkpoints' hashes and the data configuration) is part of the
    unit key, so changing the models or data recomputes.
    """
    partitions = compute_partitions(images, settings.groupings, settings.n_segments)
    methods = list(settings.methods) + (["random"] if include_random and "random" not in settings.methods else [])
    units = [(s, m) for s in model_sets for m in methods]
    results: dict[int, list] = {}
    pending = []
    for index, (model_set, method) in enumerate(units):
        path, cached = cached_unit(cache_dir, f"{model_set}-{method}-", {
            "settings": asdict(settings), "unit": [model_set, method], "identity": identity or {},
            "n_images": int(images.shape[0])})
        if cached is not None:  # a missing, unfinished or corrupt (checksum) unit is recomputed
            results[index] = cached
            continue
        pending.append((index, model_set, method, path))

    def finished(position, unit):
        index, _, _, path = pending[position]
        if path is not None:
            save_json_checked(path, unit)  # as soon as it exists: an interrupted study keeps it
        results[index] = unit

    work = functools.partial(_study_unit, settings=settings)
    shared = (model_sets, images, targets, masks, partitions)
    if executor is None:
        from tqdm.auto import tqdm

        bar = tqdm(pending, desc="stability", disable=not progress)
        for position, (_, model_set, method, _) in enumerate(bar):
            bar.set_postfix_str(f"{model_set}/{method}")
            finished(position, work(*shared, (model_set, method)))
    else:
        executor.map(work, [(model_set, method) for _, model_set, method, _ in pending], on_result=finished,
                     desc="stability", progress=progress, shared=shared)
    return [row for index in range(len(units)) for row in results[index]]


def _study_unit(model_sets, images, targets, masks, partitions, unit, *, settings) -> list[dict]:
    """One model set × method (module level, so it pickles for process and Dask executors)."""
    model_set, method = unit
    return run_unit(model_sets[model_set], images, targets, masks, method, partitions, settings, model_set)


def summarise(results: list[dict]) -> list[dict]:
    """One row per model set × method × grouping: means and 95 % CIs over images and model pairs."""
    summary = []
    for result in results:
        row = {"model_set": result["model_set"], "method": result["method"], "grouping": result["grouping"],
               "family": ("perturbation" if result["method"] in PRESETS else
                          "control" if result["method"] == "random" else "gradient"),
               "n_images": result.get("n_images")}
        for metric in PAIR_METRICS:
            mean, low, high = mean_ci([r[metric] for r in result["rows"]])
            row[metric], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = mean, low, high
        # MeGe / ReCo (Fel et al., WACV 2022) on held-out test images, distance sqrt(1 − |ρ|)
        same = [math.sqrt(max(0.0, 1 - abs(r["spearman"]))) for r in result["rows"]
                if r["a_correct"] and r["b_correct"] and math.isfinite(r["spearman"])]
        different = [math.sqrt(max(0.0, 1 - abs(r["spearman"]))) for r in result["rows"]
                     if r["a_correct"] != r["b_correct"] and math.isfinite(r["spearman"])]
        row["mege"], row["reco"] = mege(same), reco(same, different)
        for metric in ("noise_to_signal", "deletion_auc", "insertion_auc", "mu_fidelity", "relevance_mass",
                       "pointing_game", "sanity_spearman", "sanity_ssim"):
            if metric in result:
                mean, low, high = mean_ci(result[metric])
                row[metric], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = mean, low, high
        row["explain_seconds_per_model"] = result["explain_seconds_per_model"]
        summary.append(row)
    return summary


def variance_reduction_rows(results: list[dict]) -> list[dict]:
    """Variance-reduction check: for each pixel method and partition, the measured reduction factor
    tr(Σ)/tr(PΣ) across models (of unit-norm maps) against the mean segment size d/m (the factor
    for independent pixel noise), the bias ||μ − Pμ||²/||μ||², and the scale-free gain in
    noise-to-signal ratio (tr Σ/||μ||²)/(tr PΣ/||Pμ||²); plus the noise-to-signal gain of the
    grouped method itself (grouping inside samples) when it ran."""
    by_key = {(r["model_set"], r["method"], r["grouping"]): r for r in results}
    rows = []
    for (model_set, method, grouping), result in by_key.items():
        if grouping != "pixel" or "projection" not in result:
            continue
        for partition, values in result["projection"].items():
            grouped = by_key.get((model_set, method, partition))
            method_vr = float("nan")
            if grouped is not None:
                # the grouped method itself (grouping inside samples): ratio of noise-to-signal ratios
                ratios = [a / max(b, 1e-30) for a, b in zip(result["noise_to_signal"], grouped["noise_to_signal"])]
                method_vr = mean_ci(ratios)[0]
            vr, vr_low, vr_high = mean_ci(values["variance_reduction"])
            rows.append({
                "model_set": model_set, "method": method, "partition": partition,
                "mean_segment_size": values["mean_segment_size"], "projection_variance_reduction": vr,
                "vr_ci_low": vr_low, "vr_ci_high": vr_high,
                "bias_fraction": mean_ci(values["bias_fraction"])[0],
                "nsr_reduction": mean_ci(values["nsr_reduction"])[0],
                "grouped_method_nsr_reduction": method_vr,
            })
    return rows
