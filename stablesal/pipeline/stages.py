"""The stages of a run: each computes a typed result from the shared :class:`~.context.Context`
and writes no file; the pipeline (:func:`stablesal.pipeline.run.run_pipeline`) times them,
writes their tables and assembles ``results.json`` from their entries.

A stage is registered in :data:`STAGES` next to its definition, with its place in the run
(``order``). Adding a study is its folder under ``stablesal/studies/`` plus one stage class here.

The protocol (:class:`Stage`):

- ``name``: the key of its result, of its time in ``timings_s`` and of ``only=[...]``;
- ``section``: the configuration section it reads (``[gradient]``, ``[folds]``, ...);
- ``uses``: the model sets it reads (``main``, ``control``, the null families of
  :data:`~stablesal.core.settings.NULL_SETS`); the pipeline trains or builds those of the stages
  that run, and only those, first and timed (a run of the consensus alone trains no control model);
- ``compares_models``: whether it computes between-model statistics on the main models (with
  fewer than 3 the pipeline warns: their delete-one-model jackknife intervals need 3);
- ``enabled(ctx)``: whether the configuration asks for it, decided from the configuration (and the
  stages before it) before any model is trained; ``off_reason`` says what switches it off;
- ``run(ctx) -> result``: the computation;
- ``tables(result) -> {file name: rows}``: its CSV tables (rows of two stages that name the same
  file are one table, in stage order);
- ``entries(result) -> {key: value}``: its part of ``results.json`` (a list two stages give under
  the same key is one list, in stage order);
- ``interval_notes(results) -> {table: note}``: how the intervals of its tables in ``results.json``
  were computed (from the notes the study keeps next to its code);
- ``entry_types``: the type of each of its entries (``results.json``'s schema,
  :mod:`.schema`); ``absent``: its entries when it does not run, so every results file has the
  same keys.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from ..core.registry import Registry
from ..core.seeding import derive
from ..core.storage import tensor_digest
from ..core.settings import MAIN, NULL_SETS, StudySettings
from ..data.datasets import render_backgrounds
from ..explain.gradient.diagnostics import confidence_by_strength
from ..explain.inpainting import InpainterConfig, train_inpainter
from ..metrics.similarity import grey_maps
from ..models.proxies import make_variants, spawn_children
from ..models.training import seed_plan, summary_rows, train_seeds
from ..report.figures import plot_dataset_examples, plot_model_maps, plot_removal_maps
from ..studies.consensus.run import run_consensus_stage
from ..studies.consensus.planner import PLAN_INTERVALS
from ..studies.consensus.test import CALIBRATION_INTERVALS, TEST_INTERVALS
from ..studies.factors.effects import analyse, interval_notes as factor_interval_notes
from ..studies.factors.run import run_factor_study, settings_from_config, summarise_configurations
from ..studies.folds.run import FOLD_INTERVALS, FOLD_SET, fold_rows, fold_samples
from ..studies.proxies.estimate import (
    SHIPPED_TRANSFER, calibration_path, check_calibrated, estimate_rows, evidence, load_calibration,
)
from ..studies.removal.fill_quality import QUALITY_INTERVALS
from ..studies.removal.run import RemovalSettings, run_removal_study
from ..studies.stability.run import compute_partitions, explain_groupings, explainer_seed, run_study
from ..studies.stability.statistics import (
    CONTRAST_INTERVALS, RANKING_INTERVALS, REDUCTION_INTERVALS, SUMMARY_INTERVALS, grid_contrast_rows,
    null_rank_agreement, pixel_contrast_rows, ranking_rows, summarise, variance_reduction_rows,
)
from .config import settings_of
from .context import Context
from ..models.model_sets import main_model_count, train_config_from, user_fold_runs

STAGES = Registry("stage")


@runtime_checkable
class Stage(Protocol):
    name: ClassVar[str]
    section: ClassVar[str]
    uses: ClassVar[tuple[str, ...]]
    compares_models: ClassVar[bool]
    entry_types: ClassVar[dict]
    absent: ClassVar[dict]

    off_reason: ClassVar[str]

    def enabled(self, ctx: Context) -> bool: ...

    def run(self, ctx: Context) -> dict: ...

    def tables(self, result: dict) -> dict[str, list[dict]]: ...

    def entries(self, result: dict) -> dict[str, Any]: ...

    def interval_notes(self, results: dict) -> dict[str, dict]: ...


def register_stage(*, order: float):
    """Register a stage class under its ``name`` at its place in the run (low ``order`` runs first)."""
    def add(cls):
        if hasattr(cls, "needs_models"):
            raise TypeError(f"stage {cls.__name__}: needs_models was replaced by uses, the model sets the stage reads "
                            "(() for none, (\"main\",) for the main models)")
        STAGES.register(cls.name, cls(), order=order)
        return cls
    return add


def ordered_stages() -> list[Stage]:
    """The registered stages in the order they run."""
    return [STAGES[name] for name in sorted(STAGES, key=lambda n: STAGES.info(n, "order"))]


def entry_types() -> dict:
    """The type of every stage entry of ``results.json`` (key -> type or tuple of types)."""
    return {key: kind for stage in ordered_stages() for key, kind in stage.entry_types.items()}


def gradient_settings(gradient, **overrides) -> StudySettings:
    """:class:`StudySettings` of a ``[gradient]`` section (``overrides`` replace fields)."""
    return settings_of(gradient, StudySettings, **overrides)


ESTIMATE_NOTE = ("predicted agreement (mean Spearman between independently retrained models) from one model's proxy "
                 "variants and a calibration on other data: an estimate, not a measurement")
PROXY_INTERVALS = {"proxy_agreement": "two-way design interval over images and variants",
                   "predicted_cross_seed_agreement": "the variants' interval, the calibration offset's and (with the "
                                                     "shipped calibration) 1.96 × the correction's held-out RMS error, "
                                                     "added in quadrature",
                   "measured": "two-way design interval over images and retrained models (the stability study)"}


def check_estimate(config: StudyConfig, dataset, calibration: dict) -> None:
    """Refuse (one ``ValueError`` line) what an estimate cannot rest on: what the calibration does
    not cover, spawning from a user's checkpoints, fine-tuning without labelled training images."""
    proxy, study = config.proxy, gradient_settings(config.gradient)
    check_calibrated(calibration, list(proxy.names), dataset.image_shape[-1], dataset.image_shape[0],
                     [(method, grouping) for method in study.methods for grouping in study.groupings], asdict(proxy))
    if "spawn" in proxy.names and config.models.user_models:
        raise ValueError("[proxy] names: 'spawn' resumes stablesal's own training at an epoch; checkpoints (or a "
                         "training function) of yours cannot be spawned from: choose finetune, bootstrap_finetune, "
                         "laplace or dropout")
    training = [name for name in proxy.names if name in ("finetune", "bootstrap_finetune")]
    if training and (not dataset.labelled or not len(dataset.train_labels)):
        raise ValueError(f"[proxy] names: {training} fine-tune on labelled training images; [data] {dataset.name} "
                         "has none")


