"""``stablesal report``: one configuration in, one stability report out (``reports/<name>/``).

Stages: data → K retrained models → (gradient methods × groupings → cross-seed stability,
fidelity and sanity) → ``results.json``, CSV tables, figures (PNG + PDF) and ``index.html``.
Each stage caches its output under ``runs/<name>/`` keyed by a hash of the configuration it
depends on, so a re-run reuses finished work and an interrupted run resumes.
"""

from __future__ import annotations

import csv
import functools
import io
import platform
import shutil
import time
from pathlib import Path

import torch

from ..core.version import __version__
from .config import StudyConfig
from ..data.datasets import ImageDataset, load_configured
from ..report.figures import plot_dataset_examples, plot_model_maps
from ..metrics.similarity import grey_maps
from ..models.training import TrainConfig, summary_rows, train_one, train_seeds
from ..models.architectures import build_model
from ..core.seeding import derive
from ..models.training import train_unit
from ..report.render import render_report
from ..studies.stability.run import StudySettings, compute_partitions, explain_groupings, explainer_seed, run_study
from ..studies.stability.statistics import grid_contrast_rows, pixel_contrast_rows, summarise, variance_reduction_rows
from ..core.storage import atomic_write_json, atomic_write_text

QUICK_OVERRIDES = {
    "data": {"n_train": 3000, "n_test": 300},
    "models": {"k": 3, "epochs": 4, "vary": "seed", "control_k": 0, "untrained_k": 3},
    "gradient": {"n_images": 12, "n_samples": 8, "n_steps": 8,
                 "methods": ["saliency", "integrated_gradients", "smoothgrad", "suppression"],
                 "groupings": ["pixel", "fastslic", "grid"]},
    "perturbation": {"n_images": 6, "n_samples": 100, "methods": ["rise", "lime", "occlusion", "ciu"]},
    "folds": {"k": 3, "pool": 3000, "per_fold": 4},
    "factors": {"n_images": 4, "sample_sizes": ["M", 100], "segmentations": ["grid-bilinear", "slic/gaussian"],
                "samplers": ["random", "shap", "single"]},
    "inpainting": {"steps": 150, "width": 8, "n_images": 4, "quality_images": 32, "lime_samples": 60, "mp_iterations": 20,
                   "robustness": False},
    "consensus": {"n_images": 6, "methods": ["saliency", "smoothgrad"], "groupings": ["fastslic"],
                  "calibration_studies": 20, "n_permutations": 999},
}


def apply_quick(config: StudyConfig) -> StudyConfig:
    """Shrink a configuration so that the whole report runs in about a minute (used by tests)."""
    for section, values in QUICK_OVERRIDES.items():
        for key, value in values.items():
            setattr(getattr(config, section), key, value)
    if config.report.name == "default":
        config.report.name = "quick"
    return config


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    buffer = io.StringIO()
    fields = list(dict.fromkeys(key for row in rows for key in row))  # union, in order of first appearance
    writer = csv.DictWriter(buffer, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


# the installed distributions whose versions results.json records beside torch and Python
RECORDED_DISTRIBUTIONS = ("captum", "numpy", "scipy", "scikit-image", "fast-slic", "opencv-python-headless",
                          "matplotlib")


def _environment() -> dict:
    from importlib import metadata

    from ..studies.stability.run import code_version

    versions = {}
    for name in RECORDED_DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "stablesal": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(), "libraries": versions,
        "code_version": code_version(),
    }


def configured_seeds(config: StudyConfig) -> dict:
    """Every seed of the configuration, ``{"section.key": value}`` (keys that name a seed), so a
    reader of results.json finds them in one place."""
    return {f"{section}.{key}": value for section, values in config.to_dict().items() if isinstance(values, dict)
            for key, value in values.items() if "seed" in key}


