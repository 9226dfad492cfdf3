"""The cross-seed stability study: explain the same test images with K retrained models, for every
method × grouping, and measure how much the maps depend on training randomness (Gong et al.,
BMVC 2024; Ye & Farnia, AISTATS 2025; docs/methods.md §3).

Model sets play roles. ``main`` (the K retrained models) gets everything: pairwise similarity,
a test–retest repeat of every random explainer on every model, fidelity, localisation and the
sanity check. Every other set (``control``: the same data split, other seeds; ``untrained``:
the same architecture with fresh initialisations, never trained) gets the pairwise quantities
only, which is all the variance decomposition and the untrained-network null need.

Random explainers draw independently per model: model k of set s is explained with the seed
``derive(seed, "explainer", s, k, repeat)`` (and each image then derives its own generator
from it, so maps still do not depend on batch or chunk). ``draws="common"`` gives every model
the same draws; it is labelled in every result row and is never the default of a stability
number, because shared draws show up in every map and make unrelated models look alike.

Work is split into units (one model set × method, all groupings from the same model passes);
each unit's result is written atomically to ``<cache_dir>/<unit-hash>.json`` and reused on a
re-run, so an interrupted study resumes where it stopped. A unit holds the K maps of its images
(grey and unit-norm) and nothing of other units. Every statistic is computed afterwards from
per-pair and per-image rows, with intervals from :mod:`stablesal.intervals`.
"""

from __future__ import annotations

import functools
import itertools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .attribution import image_seeds, make_method
from .grouping import Partition, lag_weights, stationary_projection_energy
from .intervals import Weights, design_interval, image_mean, model_mean, pair_mean, rows_to_model_array, \
    rows_to_pair_array
from .metrics import (
    deletion_insertion, grey_maps, mu_fidelity, output_drops, pairwise_similarity, pointing_game, random_cell_subsets,
    randomised_copy, relevance_mass, spearman, ssim, unit_maps,
)
from .perturbation import PRESETS, make_preset
from .seeding import derive
from .segmentation import count_segments, make_segmenter, matched_grid
from .storage import cached_unit, save_json_checked

PAIR_METRICS = ("ssim", "spearman", "normalised_l2", "topk_intersection")
# Spearman's correction for attenuation needs a similarity whose chance level is 0: a rank
# correlation. SSIM and the top-k overlap sit above 0 for unrelated maps (top-k: 0.1), so a ratio to
# their retest value would call unrelated maps "as similar as the explainer allows".
CORRECTED_METRICS = ("spearman",)
DRAWS = ("independent", "common")
MAIN = "main"
# What differs between the models of a set, for the variance decomposition.
VARIES = ("seed", "split", "both", "init")
SUPERPIXEL_FREE = ("pixel", "grid")


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
    draws: str = "independent"       # independent | common (explainer draws shared by every model; labelled)
    retest: bool = True              # a second run of every random explainer on every main model

    def __post_init__(self) -> None:
        if self.draws not in DRAWS:
            raise ValueError(f"StudySettings.draws must be one of {DRAWS}, got {self.draws!r}")


def explainer_seed(settings: StudySettings, model_set: str, index: int | str, repeat: int = 0) -> int:
    """The seed of the explainer's draws for model ``index`` of ``model_set`` (run ``repeat``).
    Independent draws: one stream per model and repeat. Common draws: one stream per repeat,
    shared by every model of every set."""
    if settings.draws == "common":
        # the sanity copy is another model: it keeps draws of its own even when models share theirs
        return derive(settings.seed, "explainer", "sanity", repeat) if index == "sanity" else derive(
            settings.seed, "explainer", repeat)
    return derive(settings.seed, "explainer", model_set, index, repeat)


def method_is_random(method_name: str, model) -> bool:
    """Whether the method's maps depend on its seed (a test–retest repeat is then informative)."""
    if method_name == "random":
        return True
    if method_name in PRESETS:
        return make_preset(method_name, model).random
    return make_method(method_name, model).sampler.random


def random_maps(images: torch.Tensor, seed: int) -> torch.Tensor:
    """The i.i.d. random-map null: uniform maps, one generator per image derived from ``seed``."""
    return torch.stack([torch.rand(image.shape, generator=torch.Generator().manual_seed(s))
                        for image, s in zip(images.cpu(), image_seeds(images, seed))]).to(images.device)