def proxy_estimate_rows(config: StudyConfig, dataset, model, images, labels, masks, calibration: dict,
                        runs_dir: Path, progress: bool = True) -> list[dict]:
    """Every proxy of ``[proxy] names`` applied to ``model``: its variants explained on ``images``
    by the calibrated methods × groupings of ``[gradient]``, and the predicted cross-seed agreement
    per unit (:func:`~stablesal.studies.proxies.estimate.estimate_rows`)."""
    proxy, models = config.proxy, config.models
    covered = {(row["method"], row["grouping"]) for row in calibration["rows"]}
    requested = gradient_settings(config.gradient)
    study = dataclasses.replace(requested, methods=[m for m in requested.methods if m in {c[0] for c in covered}],
                                groupings=[g for g in requested.groupings if g in {c[1] for c in covered}])
    train_config = train_config_from(models)
    plan_entry = seed_plan(models.k, models.vary, models.base_seed, max(1, len(dataset.train_labels)))[0]
    source = evidence(calibration, proxy.calibration)
    # the shipped calibration's correction was also tested on held-out settings: its spread widens the interval
    transfer = (json.loads(SHIPPED_TRANSFER.read_text())
                if calibration_path(proxy.calibration) == calibration_path("") and SHIPPED_TRANSFER.is_file() else None)
    rows = []
    for name in proxy.names:
        k = proxy.spawn_k if name == "spawn" else proxy.k
        variants = make_variants(
            name, model, k, images=dataset.train_images, labels=dataset.train_labels, settings=proxy.settings(),
            config=train_config, seed=proxy.seed, device=models.device,
            spawn=lambda epoch, count: spawn_children(dataset, plan_entry, train_config, epoch, count,
                                                      runs_dir / "spawn", models.device, progress=progress,
                                                      seed=proxy.seed))
        # the cached units are keyed on what made the variants: model 0's weights, the proxy settings
        identity = {"model": tensor_digest(*model.state_dict().values()), "proxy": asdict(proxy), "name": name,
                    "training": train_config.record()}
        units = run_study({name: variants}, images, labels, masks, study, progress=progress, include_random=False,
                          cache_dir=runs_dir / "proxy", identity=identity)
        rows += estimate_rows(units, calibration, name, source, transfer)
        # a unit left out of the study because no calibration covers it says so, as estimate_rows does
        rows += [{"method": method, "grouping": grouping, "proxy": name, "kind": "estimate",
                  "refused": f"{method} × {grouping} is not calibrated for {name}"}
                 for method in requested.methods for grouping in requested.groupings
                 if method not in study.methods or grouping not in study.groupings]
    return rows


