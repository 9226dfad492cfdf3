"""The cross-seed stability study: explain the same test images with K retrained models, for every
method × grouping, and measure how much the maps depend on training randomness (Gong et al.,
BMVC 2024; Ye & Farnia, AISTATS 2025; docs/methods.md §3).

Model sets play roles. ``main`` (the K retrained models) gets everything: pairwise similarity,
a test–retest repeat of every random explainer on every model (also given to the sets named in
``StudySettings.retest_sets``), fidelity, localisation and the sanity check. Every other set (``control``: the same data split, other seeds; ``untrained``:
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
import hashlib
import itertools
import time
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch

from ...explain.controls import RANDOM_MAP
from ...explain.explainers import explainer_registry, family
from ...explain.gradient.methods import METHODS, make_method
from ...explain.grouping import Partition, lag_weights, stationary_projection_energy
from ...explain.protocol import Explainer, attribute_groupings
from ...metrics.fidelity import deletion_insertion, mu_fidelity, output_drops, random_cell_subsets, randomised_copy
from ...metrics.similarity import (
    centred_unit_maps, degenerate_maps, grey_maps, pairwise_similarity, pairwise_metrics, spearman, ssim, unit_maps,
)
from ...metrics.localisation import pointing_game, relevance_mass
from ...explain.perturbation import PRESETS, make_preset
from ...explain.perturbation.presets import budget_options
from ...core.executor import SERIAL, Executor, check_executor
from ...core.seeding import derive
from ...core.settings import MAIN, StudySettings
from ...explain.segmentation import count_segments, make_segmenter, matched_grid
from ...core.version import source_hash
from ...core.storage import cached_unit, save_json_checked, tensor_digest

# What differs between the models of a set, for the variance decomposition.
VARIES = ("seed", "split", "both", "init")
SUPERPIXEL_FREE = ("pixel", "grid")


def explainer_seed(settings: StudySettings, model_set: str, index: int | str, repeat: int = 0) -> int:
    """The seed of the explainer's draws for model ``index`` of ``model_set`` (run ``repeat``).
    Independent draws: one stream per model and repeat. Common draws: one stream per repeat,
    shared by every model of every set."""
    if settings.draws == "common":
        # the sanity copy is another model: it keeps draws of its own even when models share theirs
        return derive(settings.seed, "explainer", "sanity", repeat) if index == "sanity" else derive(
            settings.seed, "explainer", repeat)
    return derive(settings.seed, "explainer", model_set, index, repeat)


def make_explainer(method_name: str, model, settings: StudySettings | None = None) -> Explainer:
    """The explainer registered as ``method_name`` (a gradient method, a perturbation preset or a
    control), built with the study's settings (the defaults without ``settings``): a gradient
    method groups inside each sample (``grouping="segments"``) and takes ``n_samples``,
    ``n_steps``, ``noise_level`` and ``rng`` where it reads them; a preset takes ``n_samples``
    as its budget when it has one; a control takes nothing."""
    registry = explainer_registry(method_name)
    if settings is None:
        return registry.lookup(method_name)(model)
    if registry is METHODS:
        return make_method(method_name, model, grouping="segments", n_samples=settings.n_samples,
                           n_steps=settings.n_steps, noise_level=settings.noise_level, rng=settings.rng)
    if registry is PRESETS:
        return make_preset(method_name, model, **budget_options(method_name, settings.n_samples))
    return registry.lookup(method_name)(model)


def method_is_random(method_name: str, model) -> bool:
    """Whether the method's maps depend on its seed (a test–retest repeat is then informative):
    the ``random`` of the explainer itself."""
    return make_explainer(method_name, model).random


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
    one set of model passes, drawing from ``seed``: the registered explainer (gradient method,
    perturbation preset or control) through :func:`stablesal.explain.protocol.attribute_groupings`.
    Gradient methods group inside each sample; the others are projected afterwards. An explainer
    that needs baselines gets :func:`shap_references`."""
    explainer = make_explainer(method_name, model, settings)
    kwargs = {"baselines": shap_references(images, seed)} if explainer.needs_baselines else {}
    return attribute_groupings(explainer, images, targets, partitions, seed=seed, **kwargs)


SHAP_REFERENCE_IMAGES = 8  # GradientSHAP's references: the batch's first images, shuffled, and black