def compute_partitions(images: torch.Tensor, groupings: Sequence[str], n_segments: int) -> dict[str, torch.Tensor]:
    """Segments for every grouping except ``pixel``. ``grid`` becomes one grid per super-pixel
    grouping, matched to its mean segment size (``grid@fastslic``, ...): the control that
    separates 'follows the object' from 'is coarser'. Without super-pixels it is a plain grid of
    about ``n_segments`` cells."""
    partitions: dict[str, torch.Tensor] = {}
    superpixels = [name for name in groupings if name not in SUPERPIXEL_FREE]
    for name in superpixels:
        partitions[name] = make_segmenter(name, n_segments=n_segments)(images)
        if "grid" in groupings:
            partitions[f"grid@{name}"] = matched_grid(partitions[name])(images)
    if "grid" in groupings and not superpixels:
        partitions["grid"] = make_segmenter("grid", n_segments=n_segments)(images)
    return partitions


def study_groupings(groupings: Sequence[str], partitions: dict) -> list[str]:
    """The grouping names a study reports: ``pixel`` (when asked) then every partition."""
    return (["pixel"] if "pixel" in groupings else []) + list(partitions)


def explain_groupings(method_name: str, model, seed: int, images, targets, partitions: dict,
                      settings: StudySettings) -> dict[str, torch.Tensor]:
    """Maps of one model under every grouping (``partitions``: name → segments or None), from
    one set of model passes, drawing from ``seed``. Gradient methods group inside each sample;
    perturbation presets and the random map are projected afterwards."""
    if method_name == "random" or method_name in PRESETS:
        if method_name == "random":
            maps = random_maps(images, seed)
        else:
            options = {"n_masks": settings.perturbation_samples} if method_name == "rise" else (
                {"n_samples": settings.perturbation_samples} if method_name in ("lime", "kernel_shap") else {})
            maps = make_preset(method_name, model, **options).attribute(images, target=targets, seed=seed)
        return {name: maps if seg is None else Partition(seg).project(maps) for name, seg in partitions.items()}
    method = make_method(method_name, model, grouping="segments", n_samples=settings.n_samples,
                         n_steps=settings.n_steps, noise_level=settings.noise_level)
    kwargs = {"baselines": shap_references(images, seed)} if method_name == "gradient_shap" else {}
    return method.attribute_groupings(images, target=targets, groupings=partitions, seed=seed, **kwargs)


def shap_references(images: torch.Tensor, seed: int) -> torch.Tensor:
    """References for GradientSHAP: the explained images' own pixels shuffled across positions
    (keeps the colour distribution, removes the object) plus a black image; the shuffle is part
    of the explainer's draws."""
    generator = torch.Generator().manual_seed(derive(seed, "gradient_shap-references"))
    flat = images.flatten(2)
    shuffled = flat[:, :, torch.randperm(flat.shape[2], generator=generator)].view_as(images)
    return torch.cat([shuffled[:8], torch.zeros_like(images[:1])])


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.double() - b.double()).flatten(1).square().sum(1)