class BaseStage:
    off_reason: ClassVar[str] = "it is switched off"
    uses: ClassVar[tuple[str, ...]] = (MAIN,)
    compares_models: ClassVar[bool] = False
    entry_types: ClassVar[dict] = {}
    absent: ClassVar[dict] = {}

    def enabled(self, ctx: Context) -> bool:
        return True

    def tables(self, result: dict) -> dict[str, list[dict]]:
        return {}

    def interval_notes(self, results: dict) -> dict[str, dict]:
        return {}


@register_stage(order=10)
class StabilityStage(BaseStage):
    """The cross-seed study of the gradient methods × groupings on the main, control and untrained
    model sets, on the first ``[gradient] n_images`` test images."""

    name, section, compares_models = "stability", "gradient", True
    uses = (MAIN, "control", *NULL_SETS)
    entry_types = {"n_images": int, "variance_reduction": list, "grid_contrasts": list, "grouping_contrasts": list,
                   "study_settings": (dict, type(None)), "ranking": (dict, type(None)), "null_rank_agreement": list,
                   "nulls_unavailable": dict}
    absent = {"n_images": 0, "variance_reduction": [], "grid_contrasts": [],
              "grouping_contrasts": [], "study_settings": None, "ranking": None, "null_rank_agreement": [],
              "nulls_unavailable": {}}

    def run(self, ctx: Context) -> dict:
        settings = gradient_settings(ctx.config.gradient)
        images, labels, masks = ctx.test_images(0, min(ctx.config.gradient.n_images, len(ctx.dataset.test_labels)))
        model_sets, varies, identity = ctx.model_sets
        results = run_study(model_sets, images, labels, masks, settings, cache_dir=ctx.runs_dir / "stability",
                            progress=ctx.progress, identity=identity, executor=ctx.executor, varies=varies,
                            store=ctx.map_store)
        return {"summary": summarise(results), "reduction": variance_reduction_rows(results),
                "contrasts": grid_contrast_rows(results), "results": results, "settings": settings,
                "ranking": ranking_rows(results), "null_rank_agreement": null_rank_agreement(results),
                "nulls_unavailable": ctx.null_unavailable(),
                "images": images, "labels": labels, "masks": masks}

    def tables(self, result: dict) -> dict[str, list[dict]]:
        results = result["results"]
        return {"stability_pairs.csv": [row for r in results for row in r["rows"]],
                "stability_retest.csv": [dict(row, method=r["method"], grouping=r["grouping"])
                                         for r in results for row in r["retest_rows"]],
                "stability_summary.csv": result["summary"],
                "variance_reduction.csv": result["reduction"],
                "grid_contrasts.csv": result["contrasts"],
                "ranking.csv": result["ranking"]["rows"],
                "null_rank_agreement.csv": result["null_rank_agreement"]}

    def entries(self, result: dict) -> dict:
        return {"stability_summary": result["summary"], "n_images": int(result["images"].shape[0]),
                "variance_reduction": result["reduction"], "grid_contrasts": result["contrasts"],
                "grouping_contrasts": pixel_contrast_rows(result["results"]),
                "study_settings": result["settings"].__dict__, "ranking": result["ranking"],
                "null_rank_agreement": result["null_rank_agreement"], "nulls_unavailable": result["nulls_unavailable"]}

    def interval_notes(self, results: dict) -> dict[str, dict]:
        return {"stability_summary": SUMMARY_INTERVALS, "grid_contrasts": CONTRAST_INTERVALS,
                "grouping_contrasts": CONTRAST_INTERVALS, "variance_reduction": REDUCTION_INTERVALS,
                "ranking": RANKING_INTERVALS, "null_rank_agreement": RANKING_INTERVALS}