def shap_references(images: torch.Tensor, seed: int) -> torch.Tensor:
    """References for GradientSHAP: the explained images' own pixels shuffled across positions
    (keeps the colour distribution, removes the object) plus a black image; the shuffle is part
    of the explainer's draws."""
    generator = torch.Generator().manual_seed(derive(seed, "gradient_shap-references"))
    flat = images.flatten(2)
    shuffled = flat[:, :, torch.randperm(flat.shape[2], generator=generator)].view_as(images)
    return torch.cat([shuffled[:SHAP_REFERENCE_IMAGES], torch.zeros_like(images[:1])])


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.double() - b.double()).flatten(1).square().sum(1)


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image inner products ``[B]`` of two stacks of maps (of centred unit maps: Pearson r)."""
    return (a.double() * b.double()).flatten(1).sum(1)


def run_unit(models: Sequence[torch.nn.Module], images: torch.Tensor, targets: torch.Tensor, masks, method_name: str,
             partitions: dict, settings: StudySettings, model_set: str, store=None) -> list[dict]:
    """One method on every model of one set under every grouping; one result per grouping.

    Every set: per (image, model pair) rows of the pairwise metrics on grey maps and of the
    squared distance between unit-norm signed maps. ``main`` also: the projection of the pixel
    maps onto every partition (measured and predicted, for the variance-reduction check),
    fidelity, localisation and sanity. Sets in ``settings.retest_sets``: a test–retest repeat of
    random explainers (per image and model: the pairwise metrics, the squared distance and
    whether the model is right). ``store`` (a :class:`stablesal.map_store.MapStore`) keeps the maps
    a later stage will ask for (the consensus: main and untrained models, first and repeat draws)."""
    began = time.perf_counter()
    main = model_set == MAIN
    groupings = {name: (None if name == "pixel" else partitions[name])
                 for name in study_groupings(settings.groupings, partitions)}
    random = make_explainer(method_name, models[0], settings).random
    retest = random and model_set in settings.retest_sets
    with torch.inference_mode():
        correct = [model(images).argmax(1).eq(targets).cpu() for model in models]
    greys = {name: [] for name in groupings}
    constant = {name: [] for name in groupings}  # [B] bool per model: its grey map is constant (degenerate)
    units = {name: [] for name in groupings}
    centred = {name: [] for name in groupings}  # centred unit maps: their inner products are Pearson r
    projected = {name: [] for name in partitions}  # P applied to the pixel unit maps, per model
    retest_rows = {name: [] for name in groupings}
    lags = {name: lag_weights(seg.cpu()) for name, seg in partitions.items()} if main and "pixel" in groupings else {}
    first_maps: dict[str, torch.Tensor] = {}
    explain_seconds = 0.0
    for index, model in enumerate(models):
        start = time.perf_counter()
        seed = explainer_seed(settings, model_set, index)
        maps = explain_groupings(method_name, model, seed, images, targets, groupings, settings)
        explain_seconds += time.perf_counter() - start
        _keep(store, method_name, model, seed, settings, images, targets, groupings, maps)
        for name, grouped in maps.items():
            greys[name].append(grey_maps(grouped).cpu())
            constant[name].append(degenerate_maps(greys[name][-1]))
            units[name].append(unit_maps(grouped).double().cpu())
            centred[name].append(centred_unit_maps(grouped).cpu())
        if lags:
            for name, segments in partitions.items():
                projected[name].append(Partition(segments.cpu()).project(units["pixel"][-1].unsqueeze(1))[:, 0])
        if retest:
            seed = explainer_seed(settings, model_set, index, repeat=1)
            again = explain_groupings(method_name, model, seed, images, targets, groupings, settings)
            _keep(store, method_name, model, seed, settings, images, targets, groupings, again)
            for name, grouped in again.items():
                grey_again = grey_maps(grouped).cpu()
                scores = pairwise_similarity(greys[name][-1], grey_again, pairwise_metrics())
                scores["sq_distance"] = _squared_distances(units[name][-1], unit_maps(grouped).cpu())
                scores["centred_cross"] = _inner(centred[name][-1], centred_unit_maps(grouped).cpu())
                flat = constant[name][-1] | degenerate_maps(grey_again)
                retest_rows[name] += [{"image": i, "model": index, "correct": bool(correct[index][i]),
                                       "degenerate": bool(flat[i]),
                                       **{k: NAN if flat[i] else float(v[i]) for k, v in scores.items()}}
                                      for i in range(images.shape[0])]
        if index == 0:
            first_maps = maps
    sanity_greys = {}
    control = family(method_name) == "control"  # its maps ignore the model: no sanity check
    if main and settings.sanity and not control:
        randomised = randomised_copy(models[0], seed=derive(settings.seed, "sanity", "weights"))
        sanity_maps = explain_groupings(method_name, randomised, explainer_seed(settings, model_set, "sanity"),
                                        images, targets, groupings, settings)
        sanity_greys = {name: grey_maps(m).cpu() for name, m in sanity_maps.items()}

    results = []
    for name in groupings:
        rows = []
        for a, b in itertools.combinations(range(len(models)), 2):
            scores = pairwise_similarity(greys[name][a], greys[name][b], pairwise_metrics())
            extra = {"sq_distance": _squared_distances(units[name][a], units[name][b]),
                     "centred_cross": _inner(centred[name][a], centred[name][b])}
            if name == "pixel" and lags:
                difference = units["pixel"][a] - units["pixel"][b]
                for partition in partitions:
                    extra[f"projected@{partition}"] = _squared_distances(projected[partition][a],
                                                                         projected[partition][b])
                    extra[f"predicted@{partition}"] = stationary_projection_energy(difference, lags[partition])
                    residual_a = units["pixel"][a] - projected[partition][a]
                    residual_b = units["pixel"][b] - projected[partition][b]
                    extra[f"residual_cross@{partition}"] = (residual_a * residual_b).flatten(1).sum(1)
            # a pair with a constant map has no similarity (SSIM would call two constant maps
            # identical): every value of its row is left out, and the row says why
            flat = constant[name][a] | constant[name][b]
            for image in range(images.shape[0]):
                rows.append({"model_set": model_set, "method": method_name, "grouping": name, "image": image,
                             "model_a": a, "model_b": b, "draws": settings.draws, "degenerate": bool(flat[image]),
                             **{k: NAN if flat[image] else float(v[image]) for k, v in scores.items()},
                             **{k: NAN if flat[image] else float(v[image]) for k, v in extra.items()},
                             "a_correct": bool(correct[a][image]), "b_correct": bool(correct[b][image])})
        result = {
            "model_set": model_set, "method": method_name, "family": family(method_name), "grouping": name,
            "rows": rows,
            "retest_rows": retest_rows[name], "random": random, "draws": settings.draws,
            "n_models": len(models), "n_images": int(images.shape[0]),
            "degenerate_maps": int(sum(int(flags.sum()) for flags in constant[name])),
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


NAN = float("nan")  # a value left out (a pair with a constant map)

_DROPS: OrderedDict[bytes, torch.Tensor] = OrderedDict()  # µFidelity's output drops of the last few models


def _output_drops(model, images, targets, subsets) -> torch.Tensor:
    """:func:`output_drops`, computed once per model, images and subsets: they do not depend on
    the explanation, and every method × grouping of a study asks for the same ones. Keyed by the
    content of the weights and inputs (not object ids), at most 8 entries of ``[B, S]``."""
    if not isinstance(model, torch.nn.Module):
        return output_drops(model, images, targets, subsets)
    digest = hashlib.blake2b(type(model).__qualname__.encode(), digest_size=16)
    for tensor in (*model.state_dict().values(), images, targets, subsets):
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
    key = digest.digest()
    if key not in _DROPS:
        _DROPS[key] = output_drops(model, images, targets, subsets)
        if len(_DROPS) > 8:
            _DROPS.popitem(last=False)
    return _DROPS[key].clone()


def _image_metrics(model, images, targets, masks, maps, settings: StudySettings) -> dict:
    """Fidelity (when :meth:`StudySettings.computes_fidelity` says so for these images) and
    localisation of model 0's maps, per image."""
    out = {}
    if settings.computes_fidelity(max(images.shape[-2:])):
        _, deletion = deletion_insertion(model, images, maps, targets, steps=settings.deletion_steps,
                                         mode="deletion", substrate=settings.deletion_substrate)
        _, insertion = deletion_insertion(model, images, maps, targets, steps=settings.deletion_steps,
                                          mode="insertion", substrate=settings.insertion_substrate)
        out["deletion_auc"], out["insertion_auc"] = deletion.tolist(), insertion.tolist()
        subsets = random_cell_subsets(images.shape[2], images.shape[3], settings.mu_fidelity_subsets,
                                      seed=derive(settings.seed, "mu_fidelity"))
        out["mu_fidelity"] = mu_fidelity(maps, subsets, _output_drops(model, images, targets, subsets)).tolist()
    if masks is not None:
        out["relevance_mass"] = relevance_mass(maps, masks).tolist()
        out["pointing_game"] = pointing_game(maps, masks).tolist()
    return out