def interval_notes(results: dict, factor_seed: int | None = None) -> dict:
    """How every table of ``results`` with intervals computed them (``results.json["intervals"]``):
    ``{table: interval_note}`` for the tables present, from the notes the computing modules keep
    next to their code."""
    from ..studies.consensus.test import CALIBRATION_INTERVALS, TEST_INTERVALS
    from ..studies.factors.effects import interval_notes as factor_notes
    from ..studies.removal.fill_quality import QUALITY_INTERVALS
    from ..studies.folds.run import FOLD_INTERVALS
    from ..studies.stability.statistics import CONTRAST_INTERVALS, REDUCTION_INTERVALS, SUMMARY_INTERVALS

    notes = {"stability_summary": SUMMARY_INTERVALS, "grid_contrasts": CONTRAST_INTERVALS,
             "grouping_contrasts": CONTRAST_INTERVALS, "variance_reduction": REDUCTION_INTERVALS}
    if results.get("mege_folds"):
        notes["mege_folds.rows"] = FOLD_INTERVALS
    if results.get("consensus"):
        notes["consensus.units.tests"] = TEST_INTERVALS
        notes["consensus.units.calibration"] = CALIBRATION_INTERVALS
    if results.get("factor_study"):
        notes.update(factor_notes(results["factor_study"]["analysis"], factor_seed))
    if results.get("inpainting"):
        notes["inpainting.quality"] = QUALITY_INTERVALS
    return notes


def train_config_from(models) -> TrainConfig:
    """The shared hyperparameters of a ``[models]`` section."""
    return TrainConfig(model=models.arch, epochs=models.epochs, batch_size=models.batch_size, lr=models.lr)


def gradient_settings(gradient, **overrides) -> StudySettings:
    """:class:`StudySettings` of a ``[gradient]`` section (``overrides`` replace fields)."""
    return StudySettings(**{**dict(methods=list(gradient.methods), groupings=list(gradient.groupings),
                                   n_segments=gradient.n_segments, n_samples=gradient.n_samples,
                                   n_steps=gradient.n_steps, noise_level=gradient.noise_level, seed=gradient.seed,
                                   draws=gradient.draws, rng=gradient.rng), **overrides})


def checkpoint_paths(patterns: list[str]) -> list[Path]:
    """The files of ``[models] checkpoints``: paths or glob patterns, sorted within each pattern."""
    import glob

    paths = []
    for pattern in patterns:
        matched = sorted(Path(p) for p in glob.glob(str(Path(pattern).expanduser())))
        if not matched:
            raise FileNotFoundError(f"[models] checkpoints: {pattern!r} matches no file")
        paths += matched
    return paths


def user_model_runs(config: StudyConfig, dataset: ImageDataset, runs_dir: Path, progress: bool = True) -> list:
    """The user's models as runs: checkpoint files loaded (TorchScript, pickled modules or state
    dicts into the factory's architecture), or trained by the user's function on stablesal's seed
    plan; each in eval mode with frozen parameters and, with [models] mean/std, Normalize in front.
    Accuracies are measured on the data when it has labels."""
    from ..models.training import SeedRun, accuracy, seed_plan
    from ..core.storage import config_hash
    from ..models.user_models import load_user_model, model_factory, output_classes, prepare, train_with_user_function

    models = config.models
    factory = model_factory(models.factory, models.factory_kwargs, models.arch, dataset.num_classes)
    if models.checkpoints:
        loaded = []
        for path in checkpoint_paths(models.checkpoints):
            digest = config_hash({"file": str(path.resolve()), "bytes": path.stat().st_size,
                                  "modified": path.stat().st_mtime_ns})
            loaded.append((load_user_model(path, factory), {"checkpoint": str(path), "config_hash": digest,
                                                            "seed": None, "split": None, "train_size": None,
                                                            "train_seconds": None}))
    else:
        plan = seed_plan(models.k, models.vary, models.base_seed, len(dataset.train_labels))
        loaded = train_with_user_function(dataset, models.train, plan, runs_dir / "user-models", factory, progress)
    runs = []
    labelled = bool((dataset.test_labels >= 0).all())
    for index, (model, meta) in enumerate(loaded):
        model = prepare(model, meta.get("checkpoint", f"model {index}"), models.mean, models.std).to(models.device)
        test = accuracy(model, dataset.test_images, dataset.test_labels) if labelled else float("nan")
        train = (accuracy(model, dataset.train_images, dataset.train_labels)
                 if len(dataset.train_labels) and labelled else float("nan"))
        runs.append(SeedRun(index, model, {"index": index, **meta, "test_accuracy": test, "train_accuracy": train}))
    classes = output_classes([run.model for run in runs], [run.meta.get("checkpoint", f"model {run.index}")
                                                           for run in runs], dataset.image_shape)
    if labelled and classes != dataset.num_classes:
        raise ValueError(f"the models output {classes} classes but the data has {dataset.num_classes} "
                         f"({dataset.class_names[:6]}…)")
    return runs