@register_stage(order=15)
class ProxyStage(BaseStage):
    """Without retraining, beside the retrained study (``[proxy] in_report = true``): each proxy of
    ``[proxy] names`` varies main model 0, and the agreement of its variants, moved by the
    calibration's offset, predicts the cross-seed agreement that the stability study measures on the
    retrained models. The page sets the two side by side; a calibration that does not cover this
    run is reported as the reason, not raised, so the rest of the report still runs."""

    name, section = "proxy", "proxy"
    uses = (MAIN, "control")  # the control models measure what the estimate predicts
    entry_types = {"proxy_estimate": (dict, type(None))}
    absent = {"proxy_estimate": None}
    off_reason = "[proxy] in_report is false, or the stability study it is compared with does not run"

    def enabled(self, ctx: Context) -> bool:
        return bool(ctx.config.proxy.in_report) and "stability" in ctx.stages

    @staticmethod
    def truth_set(ctx: Context) -> str:
        """The retrained set comparable with the calibration's truth (models that differ only in their
        seed): the main set when only seeds vary, else the control set (model 0's split, other seeds)
        when it ran, else the main set, labelled as varying more than the truth did."""
        if ctx.config.models.vary == "seed" or len(ctx.model_sets[0].get("control", [])) < 2:
            return MAIN
        return "control"

    def run(self, ctx: Context) -> dict:
        proxy = ctx.config.proxy
        result = {"evidence": "", "proxies": list(proxy.names), "note": ESTIMATE_NOTE, "rows": [], "refused": None}
        try:
            calibration = load_calibration(proxy.calibration)
            result["evidence"] = evidence(calibration, proxy.calibration)
            check_estimate(ctx.config, ctx.dataset, calibration)
        except (ValueError, FileNotFoundError) as refusal:
            result["refused"] = str(refusal)
            return result
        stability = ctx.results["stability"]
        model = ctx.model_sets[0][MAIN][0]
        rows = proxy_estimate_rows(ctx.config, ctx.dataset, model, stability["images"], stability["labels"],
                                   stability["masks"], calibration, ctx.runs_dir, ctx.progress)
        truth_set = self.truth_set(ctx)
        result["measured_set"] = truth_set
        result["measured_varies"] = "seed" if truth_set == "control" else ctx.config.models.vary
        measured = {(r["method"], r["grouping"]): r for r in stability["summary"] if r["model_set"] == truth_set}
        for row in rows:
            truth = measured.get((row["method"], row["grouping"]))
            if truth is None or "predicted_cross_seed_agreement" not in row:
                continue
            row.update({"measured": truth["spearman"], "measured_ci_low": truth["spearman_ci_low"],
                        "measured_ci_high": truth["spearman_ci_high"],
                        "measured_k": len(ctx.model_sets[0][truth_set]), "measured_set": truth_set})
            row["error"] = row["predicted_cross_seed_agreement"] - truth["spearman"]
            row["measured_inside"] = (row["predicted_cross_seed_agreement_ci_low"] <= truth["spearman"]
                                      <= row["predicted_cross_seed_agreement_ci_high"])
        result["rows"] = rows
        return result

    def tables(self, result: dict) -> dict[str, list[dict]]:
        return {"proxy_estimate.csv": result["rows"]}

    def entries(self, result: dict) -> dict:
        return {"proxy_estimate": result}

    def interval_notes(self, results: dict) -> dict[str, dict]:
        return {"proxy_estimate": PROXY_INTERVALS}