def run_study(model_sets: dict[str, Sequence[torch.nn.Module]], images: torch.Tensor, targets: torch.Tensor,
              masks, settings: StudySettings, cache_dir: Path | str | None = None, progress: bool = True,
              identity: dict | None = None, include_random: bool = True, executor: Executor = SERIAL,
              varies: dict[str, str] | None = None, store=None) -> list[dict]:
    """Every unit of the study; finished units found in ``cache_dir`` are loaded, not recomputed.

    ``main`` gets everything; other sets (``control``, ``untrained``, the fold models of
    :mod:`stablesal.fold_study`) get pairwise quantities only (:func:`summarise` needs ``main``). ``varies`` says what differs between the models of each set (``seed``,
    ``split``, ``both``, ``init``); it is recorded in the results for the variance
    decomposition. ``identity`` (e.g. the model checkpoints' hashes and the data
    configuration) is part of the unit key, so changing the models or data recomputes. ``store``
    (a :class:`stablesal.map_store.MapStore`) keeps the main and untrained models' maps that a
    later stage will need (a cached unit keeps none: that stage then explains for itself).
    """
    check_executor(executor)
    if not model_sets:
        raise ValueError("model_sets must hold at least one set of models (the summary needs a 'main' set)")
    for name, models in model_sets.items():
        if len(models) < 2:
            raise ValueError(f"model set {name!r} has {len(models)} model(s); a stability study needs at least 2")
    varies = dict(varies or {})
    for name, value in varies.items():
        if value not in VARIES:
            raise ValueError(f"varies[{name!r}] must be one of {VARIES}, got {value!r}")
    _DROPS.clear()  # one study's drops: a model whose state does not say everything cannot leak across studies
    partitions = compute_partitions(images, settings.groupings, settings.n_segments)
    methods = list(settings.methods) + ([RANDOM_MAP] if include_random and RANDOM_MAP not in settings.methods else [])
    units = [(s, m) for s in model_sets for m in methods]
    results: dict[int, list] = {}
    pending = []
    for index, (model_set, method) in enumerate(units):
        path, cached = cached_unit(cache_dir, f"{model_set}-{method}-", {
            "settings": asdict(settings), "unit": [model_set, method], "identity": identity or {},
            "n_images": int(images.shape[0]), "images": tensor_digest(images, targets), "code": code_version(),
            "device": images.device.type})  # rng="auto" draws other streams on other devices
        if cached is not None:  # a missing, unfinished or corrupt (checksum) unit is recomputed
            results[index] = cached
            continue
        pending.append((index, model_set, method, path))

    def finished(position, unit):
        index, _, _, path = pending[position]
        if path is not None:
            save_json_checked(path, unit)  # as soon as it exists: an interrupted study keeps it
        results[index] = unit

    work = functools.partial(_study_unit, settings=settings, store=store)
    shared = (model_sets, images, targets, masks, partitions)
    executor.map(work, [(model_set, method) for _, model_set, method, _ in pending], on_result=finished,
                 desc="stability", progress=progress, shared=shared, describe=lambda unit: "/".join(unit))
    out = [row for index in range(len(units)) for row in results[index]]
    for result in out:
        result["varies"] = varies.get(result["model_set"])
    return out


def code_version() -> str:
    """The hash of the source that computes a unit's rows (:func:`stablesal.core.version.source_hash`
    of ``core``, ``explain``, ``metrics`` and ``studies/stability``): a cached unit computed by
    other code is recomputed, never silently reused."""
    return source_hash("core", "explain", "metrics", "studies/stability")


def _keep(store, method_name, model, seed, settings, images, targets, groupings, maps) -> None:
    if store is not None:
        for name, grouped in maps.items():
            store.put(method_name, model, seed, settings, name, images, targets, groupings[name], grouped)


def _study_unit(model_sets, images, targets, masks, partitions, unit, *, settings, store=None) -> list[dict]:
    """One model set × method (module level, so it pickles for process and Dask executors)."""
    model_set, method = unit
    return run_unit(model_sets[model_set], images, targets, masks, method, partitions, settings, model_set,
                    store if store is not None and model_set in store.sets else None)


# --------------------------------------------------------------------------------------
# Statistics of a finished study (every interval from the two-way design jackknife)
# --------------------------------------------------------------------------------------