def run_unit(models: Sequence[torch.nn.Module], images: torch.Tensor, targets: torch.Tensor, masks, method_name: str,
             partitions: dict, settings: StudySettings, model_set: str) -> list[dict]:
    """One method on every model of one set under every grouping; one result per grouping.

    Every set: per (image, model pair) rows of the pairwise metrics on grey maps and of the
    squared distance between unit-norm signed maps. ``main`` also: the projection of the pixel
    maps onto every partition (measured and predicted, for the variance-reduction check), a
    test–retest repeat of random explainers, fidelity, localisation and sanity."""
    began = time.perf_counter()
    main = model_set == MAIN
    groupings = {name: (None if name == "pixel" else partitions[name])
                 for name in study_groupings(settings.groupings, partitions)}
    random = method_is_random(method_name, models[0])
    retest = main and random and settings.retest
    with torch.inference_mode():
        correct = [model(images).argmax(1).eq(targets).cpu() for model in models]
    greys = {name: [] for name in groupings}
    units = {name: [] for name in groupings}
    projected = {name: [] for name in partitions}  # P applied to the pixel unit maps, per model
    retest_rows = {name: [] for name in groupings}
    lags = {name: lag_weights(seg.cpu()) for name, seg in partitions.items()} if main and "pixel" in groupings else {}
    first_maps: dict[str, torch.Tensor] = {}
    explain_seconds = 0.0
    for index, model in enumerate(models):
        start = time.perf_counter()
        maps = explain_groupings(method_name, model, explainer_seed(settings, model_set, index), images, targets,
                                 groupings, settings)
        explain_seconds += time.perf_counter() - start
        for name, grouped in maps.items():
            greys[name].append(grey_maps(grouped).cpu())
            units[name].append(unit_maps(grouped).double().cpu())
        if lags:
            for name, segments in partitions.items():
                projected[name].append(Partition(segments.cpu()).project(units["pixel"][-1].unsqueeze(1))[:, 0])
        if retest:
            again = explain_groupings(method_name, model, explainer_seed(settings, model_set, index, repeat=1),
                                      images, targets, groupings, settings)
            for name, grouped in again.items():
                scores = pairwise_similarity(greys[name][-1], grey_maps(grouped).cpu(), PAIR_METRICS)
                distance = _squared_distances(units[name][-1], unit_maps(grouped).cpu())
                retest_rows[name] += [{"image": i, "model": index, "sq_distance": float(distance[i]),
                                       **{k: float(v[i]) for k, v in scores.items()}}
                                      for i in range(images.shape[0])]
        if index == 0:
            first_maps = maps
    sanity_greys = {}
    if main and settings.sanity and method_name != "random":
        randomised = randomised_copy(models[0], seed=derive(settings.seed, "sanity", "weights"))
        sanity_maps = explain_groupings(method_name, randomised, explainer_seed(settings, model_set, "sanity"),
                                        images, targets, groupings, settings)
        sanity_greys = {name: grey_maps(m).cpu() for name, m in sanity_maps.items()}

    results = []
    for name in groupings:
        rows = []
        for a, b in itertools.combinations(range(len(models)), 2):
            scores = pairwise_similarity(greys[name][a], greys[name][b], PAIR_METRICS)
            extra = {"sq_distance": _squared_distances(units[name][a], units[name][b])}
            if name == "pixel" and lags:
                difference = units["pixel"][a] - units["pixel"][b]
                for partition in partitions:
                    extra[f"projected@{partition}"] = _squared_distances(projected[partition][a],
                                                                         projected[partition][b])
                    extra[f"predicted@{partition}"] = stationary_projection_energy(difference, lags[partition])
                    residual_a = units["pixel"][a] - projected[partition][a]
                    residual_b = units["pixel"][b] - projected[partition][b]
                    extra[f"residual_cross@{partition}"] = (residual_a * residual_b).flatten(1).sum(1)
            for image in range(images.shape[0]):
                rows.append({"model_set": model_set, "method": method_name, "grouping": name, "image": image,
                             "model_a": a, "model_b": b, "draws": settings.draws,
                             **{k: float(v[image]) for k, v in scores.items()},
                             **{k: float(v[image]) for k, v in extra.items()},
                             "a_correct": bool(correct[a][image]), "b_correct": bool(correct[b][image])})
        result = {
            "model_set": model_set, "method": method_name, "grouping": name, "rows": rows,
            "retest_rows": retest_rows[name], "random": random, "draws": settings.draws,
            "n_models": len(models), "n_images": int(images.shape[0]),
            "explain_seconds_per_model": explain_seconds / len(models),  # all groupings together
        }
        if groupings[name] is not None:
            segments = groupings[name]
            sizes = images.shape[2] * images.shape[3] / count_segments(segments).double()
            result["mean_segments"] = float(count_segments(segments).double().mean())
            result["mean_segment_size"] = float(sizes.mean())
        if main:
            result.update(_image_metrics(models[0], images, targets, masks, first_maps[name], settings))
            if name in sanity_greys:
                result["sanity_spearman"] = spearman(greys[name][0], sanity_greys[name]).tolist()
                result["sanity_ssim"] = ssim(greys[name][0], sanity_greys[name]).tolist()
        results.append(result)
    for result in results:
        result["seconds"] = (time.perf_counter() - began) / len(results)
    return results