@register_stage(order=20)
class FoldStage(BaseStage):
    """MeGe and ReCo by Fel et al.'s protocol: ``[folds] k`` models, model i trained on every fold
    of the first ``pool`` training images but fold i (same architecture and hyperparameters as the
    main models, seed ``base_seed + i``), explained with the [gradient] methods and groupings on
    ``per_fold`` training images of every fold."""

    name, section, uses = "folds", "folds", ()
    entry_types = {"mege_folds": (dict, type(None))}
    absent = {"mege_folds": None}

    off_reason = ("[folds] enabled is false, or the models are checkpoints (the fold plan needs stablesal's "
                  "training or [models] train)")

    def enabled(self, ctx: Context) -> bool:
        models = ctx.config.models
        return ctx.config.folds.enabled and bool(models.train or not models.user_models)

    def run(self, ctx: Context) -> dict:
        config, dataset = ctx.config, ctx.dataset
        folds, models = config.folds, config.models
        pool = min(folds.pool, len(dataset.train_labels))
        subset = dataclasses.replace(dataset, train_images=dataset.train_images[:pool],
                                     train_labels=dataset.train_labels[:pool],
                                     train_masks=None if dataset.train_masks is None else dataset.train_masks[:pool])
        if models.train:  # the user's training function runs the fold plan (and nothing else changes)
            runs = user_fold_runs(config.models, config.folds.k, subset, ctx.runs_dir, ctx.progress)
        else:
            runs = train_seeds(subset, k=folds.k, vary="leave-fold-out", config=train_config_from(models),
                               out_dir=ctx.runs_dir / "fold-models", base_seed=models.base_seed, device=ctx.device,
                               progress=ctx.progress, executor=ctx.executor)
        indices, fold_of = fold_samples(pool, folds.k, folds.per_fold, seed=derive(config.gradient.seed, "fold-samples"))
        images, labels = subset.train_images[indices].to(ctx.device), subset.train_labels[indices].to(ctx.device)
        masks = None if subset.train_masks is None else subset.train_masks[indices]
        # the fold models get the test–retest repeat: the ceiling of MeGe is the explainer's own noise
        settings = gradient_settings(config.gradient, retest_sets=(FOLD_SET,))
        held_out = [run.meta["held_out_fold"] for run in runs]
        results = run_study({FOLD_SET: [run.model for run in runs]}, images, labels, masks, settings,
                            cache_dir=ctx.runs_dir / "stability", progress=ctx.progress, executor=ctx.executor,
                            identity={FOLD_SET: [run.meta["config_hash"] for run in runs],
                                      "data": config.data.__dict__, "samples": indices.tolist()},
                            varies={FOLD_SET: "both"})
        model_rows = [dict(row, set="fold", held_out_fold=run.meta["held_out_fold"])
                      for row, run in zip(summary_rows(runs), runs)]
        return {"rows": fold_rows(results, fold_of.numpy(), held_out), "models": model_rows,
                "n_samples": int(indices.numel())}

    def tables(self, result: dict) -> dict[str, list[dict]]:
        return {"mege_folds.csv": result["rows"]}

    def entries(self, result: dict) -> dict:
        return {"models": result["models"], "mege_folds": {"rows": result["rows"], "n_samples": result["n_samples"]}}

    def interval_notes(self, results: dict) -> dict[str, dict]:
        return {"mege_folds.rows": FOLD_INTERVALS}