def with_predicted_labels(dataset: ImageDataset, model) -> ImageDataset:
    """Unlabelled test images labelled with ``model``'s predicted class (the class every map then
    explains); classes named ``class i`` when the data named none."""
    import dataclasses

    with torch.inference_mode():
        outputs = torch.cat([model(chunk) for chunk in dataset.test_images.split(256)])
    names = dataset.class_names or [f"class {i}" for i in range(outputs.shape[1])]
    return dataclasses.replace(dataset, test_labels=outputs.argmax(1).cpu(), class_names=names,
                               name=f"{dataset.name} (labels: model 0's predictions)")


def user_fold_runs(config: StudyConfig, subset: ImageDataset, runs_dir: Path, progress: bool = True) -> list:
    """The fold models of the MeGe protocol trained by the user's function: model i on every fold of
    ``subset`` but fold i, seed ``base_seed + i``; prepared like the main models."""
    from ..models.training import SeedRun, accuracy, seed_plan
    from ..models.user_models import model_factory, prepare, train_with_user_function

    models = config.models
    factory = model_factory(models.factory, models.factory_kwargs, models.arch, subset.num_classes)
    plan = seed_plan(config.folds.k, "leave-fold-out", models.base_seed, len(subset.train_labels))
    runs = []
    for index, (model, meta) in enumerate(train_with_user_function(subset, models.train, plan,
                                                                   runs_dir / "user-fold-models", factory, progress)):
        model = prepare(model, f"fold model {index}", models.mean, models.std).to(models.device)
        runs.append(SeedRun(index, model, {**meta, "index": index,
                                           "test_accuracy": accuracy(model, subset.test_images, subset.test_labels),
                                           "train_accuracy": float("nan")}))
    return runs


def train_model_sets(config: StudyConfig, dataset: ImageDataset, runs_dir: Path, progress: bool = True,
                     executor=None):
    """The K main models and the control models, trained or loaded. Models the user brings
    ([models] checkpoints or train) are the main set, with no control set.

    The control set is the seed-only arm of the variance decomposition: ``control_k`` models on
    main model 0's data (its split, or all the data when the main models vary only in seed) with
    seeds ``base_seed + k + i``, none of them a main model, so the two sets share no model."""
    models = config.models
    if models.user_models:
        return user_model_runs(config, dataset, runs_dir, progress), []
    if not dataset.labelled or not len(dataset.train_labels):
        raise ValueError(f"[data] {dataset.name} has no labelled training images, so stablesal cannot train models on "
                         "it: give your own ([models] checkpoints)")
    train_config = train_config_from(models)
    runs = train_seeds(dataset, k=models.k, vary=models.vary, config=train_config, out_dir=runs_dir / "models",
                       base_seed=models.base_seed, device=models.device, progress=progress, executor=executor)
    split = None if models.vary == "seed" else 0
    control_plan = [{"index": models.k + i, "seed": models.base_seed + models.k + i, "split": split,
                     "splits": 1 if split is None else models.k} for i in range(models.control_k)]
    if executor is None:
        control_runs = [train_one(dataset, run, train_config, runs_dir / "models", models.device, progress=progress)
                        for run in control_plan]
    else:
        unit = functools.partial(train_unit, config=train_config, out_dir=runs_dir / "models",
                                 device=models.device, model_factory=None)
        control_runs = executor.map(unit, control_plan, desc="control seeds", progress=progress, shared=(dataset,))
    return runs, control_runs


def untrained_models(config: StudyConfig, dataset: ImageDataset, template=None) -> tuple[list, dict]:
    """The untrained-network null: ``untrained_k`` networks of the main architecture, each with its
    own initialisation seed ``derive(base_seed, "untrained", i)``, never trained; eval mode,
    frozen parameters. Returns the models and their identity (for the study cache). For models
    the user brings: the factory's architecture, or else copies of ``template`` (main model 0)
    with every layer re-initialised; none for TorchScript without a factory."""
    models = config.models
    seeds = [derive(models.base_seed, "untrained", i) for i in range(models.untrained_k)]
    if models.user_models:
        return _user_untrained(config, dataset, template, seeds)
    built = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):  # seeded, without moving the caller's global generator
            torch.manual_seed(seed)
            model = build_model(models.arch, dataset.image_shape[0], dataset.num_classes, dataset.mean, dataset.std)
        model.eval().to(models.device)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        built.append(model)
    return built, {"arch": models.arch, "seeds": seeds}