def _image_metrics(model, images, targets, masks, maps, settings: StudySettings) -> dict:
    """Fidelity and localisation of model 0's maps, per image."""
    out = {}
    _, deletion = deletion_insertion(model, images, maps, targets, steps=settings.deletion_steps,
                                     mode="deletion", substrate=settings.deletion_substrate)
    _, insertion = deletion_insertion(model, images, maps, targets, steps=settings.deletion_steps,
                                      mode="insertion", substrate=settings.insertion_substrate)
    out["deletion_auc"], out["insertion_auc"] = deletion.tolist(), insertion.tolist()
    subsets = random_cell_subsets(images.shape[2], images.shape[3], settings.mu_fidelity_subsets,
                                  seed=derive(settings.seed, "mu_fidelity"))
    out["mu_fidelity"] = mu_fidelity(maps, subsets, output_drops(model, images, targets, subsets)).tolist()
    if masks is not None:
        out["relevance_mass"] = relevance_mass(maps, masks).tolist()
        out["pointing_game"] = pointing_game(maps, masks).tolist()
    return out


def run_study(model_sets: dict[str, Sequence[torch.nn.Module]], images: torch.Tensor, targets: torch.Tensor,
              masks, settings: StudySettings, cache_dir: Path | str | None = None, progress: bool = True,
              identity: dict | None = None, include_random: bool = True, executor=None,
              varies: dict[str, str] | None = None) -> list[dict]:
    """Every unit of the study; finished units found in ``cache_dir`` are loaded, not recomputed.

    ``model_sets`` must contain ``"main"``; other sets (``control``, ``untrained``) get pairwise
    quantities only. ``varies`` says what differs between the models of each set (``seed``,
    ``split``, ``both``, ``init``); it is recorded in the results for the variance
    decomposition. ``identity`` (e.g. the model checkpoints' hashes and the data
    configuration) is part of the unit key, so changing the models or data recomputes.
    """
    if MAIN not in model_sets:
        raise ValueError(f"model_sets must contain a {MAIN!r} set, got {sorted(model_sets)}")
    for name, models in model_sets.items():
        if len(models) < 2:
            raise ValueError(f"model set {name!r} has {len(models)} model(s); a stability study needs at least 2")
    varies = dict(varies or {})
    for name, value in varies.items():
        if value not in VARIES:
            raise ValueError(f"varies[{name!r}] must be one of {VARIES}, got {value!r}")
    partitions = compute_partitions(images, settings.groupings, settings.n_segments)
    methods = list(settings.methods) + (["random"] if include_random and "random" not in settings.methods else [])
    units = [(s, m) for s in model_sets for m in methods]
    results: dict[int, list] = {}
    pending = []
    for index, (model_set, method) in enumerate(units):
        path, cached = cached_unit(cache_dir, f"{model_set}-{method}-", {
            "settings": asdict(settings), "unit": [model_set, method], "identity": identity or {},
            "n_images": int(images.shape[0]), "code": code_version()})
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
    out = [row for index in range(len(units)) for row in results[index]]
    for result in out:
        result["varies"] = varies.get(result["model_set"])
    return out


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of the source of every module that computes a unit's rows (explainers, metrics,
    grouping, segmentation, perturbation, this study): a cached unit computed by other code is
    recomputed, never silently reused."""
    import hashlib

    root = Path(__file__).resolve().parent
    files = sorted([root / f"{name}.py" for name in ("stability", "metrics", "grouping", "segmentation", "attribution",
                                                     "sampling", "seeding", "checks")]
                   + list((root / "perturbation").glob("*.py")))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _study_unit(model_sets, images, targets, masks, partitions, unit, *, settings) -> list[dict]:
    """One model set × method (module level, so it pickles for process and Dask executors)."""
    model_set, method = unit
    return run_unit(model_sets[model_set], images, targets, masks, method, partitions, settings, model_set)


# --------------------------------------------------------------------------------------
# Statistics of a finished study (every interval from the two-way design jackknife)
# --------------------------------------------------------------------------------------

class UnitArrays:
    """The rows of one method × grouping, across model sets, as arrays for weighted statistics:
    ``pair(set, key)`` → ``[n, K, K]``, ``retest(key)`` → ``[n, K_main]``, ``image(key)`` → ``[n]``."""

    def __init__(self, by_set: dict[str, dict]):
        self.by_set = by_set
        main = by_set[MAIN]
        self.n_images = main["n_images"]
        self.counts = {name: result["n_models"] for name, result in by_set.items()}
        self._cache: dict = {}

    def pair(self, model_set: str, key: str) -> np.ndarray:
        if (model_set, key) not in self._cache:
            result = self.by_set[model_set]
            self._cache[(model_set, key)] = rows_to_pair_array(result["rows"], key, self.n_images,
                                                               result["n_models"])
        return self._cache[(model_set, key)]

    def retest(self, key: str) -> np.ndarray:
        if ("retest", key) not in self._cache:
            self._cache[("retest", key)] = rows_to_model_array(self.by_set[MAIN]["retest_rows"], key, self.n_images,
                                                               self.counts[MAIN])
        return self._cache[("retest", key)]

    def image(self, key: str) -> np.ndarray:
        return np.asarray(self.by_set[MAIN][key], dtype=float)

    def has_retest(self) -> bool:
        return bool(self.by_set[MAIN].get("retest_rows"))

    def interval(self, statistic, sets=(MAIN,), conditional: bool = False):
        return design_interval(statistic, self.n_images, {s: self.counts[s] for s in sets if s in self.counts},
                               conditional=conditional)


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN where the denominator is 0 or not finite."""
    if not np.isfinite(denominator) or denominator == 0:
        return float("nan")
    return numerator / denominator