@register_stage(order=30)
class PerturbationStage(BaseStage):
    """The perturbation presets on the main and control models and the first null family (random-label) of the
    gradient methods: the same stability, null, decomposition, fidelity, localisation and sanity
    statistics (pixel maps), on ``[perturbation] n_images`` test images."""

    name, section, compares_models = "perturbation", "perturbation", True
    uses = (MAIN, "control", *NULL_SETS)  # the first null family that has models
    entry_types = {"perturbation_methods": list, "perturbation_n_images": int,
                   "perturbation_settings": (dict, type(None)), "perturbation_ranking": (dict, type(None))}
    absent = {"perturbation_methods": [], "perturbation_n_images": 0, "perturbation_settings": None,
              "perturbation_ranking": None}

    off_reason = '[perturbation] methods is empty'

    def enabled(self, ctx: Context) -> bool:
        return bool(ctx.config.perturbation.methods)

    def run(self, ctx: Context) -> dict:
        section = ctx.config.perturbation
        settings = StudySettings(methods=list(section.methods), groupings=["pixel"], seed=section.seed,
                                 n_samples=section.n_samples, draws=section.draws,
                                 fidelity=ctx.config.gradient.fidelity)  # one switch for both studies
        images, labels, masks = ctx.test_images(0, min(section.n_images, len(ctx.dataset.test_labels)))
        model_sets, varies, identity = ctx.model_sets
        # perturbation maps cost hundreds of passes each: the main and control models and the first
        # null family only (the gradient study gives every family)
        first_null = next((null for null in NULL_SETS if null in model_sets), None)
        model_sets = {name: models for name, models in model_sets.items() if name in (MAIN, "control", first_null)}
        results = run_study(model_sets, images, labels, masks, settings, cache_dir=ctx.runs_dir / "stability",
                            progress=ctx.progress, identity=identity, include_random=False, executor=ctx.executor,
                            varies=varies)
        return {"summary": summarise(results), "results": results, "settings": settings, "images": images,
                "labels": labels, "masks": masks, "ranking": ranking_rows(results)}

    def tables(self, result: dict) -> dict[str, list[dict]]:
        return {"perturbation_stability_pairs.csv": [row for r in result["results"] for row in r["rows"]],
                "perturbation_summary.csv": result["summary"],
                "perturbation_ranking.csv": result["ranking"]["rows"],
                "stability_summary.csv": result["summary"]}

    def entries(self, result: dict) -> dict:
        return {"stability_summary": result["summary"],
                "perturbation_methods": [r["method"] for r in result["summary"]],
                "perturbation_n_images": int(result["images"].shape[0]),
                "perturbation_settings": result["settings"].__dict__,
                "perturbation_ranking": result["ranking"]}

    def interval_notes(self, results: dict) -> dict[str, dict]:
        notes = super().interval_notes(results)
        return {**notes, "perturbation_ranking": RANKING_INTERVALS}


@register_stage(order=40)
class FactorStage(BaseStage):
    """The SEG-SMOOTH factor study on main model 0: per-configuration scores and η² per factor,
    on the last ``[factors] n_images`` test images (not the stability study's)."""

    name, section = "factor_study", "factors"
    entry_types = {"factor_study": (dict, type(None))}
    absent = {"factor_study": None}

    off_reason = '[factors] enabled is false'

    def enabled(self, ctx: Context) -> bool:
        return ctx.config.factors.enabled

    def run(self, ctx: Context) -> dict:
        settings = settings_from_config(ctx.config.factors)
        count = min(settings.n_images, len(ctx.dataset.test_labels))
        total = len(ctx.dataset.test_labels)
        images, labels, _ = ctx.test_images(total - count, total)
        model = ctx.runs[0]
        rows = run_factor_study(model.model, images, labels, settings, cache_dir=ctx.runs_dir / "factors",
                                progress=ctx.progress, executor=ctx.executor,
                                identity={"model": model.meta["config_hash"], "data": ctx.config.data.__dict__})
        return {"rows": rows, "configurations": summarise_configurations(rows),
                "analysis": analyse(rows, seed=settings.seed), "settings": settings}

    def tables(self, result: dict) -> dict[str, list[dict]]:
        designs = result["analysis"]["designs"]
        return {"factor_configurations.csv": result["configurations"],
                "factor_effects.csv": [{"design": name, **effect} for name, design in designs.items()
                                       for effect in design["effects"]],
                "factor_orderings.csv": [{"design": name, **ordering} for name, design in designs.items()
                                         for ordering in design["orderings"]]}

    def entries(self, result: dict) -> dict:
        # the per-image rows too: analysis/factor_images_needed.py re-analyses subsets of the images
        return {"factor_study": {"settings": result["settings"].__dict__, "configurations": result["configurations"],
                                 "analysis": result["analysis"], "rows": result["rows"]}}

    def interval_notes(self, results: dict) -> dict[str, dict]:
        return factor_interval_notes(results["factor_study"]["analysis"], results["factor_study"]["settings"]["seed"])