def _user_untrained(config: StudyConfig, dataset: ImageDataset, template, seeds: list[int]) -> tuple[list, dict]:
    from ..models.user_models import model_factory, prepare, reinitialised

    models = config.models
    factory = model_factory(models.factory, models.factory_kwargs, models.arch, dataset.num_classes)
    built = []
    for seed in seeds:
        if factory is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                network = factory()
            model = prepare(network.eval(), "untrained network", models.mean, models.std)
        else:
            model = None if template is None else reinitialised(template, seed)
            if model is None:
                return [], {"unavailable": "no factory and the model cannot be re-initialised (TorchScript)"}
            model = prepare(model.eval(), "untrained network")
        built.append(model.to(models.device))
    return built, {"arch": models.factory or models.arch or "re-initialised copies of model 0", "seeds": seeds}


def model_sets_for_study(config: StudyConfig, dataset: ImageDataset, runs, control_runs) -> tuple[dict, dict, dict]:
    """``(model_sets, varies, identity)`` for :func:`stablesal.stability.run_study`: main, control
    (seed only) and untrained sets, with what differs inside each and the cache identity."""
    model_sets = {"main": [r.model for r in runs]}
    varies = {"main": config.models.vary}
    identity = {"main": [r.meta["config_hash"] for r in runs], "data": config.data.__dict__}
    if control_runs:
        model_sets["control"] = [r.model for r in control_runs]
        varies["control"] = "seed"
        identity["control"] = [r.meta["config_hash"] for r in control_runs]
    if config.models.untrained_k:
        untrained, identity["untrained"] = untrained_models(config, dataset, runs[0].model)
        if untrained:
            model_sets["untrained"] = untrained
            varies["untrained"] = "init"
    return model_sets, varies, identity


def gradient_study(config: StudyConfig, dataset: ImageDataset, runs, control_runs, runs_dir: Path, out: Path,
                   progress: bool = True, executor=None) -> dict:
    """Run (or resume) the cross-seed study of the gradient methods and write its CSV tables."""
    gradient, device = config.gradient, config.models.device
    settings = gradient_settings(gradient)
    count = min(gradient.n_images, len(dataset.test_labels))
    images, labels = dataset.test_images[:count].to(device), dataset.test_labels[:count].to(device)
    masks = None if dataset.test_masks is None else dataset.test_masks[:count]
    model_sets, varies, identity = model_sets_for_study(config, dataset, runs, control_runs)
    results = run_study(model_sets, images, labels, masks, settings, cache_dir=runs_dir / "stability",
                        progress=progress, identity=identity, executor=executor, varies=varies,
                        store=consensus_store(config, runs_dir))
    summary, reduction, contrasts = summarise(results), variance_reduction_rows(results), grid_contrast_rows(results)
    write_csv(out / "stability_pairs.csv", [row for result in results for row in result["rows"]])
    write_csv(out / "stability_retest.csv", [dict(row, method=result["method"], grouping=result["grouping"])
                                             for result in results for row in result["retest_rows"]])
    write_csv(out / "stability_summary.csv", summary)
    write_csv(out / "variance_reduction.csv", reduction)
    write_csv(out / "grid_contrasts.csv", contrasts)
    return {"summary": summary, "reduction": reduction, "contrasts": contrasts, "results": results,
            "settings": settings, "model_sets": model_sets, "images": images, "labels": labels, "masks": masks}