def _ceiling(units: UnitArrays, metric: str, weights: Weights) -> float:
    """The test–retest value of ``metric``: a second run on the same model with another seed.
    Deterministic explainers reproduce themselves exactly (1 for similarities, 0 for the distance)."""
    if not units.by_set[MAIN]["random"]:
        return 0.0 if metric == "normalised_l2" else 1.0
    return model_mean(units.retest(metric), weights, MAIN)


def variance_components(units: UnitArrays, weights: Weights) -> dict[str, float]:
    """Method-of-moments variance components of the unit-norm maps (summed over pixels, averaged
    over images) from the nested design: explainer draws within a model, seeds within a split,
    splits (Searle, Casella & McCulloch 1992, ch. 3). ``V(set)`` is the mean over model pairs of
    ‖u_a − u_b‖²/2, the unbiased across-model variance; the explainer component is the same from
    the test–retest pairs. Components can come out negative (estimation noise); they are
    reported as estimated."""
    main_varies = units.by_set[MAIN].get("varies")
    if units.has_retest():
        explainer = model_mean(units.retest("sq_distance"), weights, MAIN) / 2
    elif units.by_set[MAIN]["random"]:
        explainer = float("nan")  # a random explainer without a retest: its own noise is not measured
    else:
        explainer = 0.0
    v_main = pair_mean(units.pair(MAIN, "sq_distance"), weights, MAIN) / 2
    control = units.by_set.get("control")
    v_control = (pair_mean(units.pair("control", "sq_distance"), weights, "control") / 2
                 if control is not None and control.get("varies") == "seed" else None)
    out = {"explainer": explainer, "total": v_main}
    if main_varies == "seed":
        out["seed"] = v_main - explainer
    elif main_varies == "both" and v_control is not None:
        out["seed"], out["split"] = v_control - explainer, v_main - v_control
    elif main_varies == "split":
        out["split"] = v_main - explainer
        if v_control is not None:
            out["seed"] = v_control - explainer
            out["total"] = explainer + out["split"] + out["seed"]
    else:  # what the models differ in is unknown or confounded: one 'models' component
        out["models"] = v_main - explainer
    return out


def _share(units: UnitArrays, component: str, weights: Weights) -> float:
    """One variance component as a share of the total, from one evaluation of the components."""
    components = variance_components(units, weights)
    return ratio(components[component], components["total"])