@register_stage(order=50)
class ConsensusStage(BaseStage):
    """The consensus map and the planner on the main models (at least 3), with the null family of
    ``[consensus] reference`` (random-label networks by default) as the reference and the null, on
    the first ``[consensus] n_images`` test images;
    the maps' ``.npz`` files go under ``<report>/consensus``."""

    name, section = "consensus", "consensus"
    uses = (MAIN, *NULL_SETS)  # [consensus] reference, or the next family that has models
    entry_types = {"consensus": (dict, type(None))}
    absent = {"consensus": None}

    off_reason = '[consensus] enabled is false, or there are fewer than 3 main models'

    def enabled(self, ctx: Context) -> bool:
        return ctx.config.consensus.enabled and main_model_count(ctx.config.models) >= 3

    def run(self, ctx: Context) -> dict:
        section = ctx.config.consensus
        settings = section.settings()
        count = min(section.n_images, len(ctx.dataset.test_labels))
        images, labels, masks = ctx.test_images(0, count)
        reference_name, reference, reference_identity = ctx.consensus_reference
        units = run_consensus_stage([run.model for run in ctx.runs], reference, images, labels, masks,
                                    gradient_settings(ctx.config.gradient), settings,
                                    cache_dir=ctx.runs_dir / "consensus", out_dir=ctx.out / "consensus",
                                    identity={"main": [run.meta["config_hash"] for run in ctx.runs],
                                              reference_name or "reference": reference_identity,
                                              "data": ctx.config.data.__dict__},
                                    progress=ctx.progress, store=ctx.map_store,
                                    reference_name=reference_name or "untrained")
        return {"units": units, "settings": asdict(settings), "n_images": count, "reference": reference_name}

    def tables(self, result: dict) -> dict[str, list[dict]]:
        units = result["units"]
        return {"consensus_tests.csv": [row for unit in units for row in unit["tests"]],
                "consensus_calibration.csv": [dict(row, method=unit["method"], grouping=unit["grouping"])
                                              for unit in units for row in unit["calibration"]],
                "planner_curves.csv": [row for unit in units for row in unit["curve"]],
                "planner_validation.csv": [row for unit in units for row in unit["validation"]],
                "consensus_calibration_skipped.csv": [dict(row, method=unit["method"], grouping=unit["grouping"])
                                                      for unit in units for row in unit.get("calibration_skipped", [])]}

    def entries(self, result: dict) -> dict:
        return {"consensus": result}

    def interval_notes(self, results: dict) -> dict[str, dict]:
        return {"consensus.units.tests": TEST_INTERVALS, "consensus.units.calibration": CALIBRATION_INTERVALS,
                "consensus.units.plan": PLAN_INTERVALS, "consensus.units.recommendation": PLAN_INTERVALS}


@register_stage(order=60)
class InpaintingStage(BaseStage):
    """Train (or load) the learned inpainter on the training images, then compare removal by
    inpainting with constant fills (quality, GEN-REMOVE methods, metrics, robustness) on main model 0,
    on test images after those of the stability study."""

    name, section = "inpainting", "inpainting"
    entry_types = {"inpainting": (dict, type(None))}
    absent = {"inpainting": None}

    off_reason = '[inpainting] enabled is false, or the data has no labelled training images'

    def enabled(self, ctx: Context) -> bool:
        return ctx.config.inpainting.enabled and bool(len(ctx.dataset.train_labels)) and ctx.dataset.labelled

    def run(self, ctx: Context) -> dict:
        config, dataset = ctx.config, ctx.dataset
        section = config.inpainting
        inpainter_config = settings_of(section, InpainterConfig)
        began = time.perf_counter()
        inpainter = train_inpainter(dataset.train_images, dataset.train_labels, dataset.num_classes, inpainter_config,
                                    path=ctx.runs_dir / "inpainter.pt", device=ctx.device, progress=ctx.progress,
                                    masks=dataset.train_masks)
        train_seconds = inpainter.meta.get("seconds", time.perf_counter() - began)
        settings = settings_of(section, RemovalSettings)
        # test images after those of the stability study
        start = min(config.gradient.n_images, max(0, len(dataset.test_labels) - section.n_images))
        images, labels, masks = ctx.test_images(start, start + max(section.n_images, section.quality_images))
        backgrounds = None
        if config.data.dataset == "shapes":  # the generator's own backgrounds: the in-distribution control
            backgrounds = torch.from_numpy(render_backgrounds(images.shape[0], config.data.size, seed=derive(
                config.data.seed, "backgrounds"))).float().div_(255)
        study = run_removal_study(ctx.runs[0].model, inpainter, images, labels, masks, settings,
                                  progress=ctx.progress, dataset_mean=torch.tensor(dataset.mean),
                                  backgrounds=backgrounds,
                                  other_models=[run.model.to(ctx.device) for run in ctx.runs[1:]])
        study.update(train_seconds=train_seconds, inpainter=str(inpainter), settings=settings)
        return study

    def tables(self, result: dict) -> dict[str, list[dict]]:
        return {"inpainting_quality.csv": result["quality"], "removal_metrics.csv": result["rows"],
                "metric_agreement.csv": result["agreement"], "removal_robustness.csv": result["robustness"]}

    def entries(self, result: dict) -> dict:
        return {"inpainting": {
            "quality": result["quality"], "methods": result["rows"], "metric_agreement": result["agreement"],
            "robustness": result["robustness"], "inpainter_train_seconds": result["train_seconds"],
            "inpainter": result["inpainter"], "settings": result["settings"].__dict__}}

    def interval_notes(self, results: dict) -> dict[str, dict]:
        return {"inpainting.quality": QUALITY_INTERVALS}