def fold_stage(config: StudyConfig, dataset: ImageDataset, runs_dir: Path, out: Path, progress: bool = True,
               executor=None) -> dict:
    """MeGe and ReCo by Fel et al.'s protocol: ``[folds] k`` models, model i trained on every fold
    of the first ``pool`` training images but fold i (same architecture and hyperparameters as the
    main models, seed ``base_seed + i``), explained with the [gradient] methods and groupings on
    ``per_fold`` training images of every fold."""
    import dataclasses

    from ..studies.folds.run import FOLD_SET, fold_rows, fold_samples

    folds, models, gradient, device = config.folds, config.models, config.gradient, config.models.device
    pool = min(folds.pool, len(dataset.train_labels))
    subset = dataclasses.replace(dataset, train_images=dataset.train_images[:pool],
                                 train_labels=dataset.train_labels[:pool],
                                 train_masks=None if dataset.train_masks is None else dataset.train_masks[:pool])
    if models.train:  # the user's training function runs the fold plan (and nothing else changes)
        runs = user_fold_runs(config, subset, runs_dir, progress)
    else:
        runs = train_seeds(subset, k=folds.k, vary="leave-fold-out", config=train_config_from(models),
                           out_dir=runs_dir / "fold-models", base_seed=models.base_seed, device=device,
                           progress=progress, executor=executor)
    indices, fold_of = fold_samples(pool, folds.k, folds.per_fold, seed=derive(gradient.seed, "fold-samples"))
    images, labels = subset.train_images[indices].to(device), subset.train_labels[indices].to(device)
    masks = None if subset.train_masks is None else subset.train_masks[indices]
    # the fold models get the test–retest repeat: the ceiling of MeGe is the explainer's own noise
    settings = gradient_settings(gradient, retest_sets=(FOLD_SET,))
    held_out = [run.meta["held_out_fold"] for run in runs]
    results = run_study({FOLD_SET: [run.model for run in runs]}, images, labels, masks, settings,
                        cache_dir=runs_dir / "stability", progress=progress, executor=executor,
                        identity={FOLD_SET: [run.meta["config_hash"] for run in runs], "data": config.data.__dict__,
                                  "samples": indices.tolist()}, varies={FOLD_SET: "both"})
    rows = fold_rows(results, fold_of.numpy(), held_out)
    write_csv(out / "mege_folds.csv", rows)
    model_rows = [dict(row, set="fold", held_out_fold=run.meta["held_out_fold"])
                  for row, run in zip(summary_rows(runs), runs)]
    return {"rows": rows, "models": model_rows, "n_samples": int(indices.numel())}


def consensus_store(config: StudyConfig, runs_dir: Path):
    """Where the stability study keeps the maps the consensus stage reads (None when it will not
    run): the consensus images are the first test images of the stability study, explained with
    the same settings and seeds, so no model pass runs twice."""
    from ..studies.stability.map_store import MapStore

    section = config.consensus
    if not section.enabled or config.models.k < 3 or section.n_images > config.gradient.n_images:
        return None
    return MapStore(runs_dir / "maps", section.n_images, section.groupings, section.methods)


def consensus_stage(config: StudyConfig, dataset: ImageDataset, runs, runs_dir: Path, out: Path,
                    progress: bool = True) -> dict:
    """The consensus map and the planner on the main models, with the untrained networks as the
    reference and the null, on the first ``[consensus] n_images`` test images; CSV tables and the
    maps' ``.npz`` files under ``out``."""
    from dataclasses import asdict

    from ..studies.consensus.run import run_consensus_stage

    section, device = config.consensus, config.models.device
    settings = section.settings()
    study = gradient_settings(config.gradient)
    count = min(section.n_images, len(dataset.test_labels))
    images, labels = dataset.test_images[:count].to(device), dataset.test_labels[:count].to(device)
    masks = None if dataset.test_masks is None else dataset.test_masks[:count]
    untrained, untrained_identity = (untrained_models(config, dataset, runs[0].model) if config.models.untrained_k
                                     else ([], {}))
    units = run_consensus_stage([run.model for run in runs], untrained, images, labels, masks, study, settings,
                                cache_dir=runs_dir / "consensus", out_dir=out / "consensus",
                                identity={"main": [run.meta["config_hash"] for run in runs],
                                          "untrained": untrained_identity, "data": config.data.__dict__},
                                progress=progress, store=consensus_store(config, runs_dir))
    write_csv(out / "consensus_tests.csv", [row for unit in units for row in unit["tests"]])
    write_csv(out / "consensus_calibration.csv", [dict(row, method=unit["method"], grouping=unit["grouping"])
                                                  for unit in units for row in unit["calibration"]])
    write_csv(out / "planner_curves.csv", [row for unit in units for row in unit["curve"]])
    write_csv(out / "planner_validation.csv", [row for unit in units for row in unit["validation"]])
    return {"units": units, "settings": asdict(settings), "n_images": count}