def _group_results(results: list[dict]) -> dict[tuple[str, str], dict[str, dict]]:
    grouped: dict[tuple[str, str], dict[str, dict]] = {}
    for result in results:
        grouped.setdefault((result["method"], result["grouping"]), {})[result["model_set"]] = result
    return grouped


def family(method: str) -> str:
    return "perturbation" if method in PRESETS else "control" if method == "random" else "gradient"


def summarise(results: list[dict]) -> list[dict]:
    """One row per model set × method × grouping. Every set: the mean pairwise metrics with
    design intervals. ``main`` rows add the test–retest ceiling, the similarity relative to it
    (Spearman's correction for attenuation), the untrained-network null and the difference above
    it, the variance decomposition, and model 0's fidelity, localisation and sanity."""
    summary = []
    for (method, grouping), by_set in _group_results(results).items():
        if MAIN not in by_set:
            continue
        units = UnitArrays(by_set)
        for model_set, result in by_set.items():
            row = {"model_set": model_set, "method": method, "grouping": grouping, "family": family(method),
                   "draws": result.get("draws", "independent"), "n_images": result["n_images"],
                   "n_models": result["n_models"], "random": result.get("random")}
            if "mean_segment_size" in result:
                row["mean_segment_size"] = result["mean_segment_size"]
            for metric in PAIR_METRICS + ("sq_distance",):
                row.update(units.interval(lambda w, m=metric, s=model_set: pair_mean(units.pair(s, m), w, s),
                                          (model_set,)).as_dict(metric))
            if model_set == MAIN:
                row.update(_main_statistics(units))
            row["explain_seconds_per_model"] = result["explain_seconds_per_model"]
            summary.append(row)
    return summary


def _main_statistics(units: UnitArrays) -> dict:
    row = {}
    main = units.by_set[MAIN]
    row["retest_exact"] = not main["random"]
    row["n_control"], row["n_untrained"] = units.counts.get("control", 0), units.counts.get("untrained", 0)
    for metric in PAIR_METRICS:
        row.update(units.interval(lambda w, m=metric: _ceiling(units, m, w)).as_dict(f"{metric}_retest"))
    for metric in CORRECTED_METRICS:
        # Spearman's (1904) correction for attenuation with equal reliabilities: r_ab / √(r_aa r_bb)
        # = r_ab / r_retest, the between-model similarity as a share of what the explainer's own
        # sampling noise lets two runs of one model reach. Undefined (NaN) when the ceiling itself
        # cannot be told from 0: nothing is reproducible enough to correct for.
        if not row[f"{metric}_retest_ci_low"] > 0:
            row.update({f"{metric}_corrected": float("nan"), f"{metric}_corrected_ci_low": float("nan"),
                        f"{metric}_corrected_ci_high": float("nan")})
            continue
        row.update(units.interval(
            lambda w, m=metric: ratio(pair_mean(units.pair(MAIN, m), w, MAIN), _ceiling(units, m, w))
        ).as_dict(f"{metric}_corrected"))
    if "untrained" in units.by_set:
        for metric in PAIR_METRICS:
            row.update(units.interval(lambda w, m=metric: pair_mean(units.pair("untrained", m), w, "untrained"),
                                      ("untrained",)).as_dict(f"{metric}_untrained"))
            row.update(units.interval(
                lambda w, m=metric: pair_mean(units.pair(MAIN, m), w, MAIN)
                - pair_mean(units.pair("untrained", m), w, "untrained"),
                (MAIN, "untrained")).as_dict(f"{metric}_above_untrained"))
    if "control" in units.by_set:
        # main (splits and seeds differ) minus control (seeds only): what disjoint data adds
        row.update(units.interval(
            lambda w: pair_mean(units.pair(MAIN, "spearman"), w, MAIN)
            - pair_mean(units.pair("control", "spearman"), w, "control"),
            (MAIN, "control")).as_dict("spearman_main_minus_control"))
    sets = tuple(s for s in (MAIN, "control") if s in units.by_set)
    components = variance_components(units, Weights.ones(units.n_images, units.counts))
    for component in components:
        if component == "total":
            continue
        row.update(units.interval(lambda w, c=component: _share(units, c, w), sets).as_dict(f"share_{component}"))
    row.update(units.interval(lambda w: variance_components(units, w)["total"], sets).as_dict("variance_total"))
    same, different = _mege_distances(main)
    from .metrics import mege, reco

    row["mege"], row["reco"] = mege(same), reco(same, different)
    for metric in ("deletion_auc", "insertion_auc", "mu_fidelity", "relevance_mass", "pointing_game",
                   "sanity_spearman", "sanity_ssim"):
        if metric in main:
            values = units.image(metric)
            # model 0's maps only: an interval over images, conditional on model 0
            row.update(units.interval(lambda w, v=values: image_mean(v, w), (), conditional=True).as_dict(metric))
    return row