@register_stage(order=70)
class ModelFiguresStage(BaseStage):
    """The figures that need data or models (every other figure is drawn from ``results.json`` when
    the page is rendered): one test image per class, each method's maps of one image across the
    main models, the removal maps, and model 0's confidence on the samples each sampler makes."""

    name, section = "figures", "report"
    entry_types = {"figures": dict, "sampling_confidence": list}
    absent = {"figures": {}, "sampling_confidence": []}

    off_reason = "it draws the stability stage's images, and that stage does not run"

    def enabled(self, ctx: Context) -> bool:
        return "stability" in ctx.stages

    def run(self, ctx: Context) -> dict:
        stability, perturbation = ctx.results["stability"], ctx.results.get("perturbation")
        settings, images, labels = stability["settings"], stability["images"], stability["labels"]
        main = ctx.model_sets[0]["main"]
        out, figures_dir, dataset = ctx.out, ctx.out / "figures", ctx.dataset
        confidence = confidence_by_strength(main[0], images, labels, seed=settings.seed)
        panels = example_panels(main, images, labels, stability["masks"], settings, figures_dir)
        if perturbation is not None and perturbation["summary"]:
            panels += example_panels(main, perturbation["images"], perturbation["labels"], perturbation["masks"],
                                     perturbation["settings"], figures_dir)
        drawn = {"dataset_examples": [_relative(plot_dataset_examples(
            dataset.test_images, dataset.test_labels, dataset.test_masks, dataset.class_names,
            figures_dir / "dataset_examples"), out), "One test image per class and its ground-truth object mask."],
            "example_panels": [[_relative(path, out), caption] for path, caption in panels]}
        removal = ctx.results.get("inpainting")
        if removal is not None:
            drawn["removal_maps"] = [_relative(plot_removal_maps(removal["images"], removal["masks"], removal["maps"],
                                                                 figures_dir / "removal_maps"), out),
                                     "Maps of each method on four test images (object outline in yellow)."]
        return {"figures": drawn, "sampling_confidence": confidence}

    def tables(self, result: dict) -> dict[str, list[dict]]:
        return {"sampling_confidence.csv": result["sampling_confidence"]}

    def entries(self, result: dict) -> dict:
        return result


def _relative(path, root) -> str:
    return Path(path).relative_to(root).as_posix()


def example_panels(models, images, labels, masks, settings: StudySettings, figures_dir) -> list:
    """Per method (pixel and the first super-pixel grouping): one image's maps across models."""
    partitions = compute_partitions(images[:1], settings.groupings, settings.n_segments)
    shown = {"pixel": None}
    superpixel = [g for g in settings.groupings if g not in ("pixel", "grid")][:1]
    shown.update({g: partitions[g] for g in superpixel})
    figures = []
    for method in settings.methods:
        per_model = [explain_groupings(method, model, explainer_seed(settings, "main", k), images[:1], labels[:1],
                                       shown, settings)
                     for k, model in enumerate(models)]
        for grouping in shown:
            maps = [grey_maps(maps[grouping])[0].cpu() for maps in per_model]
            path = plot_model_maps(images[0], None if masks is None else masks[0], maps,
                                   figures_dir / f"maps_{method}_{grouping}", title=f"{method} / {grouping}")
            figures.append((path, f"{method}, {grouping}: each model's map of the same image, mean and std."))
    return figures