def perturbation_study(config: StudyConfig, dataset: ImageDataset, runs, control_runs, runs_dir: Path, out: Path,
                       progress: bool = True, executor=None) -> dict:
    """The perturbation presets on the same model sets as the gradient methods: the same
    stability, null, decomposition, fidelity, localisation and sanity statistics (pixel maps),
    on ``[perturbation] n_images`` images."""
    section, device = config.perturbation, config.models.device
    if not section.methods:
        return {"summary": [], "results": []}
    settings = StudySettings(methods=list(section.methods), groupings=["pixel"], seed=section.seed,
                             perturbation_samples=section.n_samples, draws=section.draws)
    count = min(section.n_images, len(dataset.test_labels))
    images, labels = dataset.test_images[:count].to(device), dataset.test_labels[:count].to(device)
    masks = None if dataset.test_masks is None else dataset.test_masks[:count]
    model_sets, varies, identity = model_sets_for_study(config, dataset, runs, control_runs)
    results = run_study(model_sets, images, labels, masks, settings, cache_dir=runs_dir / "stability",
                        progress=progress, identity=identity, include_random=False, executor=executor,
                        varies=varies)
    summary = summarise(results)
    write_csv(out / "perturbation_stability_pairs.csv", [row for result in results for row in result["rows"]])
    write_csv(out / "perturbation_summary.csv", summary)
    return {"summary": summary, "results": results, "settings": settings, "images": images, "labels": labels,
            "masks": masks}


def factor_stage(config: StudyConfig, model, dataset: ImageDataset, runs_dir: Path, out: Path, identity: str,
                 progress: bool = True, executor=None) -> dict:
    """The SEG-SMOOTH factor study on one model: per-configuration scores, η² per factor, CSV tables."""
    from ..studies.factors.effects import analyse
    from ..studies.factors.run import run_factor_study, settings_from_config, summarise_configurations

    settings = settings_from_config(config.factors)
    device = config.models.device
    count = min(settings.n_images, len(dataset.test_labels))
    # the last test images, so that the factor study does not reuse the stability study's images
    images, labels = dataset.test_images[-count:].to(device), dataset.test_labels[-count:].to(device)
    rows = run_factor_study(model, images, labels, settings, cache_dir=runs_dir / "factors", progress=progress,
                            identity={"model": identity, "data": config.data.__dict__}, executor=executor)
    configurations = summarise_configurations(rows)
    analysis = analyse(rows, seed=settings.seed)
    write_csv(out / "factor_configurations.csv", configurations)
    write_csv(out / "factor_effects.csv", [{"design": name, **effect} for name, design in analysis["designs"].items()
                                           for effect in design["effects"]])
    write_csv(out / "factor_orderings.csv", [{"design": name, **ordering} for name, design in
                                             analysis["designs"].items() for ordering in design["orderings"]])
    return {"rows": rows, "configurations": configurations, "analysis": analysis, "settings": settings}


def inpainting_stage(config: StudyConfig, model, dataset: ImageDataset, runs_dir: Path, out: Path,
                     progress: bool = True, other_models=()) -> dict:
    """Train (or load) the learned inpainter on the training images, then compare removal by
    inpainting with constant fills (quality, GEN-REMOVE methods, metrics, robustness)."""
    from ..explain.inpainting import InpainterConfig, train_inpainter
    from ..studies.removal.run import RemovalSettings, run_removal_study

    section, device = config.inpainting, config.models.device
    inpainter_config = InpainterConfig(width=section.width, conditional=section.conditional, steps=section.steps,
                                       seed=section.seed)
    began = time.perf_counter()
    inpainter = train_inpainter(dataset.train_images, dataset.train_labels, dataset.num_classes, inpainter_config,
                                path=runs_dir / "inpainter.pt", device=device, progress=progress,
                                masks=dataset.train_masks)
    train_seconds = inpainter.meta.get("seconds", time.perf_counter() - began)
    settings = RemovalSettings(n_images=section.n_images, lime_samples=section.lime_samples,
                               mp_iterations=section.mp_iterations, robustness=section.robustness, seed=section.seed)
    # test images after those of the stability study
    start = min(config.gradient.n_images, max(0, len(dataset.test_labels) - section.n_images))
    stop = start + max(section.n_images, section.quality_images)
    images, labels = dataset.test_images[start:stop].to(device), dataset.test_labels[start:stop].to(device)
    masks = None if dataset.test_masks is None else dataset.test_masks[start:stop]
    backgrounds = None
    if config.data.dataset == "shapes":  # the generator's own backgrounds: the in-distribution control
        from ..data.datasets import render_backgrounds

        backgrounds = torch.from_numpy(render_backgrounds(images.shape[0], config.data.size,
                                                          seed=derive(config.data.seed, "backgrounds"))).float().div_(255)
    study = run_removal_study(model, inpainter, images, labels, masks, settings, progress=progress,
                              dataset_mean=torch.tensor(dataset.mean), backgrounds=backgrounds,
                              other_models=[other.to(device) for other in other_models])
    write_csv(out / "inpainting_quality.csv", study["quality"])
    write_csv(out / "removal_metrics.csv", study["rows"])
    write_csv(out / "metric_agreement.csv", study["agreement"])
    write_csv(out / "removal_robustness.csv", study["robustness"])
    study.update(train_seconds=train_seconds, inpainter=str(inpainter), settings=settings)
    return study