def _mege_distances(main: dict) -> tuple[list, list]:
    """MeGe / ReCo (Fel et al., WACV 2022) distances √(1 − |ρ|) on the held-out test images:
    pairs where both models are right (S=) and where exactly one is (S≠)."""
    import math

    same = [math.sqrt(max(0.0, 1 - abs(r["spearman"]))) for r in main["rows"]
            if r["a_correct"] and r["b_correct"] and np.isfinite(r["spearman"])]
    different = [math.sqrt(max(0.0, 1 - abs(r["spearman"]))) for r in main["rows"]
                 if r["a_correct"] != r["b_correct"] and np.isfinite(r["spearman"])]
    return same, different


def grouping_contrast(grouped: dict, method: str, grouping: str, reference: str) -> dict | None:
    """``grouping`` − ``reference`` for one method on the main models: every pairwise metric
    (design interval: same models, same images), model 0's fidelity and localisation (interval
    over images) and, when both are partitions of the pixel maps, the bias of the projection."""
    first, second = grouped.get((method, grouping), {}).get(MAIN), grouped.get((method, reference), {}).get(MAIN)
    if first is None or second is None:
        return None
    a, b = UnitArrays({MAIN: first}), UnitArrays({MAIN: second})
    row = {"method": method, "grouping": grouping, "reference": reference,
           "segment_size": first.get("mean_segment_size", 1.0), "reference_segment_size":
           second.get("mean_segment_size", 1.0)}
    for metric in PAIR_METRICS:
        row.update(a.interval(lambda w, m=metric: pair_mean(a.pair(MAIN, m), w, MAIN)
                              - pair_mean(b.pair(MAIN, m), w, MAIN)).as_dict(f"{metric}_difference"))
    for metric in ("deletion_auc", "insertion_auc", "mu_fidelity", "relevance_mass", "pointing_game"):
        if metric in first and metric in second:
            difference = a.image(metric) - b.image(metric)
            row.update(a.interval(lambda w, v=difference: image_mean(v, w), (), conditional=True)
                       .as_dict(f"{metric}_difference"))
    pixel = grouped.get((method, "pixel"), {}).get(MAIN)
    if pixel is not None and pixel["rows"] and all(f"residual_cross@{g}" in pixel["rows"][0]
                                                   for g in (grouping, reference)):
        units = UnitArrays({MAIN: pixel})
        resolved = signal_resolved(units)
        row.update(units.interval(lambda w: _bias(units, grouping, w) - _bias(units, reference, w) if resolved
                                  else float("nan")).as_dict("bias_difference"))
    return row


def grid_contrast_rows(results: list[dict]) -> list[dict]:
    """Every super-pixel grouping against its size-matched grid (``grid@<name>``), every method."""
    grouped = _group_results(results)
    rows = []
    for method, grouping in grouped:
        if grouping.startswith("grid@"):
            row = grouping_contrast(grouped, method, grouping.split("@", 1)[1], grouping)
            if row is not None:
                rows.append(row)
    return rows


def pixel_contrast_rows(results: list[dict]) -> list[dict]:
    """Every grouping against the pixel map of the same method (grouped − pixel)."""
    grouped = _group_results(results)
    rows = []
    for method, grouping in grouped:
        if grouping != "pixel":
            row = grouping_contrast(grouped, method, grouping, "pixel")
            if row is not None:
                rows.append(row)
    return rows


