"""The consensus and planner stage: for every method × grouping, the consensus map of the trained
models, its false-discovery calibration under nulls where no region is consistent, its power on the
object masks, and the planner's predictions with their validation on held-out models
(docs/methods.md §7).

Two tests, which answer different questions. *Trained vs <reference>* (the permutation test
against a null family of models: random-label, BN-calibrated or untrained networks, named by its
set) asks which regions the trained models rank higher than models that learned nothing about the
classes: learning beyond that null; it is the consensus the page leads with. The *rank-sum* test
asks only which regions the trained models agree on: agreement among trained models, which
untrained networks show too (edges, architecture), so it never reads as learning and never
headlines.

One unit per method × grouping, cached and resumed like the stability study's units. A unit
explains every trained model once (the pilot models, random methods, twice) and every reference
model once; what it keeps is region ranks, running means and, for the validation, the held-out
models' grey maps (and the pilot's and the reference models' centred maps, for the planner).
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from dataclasses import replace
from tqdm.auto import tqdm
import hashlib

from .test import (
    ConsensusMap, consensus_regions, consensus_test, explain_one, false_discovery_proportions, model_ranks,
    model_seed, permutation_calibration, permuted_ranks, subset_calibration,
)
from ...metrics.similarity import grey_maps
from ...metrics.agreement import mean_ci
from .planner import (
    RESAMPLES, PilotAccumulator, Plan, held_out_reliability, make_plan, predicted_reliability, reliability_curve,
)
from ...core.seeding import derive
from ...core.settings import ConsensusSettings, StudySettings
from ..stability.run import code_version, explain_groupings, method_is_random
from ...core.storage import atomic_write_bytes, cached_unit, save_json_checked, tensor_digest
from .planner import pilot

VALIDATION_MODELS = (4, 8)   # K′ at which the planner is checked against held-out groups
EXAMPLE_IMAGES = 4           # images whose single-model maps are kept for the overlay figure


def smallest_p(test: str, n_models: int, n_reference: int, n_regions: int, n_permutations: int) -> float:
    """The smallest p-value a test gives, for the most extreme region possible: R^−K for the
    rank-sum test; for the permutation test, 1/C(K + L, K) when the C relabellings are enumerated
    (C ≤ B: the exact test), else the expected Monte Carlo p-value of a region that only the
    observed relabelling (and its 1/C share of the B random ones) reaches, (1 + B/C) / (1 + B),
    never below 1/(B + 1)."""
    if test == "rank-sum":
        return float(n_regions) ** -n_models
    relabellings = math.comb(n_models + n_reference, n_models)
    if relabellings <= n_permutations:
        return 1.0 / relabellings
    return (1.0 + n_permutations / relabellings) / (1.0 + n_permutations)


def models_for_lone_region(threshold: float, n_permutations: int) -> int | None:
    """The fewest K (with as many reference models) whose permutation test can give a lone region
    a p-value at or below ``threshold``; None when ``n_permutations`` itself is the bound (then
    more permutations are needed, not more models)."""
    if 1.0 / (n_permutations + 1) > threshold:
        return None
    for k in range(1, 64):
        if smallest_p("permutation", k, k, 0, n_permutations) <= threshold:
            return k
    return None


MAX_REFERENCE = 100_000  # the search bound of :func:`reference_models_needed`


def reference_models_needed(n_models: int, threshold: float, n_permutations: int) -> int | None:
    """The fewest reference models R that, beside the unit's ``n_models`` trained ones, let the
    permutation test's smallest p-value (:func:`smallest_p`, which depends only on the
    C(K + R, K) relabellings and B) reach ``threshold``; None when B = ``n_permutations`` is the
    bound (p ≥ 1/(B + 1): more permutations are needed) or no R up to MAX_REFERENCE does. A scan,
    not a bisection: the smallest p-value jumps up where C first exceeds B (exact test → Monte
    Carlo)."""
    if 1.0 / (n_permutations + 1) >= threshold:  # exact: p ≥ 1/B; Monte Carlo: p > 1/(B + 1)
        return None
    for reference in range(1, MAX_REFERENCE + 1):
        if smallest_p("permutation", n_models, reference, 0, n_permutations) <= threshold:
            return reference
    return None


def reachability(row: dict, test: str, n_regions: int, q: float, n_permutations: int) -> dict:
    """What BH can find with this test and these models. Benjamini–Hochberg rejects the i smallest
    p-values when p_(i) ≤ q·i/R: with every region at the smallest p-value it can reject only if
    that is ≤ q, and a single consistent region among R needs p ≤ q/R. For the permutation test,
    where that fails: the fewest reference models, beside these K trained ones, that would make
    any region (``reference_for_discovery``) or a lone region (``reference_for_lone_region``)
    reachable; reference models of a null family (untrained, random-label) need no labels, so they
    can be many."""
    smallest = smallest_p(test, row["n_models"], row["n_reference"], n_regions, n_permutations)
    lone = q / n_regions
    out = {"smallest_p": smallest, "lone_region_threshold": lone, "can_discover": smallest <= q,
           "can_find_lone_region": smallest <= lone}
    if test != "rank-sum" and not out["can_find_lone_region"]:
        out["models_for_lone_region"] = models_for_lone_region(lone, n_permutations)
        out["permutations_for_lone_region"] = math.ceil(1.0 / lone)
        out["reference_for_lone_region"] = reference_models_needed(row["n_models"], lone, n_permutations)
        if not out["can_discover"]:
            out["reference_for_discovery"] = reference_models_needed(row["n_models"], q, n_permutations)
    return out


def two_sample_name(reference_name: str) -> str:
    """The two-sample test's name: ``"trained vs <reference set>"`` (``"trained vs untrained"``
    for untrained networks, the name results before the null families carry)."""
    return f"trained vs {reference_name}"


def two_sample_permutation_calibration(ranks: np.ndarray, reference: np.ndarray, settings: ConsensusSettings,
                                       seed: int, reference_name: str = "untrained") -> dict:
    """The trained-vs-reference test under the permutation null: every map of both sets permuted
    independently across regions, ``settings.calibration_studies`` times."""
    n_regions = np.isfinite(ranks[0]).sum(1)
    per_study = []
    for study in range(settings.calibration_studies):
        pooled = permuted_ranks(np.concatenate([ranks, reference]), derive(seed, "calibration", study))
        _, significant = consensus_test(pooled[: len(ranks)], n_regions, pooled[len(ranks):], q=settings.q,
                                        procedure=settings.procedure, scope=settings.scope,
                                        n_permutations=settings.n_permutations,
                                        seed=derive(seed, "permutations", study))
        per_study.append(float(false_discovery_proportions(significant, scope=settings.scope).mean()))
    fdr, low, high = mean_ci(per_study)
    return {"null": "permuted", "n_studies": settings.calibration_studies, "q": settings.q,
            "procedure": settings.procedure, "scope": settings.scope, "n_models": int(len(ranks)),
            "n_reference": int(len(reference)), "n_images": int(ranks.shape[1]), "fdr": fdr, "fdr_low": low,
            "fdr_high": high, "test": two_sample_name(reference_name), "reference": reference_name}


def pool_calibrations(reference_ranks: np.ndarray, n_consensus: int, settings: ConsensusSettings, seed: int,
                      reference_name: str) -> tuple[list[dict], list[dict]]:
    """The calibrations on the reference pool, and a ``calibration_skipped`` entry (with its reason)
    for each that cannot run. The rank-sum test on K models drawn from the pool runs only when the
    pool is larger than K (with P = K every study would draw the same models: one study repeated);
    the two-sample test on two disjoint halves of s = min(K, ⌊P/2⌋) models runs when s ≥ 3 (the
    test's minimum), which keeps P ≥ 2 s. Each row states how many distinct draws its studies have."""
    pool = int(reference_ranks.shape[0])
    rows, skipped = [], []
    common = {"null": "pool", "reference": reference_name, "pool": pool}
    if pool > n_consensus:
        rows.append(dict(subset_calibration(reference_ranks, n_consensus, 0, settings.calibration_studies, settings.q,
                                            settings.procedure, settings.scope,
                                            seed=derive(seed, "untrained-rank-sum")),
                         reference=reference_name, distinct_draws=math.comb(pool, n_consensus)))
    else:
        skipped.append(dict(common, test="rank-sum", n_models=n_consensus, n_reference=0,
                            reason=f"the {reference_name} pool holds {pool} models, not more than the {n_consensus} "
                                   f"each study draws: every study would draw the same models (one study repeated "
                                   f"{settings.calibration_studies} times); more than {n_consensus} {reference_name} "
                                   "models are needed"))
    size = min(n_consensus, pool // 2)
    if size >= 3 and pool >= 2 * size:  # both halves drawn from the pool: the two-sample test's null holds exactly
        rows.append(dict(subset_calibration(
            reference_ranks, size, size, settings.calibration_studies, settings.q, settings.procedure,
            settings.scope, seed=derive(seed, "untrained-two-sample"), n_permutations=settings.n_permutations),
            test=two_sample_name(reference_name), reference=reference_name,
            distinct_draws=math.comb(pool, size) * math.comb(pool - size, size)))
    else:
        skipped.append(dict(common, test=two_sample_name(reference_name), n_models=size, n_reference=size,
                            reason=f"two disjoint halves of at least 3 models need a pool of at least 6 "
                                   f"{reference_name} models, there are {pool}"))
    return rows, skipped


def consensus_unit(trained: Sequence[torch.nn.Module], reference: Sequence[torch.nn.Module], images: torch.Tensor,
                   targets: torch.Tensor, masks, method: str, grouping: str, study: StudySettings,
                   settings: ConsensusSettings, out_dir: Path | None = None, progress: bool = False,
                   store=None, reference_name: str = "untrained") -> dict:
    """Everything of one method × grouping (module docstring); JSON-serialisable. ``reference``:
    the models of the null family ``reference_name`` (a model set: ``"random_label"``,
    ``"bn_calibrated"``, ``"untrained"``), the two-sample test's reference, the pool of the data
    null and the planner's null. Maps the stability study kept in ``store``
    (:class:`stablesal.map_store.MapStore`) under the sets ``"main"`` and ``reference_name`` are
    read, not recomputed."""
    groupings, segments = consensus_regions(images, grouping, study.n_segments)
    random = method_is_random(method, trained[0])
    n_consensus = settings.n_models or len(trained)
    if n_consensus < 3 or n_consensus > len(trained):
        raise ValueError(f"the consensus needs between 3 and the {len(trained)} trained models, got n_models="
                         f"{settings.n_models}")
    pilot = PilotAccumulator()
    null = PilotAccumulator()
    held_out: list[torch.Tensor] = []
    examples: list[torch.Tensor] = []
    running = {"mean": None}  # the mean grey map of the consensus models

    def on_model(index: int, grey: torch.Tensor) -> None:
        if index < n_consensus:
            examples.append(grey[:EXAMPLE_IMAGES].float())
            mean = running["mean"]
            running["mean"] = grey if mean is None else mean + (grey - mean) / (index + 1)
        if index < settings.pilot_models:
            second = None
            if random:
                again = explain_one(method, trained[index], model_seed(study, "main", index, repeat=1), images,
                                    targets, groupings, study, store)
                second = grey_maps(again).double().cpu()
            pilot.add(grey, second)
        else:
            held_out.append(grey.float())

    ranks, _ = model_ranks(trained, images, targets, method, groupings, segments, study, "main", progress,
                           on_model=on_model, store=store)
    chosen = ranks[:n_consensus]
    n_regions = np.isfinite(ranks[0]).sum(1)
    mean_map = running["mean"].float()
    segments = segments.cpu()
    seed = derive(settings.seed, "consensus", method, grouping)
    common = dict(method=method, grouping=grouping, n_models=n_consensus, q=settings.q, procedure=settings.procedure,
                  scope=settings.scope, mean_map=mean_map, segments=segments)
    maps: dict[str, ConsensusMap] = {}
    reads: dict[str, str] = {}
    skipped: list[dict] = []
    calibration: list[dict] = []
    two_sample = two_sample_name(reference_name)
    if reference:
        reference_ranks, _ = model_ranks(reference, images, targets, method, groupings, segments, study,
                                         reference_name, progress, on_model=lambda index, grey: null.add(grey),
                                         store=store)
        p_values, significant = consensus_test(chosen, n_regions, reference_ranks, q=settings.q,
                                               procedure=settings.procedure, scope=settings.scope,
                                               n_permutations=settings.n_permutations, seed=derive(seed, "test"))
        maps[two_sample] = ConsensusMap(test=two_sample, p_values=p_values, significant=significant,
                                        n_reference=len(reference), **common)
        reads[two_sample] = f"learning beyond {reference_name}"
    p_values, significant = consensus_test(chosen, n_regions, q=settings.q, procedure=settings.procedure,
                                           scope=settings.scope)
    maps["rank-sum"] = ConsensusMap(test="rank-sum", p_values=p_values, significant=significant, **common)
    reads["rank-sum"] = "agreement"
    calibration.append(dict(permutation_calibration(chosen, settings.calibration_studies, settings.q,
                                                    settings.procedure, settings.scope,
                                                    seed=derive(seed, "calibration")), test="rank-sum"))
    if reference:
        calibration.append(two_sample_permutation_calibration(chosen, reference_ranks, settings,
                                                              derive(seed, "calibration-two-sample"), reference_name))
        rows, skipped = pool_calibrations(reference_ranks, n_consensus, settings, seed, reference_name)
        calibration.extend(rows)
    else:
        skipped.append({"null": "pool", "test": "rank-sum", "reference": reference_name, "pool": 0,
                        "reason": "no reference models: there is no pool to draw null studies from"})
    tests, files = [], []
    # BH's family: an image's regions, or every region of every image
    family = int(n_regions.min()) if settings.scope == "image" else int(n_regions.sum())
    for name in ("rank-sum", two_sample):  # the file order of old results: rank-sum first
        if name not in maps:
            continue
        consensus = maps[name]
        row = consensus.summary(masks)
        row["reads"] = reads[name]
        if name != "rank-sum":
            row["reference"] = reference_name
        row.update(reachability(row, "rank-sum" if name == "rank-sum" else "permutation", family, settings.q,
                                settings.n_permutations))
        tests.append(row)
        if out_dir is not None:
            files.append(f"consensus-{method}-{grouping}-{name.replace(' ', '-')}.npz")
            consensus.save(Path(out_dir) / files[-1])
            row["file"] = files[-1]
    resamples = settings.planner_resamples
    plan = make_plan(method, grouping, random, study.n_samples if random else None, pilot,
                     null if null.n_models >= 3 else None, reference_name, settings.target, settings.max_samples,
                     resamples, derive(seed, "planner"))
    null_mean = null.mean.float() if null.n_models >= 3 else None
    validation = validate_plan(plan, trained, held_out, images, targets, method, groupings, study, settings, seed,
                               null_mean=null_mean)
    curve = reliability_curve(plan, samples=(8, 16, 32, 64, 128, 256) if random else None)
    components = {key: float(np.mean(value)) for key, value in plan.components.items()}
    if out_dir is not None:
        files.append(f"consensus-{method}-{grouping}-models.npz")
        buffer = io.BytesIO()
        np.savez_compressed(buffer, maps=torch.stack(examples).numpy(),  # [K, EXAMPLE_IMAGES, H, W]
                            images=images[:EXAMPLE_IMAGES].cpu().float().numpy(),
                            masks=np.zeros(0) if masks is None else masks[:EXAMPLE_IMAGES].cpu().numpy())
        atomic_write_bytes(Path(out_dir) / files[-1], buffer.getvalue())
    return {"method": method, "grouping": grouping, "random": random, "n_models": n_consensus,
            "n_trained": len(trained), "reference": reference_name, "n_reference": len(reference),
            "n_untrained": len(reference) if reference_name == "untrained" else 0, "n_images": int(images.shape[0]),
            "tests": tests, "calibration": calibration, "calibration_skipped": skipped,
            "components": components, "curve": curve,
            "recommendation": plan.recommendation(settings.target, settings.max_samples),
            "plan": plan_summary(plan), "sentence": plan.sentence(settings.target, settings.max_samples),
            "validation": validation, "files": files}


def plan_summary(plan: Plan) -> dict:
    """The planner's JSON entry: what ρ is, the null it is beyond (None: none), V_μ,beyond (the
    image mean of the planned, clamped term), the image-mean shared component (unclamped) with its
    bootstrap interval, the model count's interval, the bootstrap's settings, and why no plan
    (None: a plan)."""
    interval = plan.interval or {}
    return {"quantity": plan.quantity(), "null": plan.null, "null_models": plan.null_models,
            "V_mu_beyond": None if plan.beyond is None else float(np.mean(plan.beyond["V_mu"])),
            "shared": plan.shared, "shared_low": interval.get("shared_low"), "shared_high": interval.get("shared_high"),
            "models_low": interval.get("models_low"), "models_high": interval.get("models_high"),
            "resamples": interval.get("resamples"), "resamples_used": interval.get("used"),
            "seed": interval.get("seed"), "refused": plan.refusal}


def validate_plan(plan: Plan, trained, held_out: list[torch.Tensor], images, targets, method: str, groupings: dict,
                  study: StudySettings, settings: ConsensusSettings, seed: int,
                  null_mean: torch.Tensor | None = None) -> list[dict]:
    """The plan's predictions against held-out models (the models after the pilot), at K′ of
    :data:`VALIDATION_MODELS` that fit twice: at the pilot's sample count, and for random
    explainers also at ``settings.validation_samples`` (the held-out models explained again), which
    checks the split of the noise between models and samples and its 1/n scaling. ``predicted`` and
    ``observed`` are the correlation ρ of the trained maps' K′-model mean with the infinite-model
    mean; with the null's mean map ``null_mean`` ``[N, H, W]`` and a plan beyond it, also
    ``predicted_beyond`` and ``observed_beyond`` (that map partialled out of every group mean).
    Beside each prediction: what the formula gives without the noise correction of V_μ, and without
    the split (all noise treated as model noise), so a reader sees whether the check can tell them
    apart."""
    grouping = next(iter(groupings))
    runs = [(study.n_samples if plan.random else None, held_out)]
    if plan.random and settings.validation_samples and settings.validation_samples != study.n_samples and \
            len(held_out) >= 2 * min(VALIDATION_MODELS):
        other = replace(study, n_samples=settings.validation_samples)
        maps = [grey_maps(explain_groupings(method, trained[settings.pilot_models + i],
                                            model_seed(study, "main", settings.pilot_models + i, repeat=2), images,
                                            targets, groupings, other)[grouping]).float() for i in range(len(held_out))]
        runs.append((settings.validation_samples, maps))
    components = plan.components
    noise = components["E_m"] + components["E_s"]
    uncorrected = dict(components, V_mu=components["V_mu"] + noise / plan.pilot_models)
    unsplit = {"V_mu": components["V_mu"], "E_m": noise, "E_s": np.zeros_like(noise)}
    beyond = plan.beyond is not None and null_mean is not None
    rows = []
    for samples, maps in runs:
        stacked = torch.stack(maps) if maps else None
        for size in VALIDATION_MODELS:
            if stacked is None or stacked.shape[0] < 2 * size:
                continue
            observed = held_out_reliability(stacked, size, n_draws=20,
                                            seed=derive(seed, "validation", size, samples or 0))
            predicted = plan.reliability(size, samples if plan.random else None, part="raw")
            row = {"method": plan.method, "grouping": plan.grouping, "models": size, "samples": samples,
                   "predicted": predicted, "observed": observed, "error": predicted - observed,
                   "predicted_uncorrected": predicted_reliability(uncorrected, size, samples, plan.pilot_samples),
                   "predicted_unsplit": predicted_reliability(unsplit, size),
                   "held_out": int(stacked.shape[0]), "pilot_models": plan.pilot_models,
                   "pilot_samples": plan.pilot_samples}
            if beyond:
                row["predicted_beyond"] = plan.reliability(size, samples if plan.random else None, part="beyond")
                row["observed_beyond"] = held_out_reliability(stacked, size, n_draws=20,
                                                              seed=derive(seed, "validation", size, samples or 0),
                                                              partial_out=null_mean)
                row["error_beyond"] = row["predicted_beyond"] - row["observed_beyond"]
                row["null"] = plan.null
            rows.append(row)
    return rows


def run_consensus_stage(trained: Sequence[torch.nn.Module], reference: Sequence[torch.nn.Module],
                        images: torch.Tensor, targets: torch.Tensor, masks, study: StudySettings,
                        settings: ConsensusSettings, cache_dir: Path | None = None, out_dir: Path | None = None,
                        identity: dict | None = None, progress: bool = True, store=None,
                        reference_name: str = "untrained") -> list[dict]:
    """Every method × grouping of ``settings`` (finished units in ``cache_dir`` are reused; maps
    kept in ``store`` by the stability study are read, not recomputed). ``reference``: the models
    of the null family ``reference_name`` (:func:`consensus_unit`)."""
    if len(trained) < 3:
        raise ValueError(f"the consensus stage needs at least 3 trained models, got {len(trained)}")
    if len(trained) < settings.pilot_models:
        raise ValueError(f"ConsensusSettings.pilot_models = {settings.pilot_models} is more than the "
                         f"{len(trained)} trained models")

    units = []
    pairs = [(method, grouping) for method in settings.methods for grouping in settings.groupings]
    for method, grouping in tqdm(pairs, desc="consensus units", disable=not progress):
        path, cached = cached_unit(cache_dir, f"consensus-{method}-{grouping}-", {
            "study": asdict(study), "settings": asdict(settings), "unit": [method, grouping],
            "identity": identity or {}, "n_images": int(images.shape[0]), "images": tensor_digest(images, targets),
            "reference": reference_name, "code": consensus_code_version()})
        files_gone = cached is not None and out_dir is not None and (
            not cached.get("files") or not all((Path(out_dir) / name).exists() for name in cached["files"]))
        if cached is None or files_gone:  # a new report folder needs the maps' files: recompute them
            cached = consensus_unit(trained, reference, images, targets, masks, method, grouping, study, settings,
                                    out_dir, progress, store, reference_name=reference_name)
            if path is not None:
                save_json_checked(path, cached)
        units.append(cached)
    return units


def consensus_code_version() -> str:
    """The stability study's code hash and this stage's own modules (every file of
    ``studies/consensus``; the multiple-testing procedures are in ``core``, which the stability
    hash covers)."""
    digest = hashlib.sha256(code_version().encode())
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def pilot_plans(models: Sequence[torch.nn.Module], images: torch.Tensor, targets: torch.Tensor,
                study: StudySettings, settings: ConsensusSettings, progress: bool = True,
                reference: Sequence[torch.nn.Module] | None = None, reference_name: str | None = None) -> list[Plan]:
    """A :class:`~stablesal.planner.Plan` per method × grouping of ``settings`` from the pilot
    ``models`` (all of them; K ≥ 3) and, with ``reference`` (L ≥ 3 models of the null family
    ``reference_name``), for the component beyond that null; bootstrapped over models."""
    plans = []
    for method in settings.methods:
        for grouping in settings.groupings:
            groupings, _ = consensus_regions(images, grouping, study.n_segments)
            plans.append(pilot(models, images, targets, method, groupings, study, progress=progress,
                               null_models=reference, null_name=reference_name, target=settings.target,
                               max_samples=settings.max_samples,
                               resamples=settings.planner_resamples,
                               seed=derive(settings.seed, "planner", method, grouping)))
    return plans


def is_random_method(name: str) -> bool:
    """Whether a method or preset draws samples, read from its own sampler (no model needed)."""
    return method_is_random(name, torch.nn.Identity().eval())