def terminal_summary(summary: list[dict], top: int = 8) -> str:
    """The headline in a few lines for the terminal."""
    from ..core.tables import format_table

    rows = sorted((r for r in summary if r["model_set"] == "main"), key=lambda r: -r["ssim"])[:top]
    return format_table([{"method": r["method"], "grouping": r["grouping"], "ssim": r["ssim"],
                          "spearman": r["spearman"], "deletion_auc": r["deletion_auc"],
                          "mu_fidelity": r["mu_fidelity"]} for r in rows])


def run_report(config: StudyConfig, progress: bool = True, executor=None) -> Path:
    """Run every stage that the configuration asks for, write ``results.json``, the CSV tables and
    the figures that need models, then render the page from the results (:func:`render_report`);
    returns the report folder."""
    began = time.perf_counter()
    out = Path(config.report.out_dir) / config.report.name
    runs_dir = Path(config.report.runs_dir) / config.report.name
    figures_dir = out / "figures"
    timings: dict[str, float] = {}

    start = time.perf_counter()
    dataset = load_configured(config.data)
    timings["data"] = time.perf_counter() - start

    start = time.perf_counter()
    runs, control_runs = train_model_sets(config, dataset, runs_dir, progress, executor)
    timings["training"] = time.perf_counter() - start
    if not dataset.labelled:
        dataset = with_predicted_labels(dataset, runs[0].model)
    model_rows = [dict(row, set="main") for row in summary_rows(runs)]
    model_rows += [dict(row, set="control") for row in summary_rows(control_runs)]

    start = time.perf_counter()
    study = gradient_study(config, dataset, runs, control_runs, runs_dir, out, progress, executor)
    timings["stability"] = time.perf_counter() - start
    settings, model_sets = study["settings"], study["model_sets"]
    images, labels, masks = study["images"], study["labels"], study["masks"]

    folds = None
    if config.folds.enabled and (config.models.train or not config.models.user_models):
        start = time.perf_counter()
        folds = fold_stage(config, dataset, runs_dir, out, progress, executor)
        timings["folds"] = time.perf_counter() - start

    start = time.perf_counter()
    perturbation = perturbation_study(config, dataset, runs, control_runs, runs_dir, out, progress, executor)
    timings["perturbation"] = time.perf_counter() - start
    summary = study["summary"] + perturbation["summary"]
    write_csv(out / "stability_summary.csv", summary)
    factors = None
    if config.factors.enabled:
        start = time.perf_counter()
        factors = factor_stage(config, runs[0].model, dataset, runs_dir, out, runs[0].meta["config_hash"], progress,
                               executor)
        timings["factor_study"] = time.perf_counter() - start

    consensus = None
    if config.consensus.enabled and len(runs) >= 3:
        start = time.perf_counter()
        consensus = consensus_stage(config, dataset, runs, runs_dir, out, progress)
        timings["consensus"] = time.perf_counter() - start

    removal = None
    if config.inpainting.enabled and len(dataset.train_labels) and dataset.labelled:
        start = time.perf_counter()
        removal = inpainting_stage(config, runs[0].model, dataset, runs_dir, out, progress,
                                   other_models=[run.model for run in runs[1:]])
        timings["inpainting"] = time.perf_counter() - start

    # the figures that need data or models are drawn now; every other figure is drawn from results.json
    from ..explain.gradient.diagnostics import confidence_by_strength
    from ..report.figures import plot_removal_maps

    confidence = confidence_by_strength(model_sets["main"][0], images, labels, seed=settings.seed)
    write_csv(out / "sampling_confidence.csv", confidence)
    panels = example_panels(model_sets["main"], images, labels, masks, settings, figures_dir)
    if perturbation["summary"]:
        panels += example_panels(model_sets["main"], perturbation["images"], perturbation["labels"],
                                 perturbation["masks"], perturbation["settings"], figures_dir)
    drawn = {"dataset_examples": [_relative(plot_dataset_examples(
        dataset.test_images, dataset.test_labels, dataset.test_masks, dataset.class_names,
        figures_dir / "dataset_examples"), out), "One test image per class and its ground-truth object mask."],
        "example_panels": [[_relative(path, out), caption] for path, caption in panels]}
    if removal is not None:
        drawn["removal_maps"] = [_relative(plot_removal_maps(removal["images"], removal["masks"], removal["maps"],
                                                             figures_dir / "removal_maps"), out),
                                 "Maps of each method on four test images (object outline in yellow)."]

    timings["total"] = time.perf_counter() - began
    results = {
        "config": config.to_dict(), "environment": _environment(), "dataset": dataset.describe(),
        "models": model_rows + ([] if folds is None else folds["models"]), "timings_s": timings,
        "stability_summary": summary, "n_images": int(images.shape[0]),
        "perturbation_methods": [r["method"] for r in perturbation["summary"]],
        "perturbation_n_images": int(perturbation["images"].shape[0]) if perturbation["summary"] else 0,
        "variance_reduction": study["reduction"], "grid_contrasts": study["contrasts"],
        "grouping_contrasts": pixel_contrast_rows(study["results"]),
        "study_settings": settings.__dict__, "sampling_confidence": confidence,
        "mege_folds": None if folds is None else {"rows": folds["rows"], "n_samples": folds["n_samples"]},
        "perturbation_settings": perturbation["settings"].__dict__ if perturbation["summary"] else None,
        "inpainting": None if removal is None else {
            "quality": removal["quality"], "methods": removal["rows"], "metric_agreement": removal["agreement"],
            "robustness": removal["robustness"], "inpainter_train_seconds": removal["train_seconds"],
            "inpainter": removal["inpainter"], "settings": removal["settings"].__dict__},
        "factor_study": None if factors is None else {
            "settings": factors["settings"].__dict__, "configurations": factors["configurations"],
            "analysis": factors["analysis"]},
        "consensus": consensus,
        "figures": drawn,
        "seeds": configured_seeds(config),
    }
    results["intervals"] = interval_notes(results, None if factors is None else factors["settings"].seed)
    atomic_write_json(out / "results.json", results)
    write_csv(out / "models.csv", model_rows)
    render_report(out)
    if config.report.name == "default" and config.report.copy_figures_to:
        target = Path(config.report.copy_figures_to)
        target.mkdir(parents=True, exist_ok=True)
        for figure in figures_dir.glob("*.p*"):
            shutil.copy2(figure, target / figure.name)
    if config.report.name == "default" and config.report.copy_results_to:
        target = Path(config.report.copy_results_to)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(out / "results.json", target / f"{config.report.name}.json")
    return out


def _relative(path: Path, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


def example_panels(models, images, labels, masks, settings: StudySettings, figures_dir: Path) -> list:
    """Per method (pixel and the first super-pixel grouping): one image's maps across models."""
    partitions = compute_partitions(images[:1], settings.groupings, settings.n_segments)
    shown = {"pixel": None}
    superpixel = [g for g in settings.groupings if g not in ("pixel", "grid")][:1]
    shown.update({g: partitions[g] for g in superpixel})
    figures = []
    for method in settings.methods:
        per_model = [explain_groupings(method, model, explainer_seed(settings, "main", k), images[:1], labels[:1], shown,
                                       settings)
                     for k, model in enumerate(models)]
        for grouping in shown:
            maps = [grey_maps(maps[grouping])[0].cpu() for maps in per_model]
            path = plot_model_maps(images[0], None if masks is None else masks[0], maps,
                                   figures_dir / f"maps_{method}_{grouping}", title=f"{method} / {grouping}")
            figures.append((path, f"{method}, {grouping}: each model's map of the same image, mean and std."))
    return figures