def _bias(units: UnitArrays, partition: str, weights: Weights) -> float:
    """‖μ − Pμ‖²/‖μ‖² of the mean unit map μ across models, each norm estimated without the
    noise bias of a K-model mean: ⟨x_a, x_b⟩ averaged over model pairs a ≠ b."""
    cross = 1 - units.pair(MAIN, "sq_distance") / 2  # ⟨u_a, u_b⟩ of unit-norm maps
    return ratio(pair_mean(units.pair(MAIN, f"residual_cross@{partition}"), weights, MAIN),
                 pair_mean(cross, weights, MAIN))


def signal_resolved(units: UnitArrays) -> bool:
    """Whether ‖μ‖², estimated as the mean ⟨u_a, u_b⟩ over model pairs, is above 0 with 95 %
    confidence. Bias and noise-to-signal ratios divide by it: when its interval reaches 0 they
    have no bound and are reported as NaN."""
    cross = 1 - units.pair(MAIN, "sq_distance") / 2
    return bool(units.interval(lambda w: pair_mean(cross, w, MAIN)).low > 0)


def _noise_to_signal(units: UnitArrays, key: str, weights: Weights) -> float:
    """tr(Σ)/‖μ‖² of unit-norm maps, both unbiased: v/(1 − v) with v the mean ‖u_a − u_b‖²/2."""
    v = pair_mean(units.pair(MAIN, key), weights, MAIN) / 2
    return ratio(v, 1 - v)


def variance_reduction_rows(results: list[dict]) -> list[dict]:
    """The variance-reduction check for every method × partition, as predictions that can fail.

    * ``measured``: tr(Σ)/tr(PΣ) of the pixel maps across models (unit norm), from model pairs;
    * ``independent``: d/m, the mean segment size, what independent pixels would give;
    * ``predicted``: what the spatial correlation of the maps' differences predicts if it were
      the same everywhere in the image (:func:`stablesal.grouping.stationary_projection_energy`);
    * ``bias``: ‖μ − Pμ‖²/‖μ‖², the share of the mean map grouping discards;
    * ``nsr_gain``: the noise-to-signal ratio tr(Σ)/‖μ‖² of the pixel method over that of the
      grouped method *as computed* (grouping inside each sample for gradient methods): below 1,
      grouping made the map noisier relative to its signal.
    """
    grouped = _group_results(results)
    rows = []
    for (method, grouping), by_set in grouped.items():
        main = by_set.get(MAIN)
        if grouping != "pixel" or main is None or not main["rows"]:
            continue
        units = UnitArrays({MAIN: main})
        resolved = signal_resolved(units)  # one per method: it reads the pixel maps only
        for key in main["rows"][0]:
            if not key.startswith("projected@"):
                continue
            partition = key.split("@", 1)[1]
            segment = grouped.get((method, partition), {}).get(MAIN, {})
            size = segment.get("mean_segment_size", float("nan"))
            row = {"method": method, "partition": partition, "mean_segment_size": size}
            row.update(units.interval(lambda w, p=partition: ratio(
                pair_mean(units.pair(MAIN, "sq_distance"), w, MAIN),
                pair_mean(units.pair(MAIN, f"projected@{p}"), w, MAIN))).as_dict("measured"))
            row.update(units.interval(lambda w, p=partition: ratio(
                pair_mean(units.pair(MAIN, "sq_distance"), w, MAIN),
                pair_mean(units.pair(MAIN, f"predicted@{p}"), w, MAIN))).as_dict("predicted"))
            row.update(units.interval(lambda w, p=partition: ratio(
                pair_mean(units.pair(MAIN, f"predicted@{p}"), w, MAIN),
                pair_mean(units.pair(MAIN, f"projected@{p}"), w, MAIN))).as_dict("measured_over_predicted"))
            row["signal_resolved"] = resolved
            row.update(units.interval(lambda w, p=partition: _bias(units, p, w) if resolved else float("nan"))
                       .as_dict("bias"))
            if segment:
                grouped_units = UnitArrays({MAIN: segment})
                both_resolved = resolved and signal_resolved(grouped_units)
                row.update(units.interval(lambda w: ratio(
                    _noise_to_signal(units, "sq_distance", w),
                    _noise_to_signal(grouped_units, "sq_distance", w)) if both_resolved else float("nan")
                ).as_dict("nsr_gain"))
            rows.append(row)
    return rows
