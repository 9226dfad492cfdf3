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

import numpy as np
import torch

from . import __version__
from .config import StudyConfig
from .data import ImageDataset, load_dataset
from .figures import (
    plot_dataset_examples, plot_model_maps, plot_stability_bars, plot_stability_fidelity, plot_timing,
    plot_variance_reduction,
)
from .html import Section, render_page
from .metrics import grey_maps
from .seeds import TrainConfig, summary_rows, train_one, train_seeds
from .stability import StudySettings, compute_partitions, explain_groupings, run_study, summarise, variance_reduction_rows
from .storage import atomic_write_json, atomic_write_text

QUICK_OVERRIDES = {
    "data": {"n_train": 3000, "n_test": 300},
    "models": {"k": 3, "epochs": 4, "vary": "seed", "control_k": 0},
    "gradient": {"n_images": 12, "n_samples": 8, "n_steps": 8,
                 "methods": ["saliency", "integrated_gradients", "smoothgrad", "suppression"],
                 "groupings": ["pixel", "fastslic", "grid"]},
    "perturbation": {"n_images": 6, "n_samples": 100, "methods": ["rise", "lime", "occlusion", "ciu"]},
    "factors": {"n_images": 4, "sample_sizes": ["M", 100], "segmentations": ["grid-bilinear", "slic/gaussian"],
                "samplers": ["random", "shap", "single"]},
    "inpainting": {"steps": 150, "width": 8, "n_images": 4, "quality_images": 32, "lime_samples": 60, "mp_iterations": 20,
                   "robustness": False},
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


def _load_data(config: StudyConfig) -> ImageDataset:
    data = config.data
    if data.dataset == "shapes":
        return load_dataset("shapes", n_train=data.n_train, n_test=data.n_test, size=data.size, seed=data.seed)
    if data.dataset == "lfw":
        return load_dataset("lfw", seed=data.seed)
    if data.dataset == "folder":
        return load_dataset("folder", root=data.root or None, size=data.size, seed=data.seed)
    return load_dataset(data.dataset, root=data.root or None)


def _environment() -> dict:
    return {
        "stablesal": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
    }


def train_model_sets(config: StudyConfig, dataset: ImageDataset, runs_dir: Path, progress: bool = True,
                     executor=None):
    """The K main models and the control models (model 0's data, seeds varying), trained or loaded."""
    models = config.models
    train_config = TrainConfig(model=models.arch, epochs=models.epochs, batch_size=models.batch_size, lr=models.lr)
    runs = train_seeds(dataset, k=models.k, vary=models.vary, config=train_config, out_dir=runs_dir / "models",
                       base_seed=models.base_seed, device=models.device, progress=progress, executor=executor)
    control_plan = []
    # the control separates data from optimiser randomness: it only varies seeds
    split = None if models.vary == "seed" else 0
    for i in range(models.control_k):
        run = {"index": i, "seed": models.base_seed + i, "split": split, "splits": 1 if split is None else models.k}
        control_plan.append(run)
    if executor is None:
        control_runs = [train_one(dataset, run, train_config, runs_dir / "models", models.device, progress=progress)
                        for run in control_plan]
    else:
        from .seeds import _train_unit

        unit = functools.partial(_train_unit, config=train_config, out_dir=runs_dir / "models",
                                 device=models.device, model_factory=None)
        control_runs = executor.map(unit, control_plan, desc="control seeds", progress=progress, shared=(dataset,))
    return runs, control_runs


def gradient_study(config: StudyConfig, dataset: ImageDataset, runs, control_runs, runs_dir: Path, out: Path,
                   progress: bool = True, executor=None) -> dict:
    """Run (or resume) the cross-seed study of the gradient methods and write its CSV tables."""
    gradient, device = config.gradient, config.models.device
    settings = StudySettings(methods=list(gradient.methods), groupings=list(gradient.groupings),
                             n_segments=gradient.n_segments, n_samples=gradient.n_samples, n_steps=gradient.n_steps,
                             noise_level=gradient.noise_level, seed=gradient.seed)
    count = min(gradient.n_images, len(dataset.test_labels))
    images, labels = dataset.test_images[:count].to(device), dataset.test_labels[:count].to(device)
    masks = None if dataset.test_masks is None else dataset.test_masks[:count]
    model_sets = {"main": [r.model for r in runs]}
    if control_runs:
        model_sets["control"] = [r.model for r in control_runs]
    identity = {"main": [r.meta["config_hash"] for r in runs],
                "control": [r.meta["config_hash"] for r in control_runs], "data": config.data.__dict__}
    results = run_study(model_sets, images, labels, masks, settings, cache_dir=runs_dir / "stability",
                        progress=progress, identity=identity, executor=executor)
    summary, reduction = summarise(results), variance_reduction_rows(results)
    write_csv(out / "stability_pairs.csv", [row for result in results for row in result["rows"]])
    write_csv(out / "stability_summary.csv", summary)
    write_csv(out / "variance_reduction.csv", reduction)
    return {"summary": summary, "reduction": reduction, "results": results, "settings": settings,
            "model_sets": model_sets, "images": images, "labels": labels, "masks": masks}


def perturbation_study(config: StudyConfig, dataset: ImageDataset, runs, runs_dir: Path, out: Path,
                       progress: bool = True, executor=None) -> dict:
    """The perturbation presets on the same K main models: the same stability, fidelity, localisation
    and sanity metrics as the gradient methods (pixel maps), on ``[perturbation] n_images`` images."""
    section, device = config.perturbation, config.models.device
    if not section.methods:
        return {"summary": [], "results": []}
    settings = StudySettings(methods=list(section.methods), groupings=["pixel"], seed=section.seed,
                             perturbation_samples=section.n_samples)
    count = min(section.n_images, len(dataset.test_labels))
    images, labels = dataset.test_images[:count].to(device), dataset.test_labels[:count].to(device)
    masks = None if dataset.test_masks is None else dataset.test_masks[:count]
    identity = {"main": [r.meta["config_hash"] for r in runs], "data": config.data.__dict__}
    results = run_study({"main": [r.model for r in runs]}, images, labels, masks, settings,
                        cache_dir=runs_dir / "stability", progress=progress, identity=identity, include_random=False,
                        executor=executor)
    summary = summarise(results)
    write_csv(out / "perturbation_stability_pairs.csv", [row for result in results for row in result["rows"]])
    write_csv(out / "perturbation_summary.csv", summary)
    return {"summary": summary, "results": results, "settings": settings, "images": images, "labels": labels,
            "masks": masks}


def factor_stage(config: StudyConfig, model, dataset: ImageDataset, runs_dir: Path, out: Path, identity: str,
                 progress: bool = True, executor=None) -> dict:
    """The SEG-SMOOTH factor study on one model: per-configuration scores, η² per factor, CSV tables."""
    from .factor_study import effect_sizes, run_factor_study, settings_from_config, summarise_configurations

    settings = settings_from_config(config.factors)
    device = config.models.device
    count = min(settings.n_images, len(dataset.test_labels))
    # the last test images, so that the factor study does not reuse the stability study's images
    images, labels = dataset.test_images[-count:].to(device), dataset.test_labels[-count:].to(device)
    rows = run_factor_study(model, images, labels, settings, cache_dir=runs_dir / "factors", progress=progress,
                            identity={"model": identity, "data": config.data.__dict__}, executor=executor)
    configurations = summarise_configurations(rows)
    effects = effect_sizes(configurations)
    write_csv(out / "factor_configurations.csv", configurations)
    write_csv(out / "factor_effects.csv", effects)
    return {"rows": rows, "configurations": configurations, "effects": effects, "settings": settings}


def inpainting_stage(config: StudyConfig, model, dataset: ImageDataset, runs_dir: Path, out: Path,
                     progress: bool = True, other_models=()) -> dict:
    """Train (or load) the learned inpainter on the training images, then compare removal by
    inpainting with constant fills (quality, GEN-REMOVE methods, metrics, robustness)."""
    from .inpainting import InpainterConfig, train_inpainter
    from .removal_study import RemovalSettings, run_removal_study

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
        from .data import render_backgrounds

        backgrounds = torch.from_numpy(render_backgrounds(images.shape[0], config.data.size,
                                                          seed=10_000 + config.data.seed)).float().div_(255)
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
    from .cli import format_table

    rows = sorted((r for r in summary if r["model_set"] == "main"), key=lambda r: -r["ssim"])[:top]
    return format_table([{"method": r["method"], "grouping": r["grouping"], "ssim": r["ssim"],
                          "spearman": r["spearman"], "deletion_auc": r["deletion_auc"],
                          "mu_fidelity": r["mu_fidelity"]} for r in rows])


def run_report(config: StudyConfig, progress: bool = True, executor=None) -> Path:
    """Run every stage that the configuration asks for and write the report folder; returns it."""
    began = time.perf_counter()
    out = Path(config.report.out_dir) / config.report.name
    runs_dir = Path(config.report.runs_dir) / config.report.name
    figures_dir = out / "figures"
    timings: dict[str, float] = {}

    start = time.perf_counter()
    dataset = _load_data(config)
    timings["data"] = time.perf_counter() - start

    start = time.perf_counter()
    models = config.models
    runs, control_runs = train_model_sets(config, dataset, runs_dir, progress, executor)
    timings["training"] = time.perf_counter() - start
    model_rows = [dict(row, set="main") for row in summary_rows(runs)]
    model_rows += [dict(row, set="control") for row in summary_rows(control_runs)]

    sections = []
    example = plot_dataset_examples(dataset.test_images, dataset.test_labels, dataset.test_masks,
                                    dataset.class_names, figures_dir / "dataset_examples")
    accuracies = [row["test_acc"] for row in model_rows]
    sections.append(Section(
        title="Setup",
        reading=(
            f"{dataset.name}: {len(dataset.train_labels)} training and {len(dataset.test_labels)} test images of "
            f"shape {tuple(dataset.image_shape)}, {dataset.num_classes} classes. {len(runs)} {models.arch} models "
            f"differ in {models.vary!r} (seed = weight initialisation, data order and augmentation; split = disjoint "
            f"training data)" + (f"; {len(control_runs)} control models share model 0's data and differ in seed only"
                                 if control_runs else "") +
            f". Test accuracy ranges from {min(accuracies):.1%} to {max(accuracies):.1%} "
            f"(mean {sum(accuracies) / len(accuracies):.1%}); training took {timings['training']:.0f} s in total."
        ),
        figures=[(example, "One test image per class and its ground-truth object mask.")],
        tables=[(model_rows, "Retrained models: seed, data split, training-set size, accuracy and training time (s).")],
    ))

    start = time.perf_counter()
    study = gradient_study(config, dataset, runs, control_runs, runs_dir, out, progress, executor)
    timings["stability"] = time.perf_counter() - start
    summary, reduction, settings = study["summary"], study["reduction"], study["settings"]
    model_sets, images, labels, masks = study["model_sets"], study["images"], study["labels"], study["masks"]
    count = images.shape[0]

    start = time.perf_counter()
    perturbation = perturbation_study(config, dataset, runs, runs_dir, out, progress, executor)
    timings["perturbation"] = time.perf_counter() - start
    summary = summary + perturbation["summary"]
    write_csv(out / "stability_summary.csv", summary)
    factors = None
    if config.factors.enabled:
        start = time.perf_counter()
        factors = factor_stage(config, runs[0].model, dataset, runs_dir, out, runs[0].meta["config_hash"], progress,
                               executor)
        timings["factor_study"] = time.perf_counter() - start

    removal = None
    if config.inpainting.enabled:
        start = time.perf_counter()
        removal = inpainting_stage(config, runs[0].model, dataset, runs_dir, out, progress,
                                   other_models=[run.model for run in runs[1:]])
        timings["inpainting"] = time.perf_counter() - start

    sections.append(headline_section(summary))
    bars = [(plot_stability_bars(summary, figures_dir / f"stability_{name}", model_set=name),
             f"{name} models: similarity of the maps of every pair of models, per method and grouping.")
            for name in model_sets]
    sections.append(Section("Cross-seed stability: pixel vs grouped", stability_reading(summary), figures=bars))
    sections.append(Section(
        "Variance reduction vs segment size", reduction_reading(reduction),
        figures=[(plot_variance_reduction(reduction, figures_dir / "variance_reduction"),
                  "Left: measured tr(Σ)/tr(PΣ) across models for unit-norm maps, against mean segment size, with the "
                  "independent-pixel line. Right: the price, bias ||μ − Pμ||²/||μ||², against the noise-to-signal gain.")],
        tables=[(_rounded(reduction), "")]))
    from .diagnostics import confidence_by_strength
    from .figures import plot_sampling_confidence

    confidence = confidence_by_strength(model_sets["main"][0], images, labels, seed=settings.seed)
    write_csv(out / "sampling_confidence.csv", confidence)
    sections.append(Section(
        "Noise vs suppression sampling", sampling_reading(summary) + " " + confidence_reading(confidence),
        figures=[(plot_sampling_confidence(confidence, figures_dir / "sampling_confidence"),
                  "Model 0 on the samples each sampler makes: probability of the explained class and predictive "
                  "entropy, Gaussian noise (σ as a fraction of the input range) vs suppression (fixed keep rate).")],
        tables=[(_rounded([{k: r[k] for k in ("model_set", "method", "grouping", "ssim", "spearman", "deletion_auc",
                                               "relevance_mass") if k in r}
                           for r in summary if r["method"] in ("smoothgrad", "suppression", "vargrad")]), "")]))
    sections.append(Section(
        "Stability vs fidelity", fidelity_reading(summary),
        figures=[(plot_stability_fidelity(summary, figures_dir / "stability_fidelity"),
                  "Each point is a method × grouping on the main models: cross-seed SSIM against deletion AUC of model 0.")]))
    sections.append(Section("Sanity: model randomisation", sanity_reading(summary), tables=[(_rounded([
        {k: r[k] for k in ("method", "grouping", "sanity_spearman", "sanity_ssim", "ssim") if k in r}
        for r in summary if r["model_set"] == "main" and "sanity_spearman" in r]),
        "Similarity between maps of the trained model 0 and of the same architecture with random weights "
        "(lower = the map depends on what was learned); 'ssim' is the cross-seed SSIM for comparison.")]))
    if perturbation["summary"]:
        sections.append(perturbation_section(perturbation["summary"], summary, perturbation["settings"],
                                             perturbation["images"].shape[0]))
    if factors is not None:
        sections.append(factor_section(factors, figures_dir))
    if removal is not None:
        sections.append(inpainting_section(removal, figures_dir))
    panels = example_panels(model_sets["main"], images, labels, masks, settings, figures_dir)
    if perturbation["summary"]:
        panels += example_panels(model_sets["main"], perturbation["images"], perturbation["labels"],
                                 perturbation["masks"], perturbation["settings"], figures_dir)
    sections.append(Section("Example maps across models", "Each row shows one test image explained by every "
                            "main model, with the per-pixel mean and standard deviation across models.",
                            figures=panels))
    sections.append(Section("Timing", f"Explaining {count} images took the times below per model on "
                            f"{_environment()['processor']} ({torch.get_num_threads()} threads).",
                            figures=[(plot_timing(summary, figures_dir / "timing"), "Seconds per model.")]))

    timings["total"] = time.perf_counter() - began
    results = {
        "config": config.to_dict(), "environment": _environment(), "dataset": dataset.describe(),
        "models": model_rows, "timings_s": timings, "stability_summary": summary,
        "variance_reduction": reduction, "study_settings": settings.__dict__, "sampling_confidence": confidence,
        "perturbation_settings": perturbation["settings"].__dict__ if perturbation["summary"] else None,
        "inpainting": None if removal is None else {
            "quality": removal["quality"], "methods": removal["rows"], "metric_agreement": removal["agreement"],
            "robustness": removal["robustness"], "inpainter_train_seconds": removal["train_seconds"],
            "settings": removal["settings"].__dict__},
        "factor_study": None if factors is None else {
            "settings": factors["settings"].__dict__, "configurations": factors["configurations"],
            "effects": factors["effects"]},
    }
    atomic_write_json(out / "results.json", results)
    write_csv(out / "models.csv", model_rows)
    page = render_page(
        f"stablesal stability report: {config.report.name}",
        f"stablesal {__version__} · torch {torch.__version__} · {platform.machine()} · "
        f"{torch.get_num_threads()} threads · {timings['total']:.0f} s",
        sections,
    )
    atomic_write_text(out / "index.html", page)
    if config.report.name == "default" and config.report.copy_figures_to:
        target = Path(config.report.copy_figures_to)
        target.mkdir(parents=True, exist_ok=True)
        for figure in figures_dir.glob("*.p*"):
            shutil.copy2(figure, target / figure.name)
    return out


def perturbation_section(rows: list[dict], summary: list[dict], settings: StudySettings, count: int) -> Section:
    """Perturbation presets next to the gradient methods: cross-seed stability and fidelity."""
    main = [r for r in summary if r["model_set"] == "main" and r["grouping"] == "pixel"]
    table = _rounded([{k: r.get(k) for k in ("family", "method", "n_images", "ssim", "spearman", "topk_intersection",
                                               "deletion_auc", "insertion_auc", "mu_fidelity", "relevance_mass",
                                               "sanity_spearman", "explain_seconds_per_model")}
                      for r in sorted(main, key=lambda r: -r["spearman"])])
    best = max(rows, key=lambda r: r["spearman"])
    gradients = [r for r in main if r["family"] == "gradient"]
    best_gradient = max(gradients, key=lambda r: r["spearman"]) if gradients else None
    random_row = next((r for r in main if r["method"] == "random"), None)
    reading = (f"On {count} test images and the same {len(settings.methods)} presets on every retrained model, the "
               f"most stable perturbation method is {best['method']} (cross-seed Spearman {best['spearman']:.2f}, "
               f"SSIM {best['ssim']:.2f})")
    if best_gradient is not None:
        reading += (f"; the most stable gradient method at pixel level is {best_gradient['method']} "
                    f"(Spearman {best_gradient['spearman']:.2f})")
    if random_row is not None:
        reading += f"; random maps score {random_row['spearman']:.2f}"
    fastest = min(rows, key=lambda r: r["explain_seconds_per_model"])
    slowest = max(rows, key=lambda r: r["explain_seconds_per_model"])
    reading += (f". Perturbation maps cost {fastest['explain_seconds_per_model']:.1f} s ({fastest['method']}) to "
                f"{slowest['explain_seconds_per_model']:.1f} s ({slowest['method']}) per model; RISE, LIME and "
                f"KernelSHAP ran with {settings.perturbation_samples} samples here.")
    return Section("Perturbation methods across seeds", reading, tables=[(table, "Pixel maps on the main models, "
                   "all methods ranked by cross-seed Spearman; perturbation rows use the first n_images test images.")])


def factor_section(factors: dict, figures_dir: Path) -> Section:
    from .factor_study import factor_reading
    from .figures import plot_factor_effects, plot_factor_levels

    configurations, effects, settings = factors["configurations"], factors["effects"], factors["settings"]
    top = sorted(configurations, key=lambda c: -c["srg"])[:8]
    return Section(
        "Perturbation factor study (SEG-SMOOTH)", factor_reading(effects, configurations),
        figures=[(plot_factor_effects(effects, figures_dir / "factor_effects"),
                  "Share of the variance of each score across configurations explained by each factor's main effect."),
                 (plot_factor_levels(configurations, figures_dir / "factor_levels"),
                  f"SRG (LIF − MIF, {settings.srg_steps} deletion steps, image-mean fill) of every configuration, "
                  f"by level of each factor; bars are level means. {settings.n_images} images, model 0.")],
        tables=[(_rounded([{k: e[k] for k in e} for e in effects]), "η² per factor (main effects)."),
                (_rounded([{k: c[k] for k in ("segmentation", "sampler", "n_samples", "calculator", "map", "srg",
                                              "deletion_auc", "insertion_auc")} for c in top]),
                 "The eight configurations with the highest SRG.")])


WEIGHT_FREE_INPAINTERS = ("opencv-telea", "opencv-ns", "biharmonic", "road-linear")


def _fill_comparison(learned: dict, quality: list[dict], train_seconds: float) -> str:
    """The keep-prediction reading: the learned fill against the weight-free inpainters (which see
    only the kept pixels, like it), the constant fills and the fresh-background control."""
    rows = {q["inpainter"]: q for q in quality}

    def rate(row: dict) -> str:
        ci = f" ± {row['keep_prediction_ci95']:.2f}" if "keep_prediction_ci95" in row else ""
        return f"{row['keep_prediction']:.2f}{ci}"

    text = (f"The learned inpainter ({learned['inpainter']}, trained in {train_seconds:.0f} s, filling without the "
            f"class) keeps the classifier's prediction in {rate(learned)} of {learned.get('n_images', '')} test "
            "images when exactly the background is removed (95 % interval)")
    if "keep_prediction_correct" in learned:
        text += f", {learned['keep_prediction_correct']:.2f} of those it classifies correctly"
    inpainters = [rows[n] for n in WEIGHT_FREE_INPAINTERS if n in rows]
    if inpainters:
        best = max(inpainters, key=lambda q: q["keep_prediction"])
        text += (f"; the best weight-free inpainter, which like it sees only the kept pixels, keeps "
                 f"{rate(best)} ({best['inpainter']})")
    constants = [q for n, q in rows.items() if n not in WEIGHT_FREE_INPAINTERS
                 and n not in (learned["inpainter"], "fresh-background")]
    if constants:
        text += "; the constant fills keep " + ", ".join(
            f"{rate(q)} ({q['inpainter']}, {q.get('keep_prediction_correct', float('nan')):.2f} correct)"
            for q in constants)
        text += " (mean-colour and blur are computed from the whole image, removed pixels included)"
    if "keep_prediction_models_mean" in learned:
        rivals = sorted((q for q in quality if q is not learned and "keep_prediction_models_mean" in q),
                        key=lambda q: -q["keep_prediction_models_mean"])[:3]
        text += (f". Judged by all {learned['n_models']} retrained models, the learned fill keeps "
                 f"{learned['keep_prediction_models_mean']:.2f} on average "
                 f"({learned['keep_prediction_models_min']:.2f}–{learned['keep_prediction_models_max']:.2f}); the "
                 "best other fills keep " + ", ".join(f"{q['keep_prediction_models_mean']:.2f} ({q['inpainter']})"
                                                       for q in rivals))
    if "fresh-background" in rows:
        control = rows["fresh-background"]
        text += (f". A fresh background drawn from the data's own generator, in-distribution by construction, "
                 f"keeps {rate(control)} ({control.get('keep_prediction_correct', float('nan')):.2f} correct)")
        if constants and control["keep_prediction"] < max(q["keep_prediction"] for q in constants):
            text += (": this classifier holds its prediction better on a flat background than on a real one, so "
                     "the keep rate rewards flat fills, not only in-distribution ones")
    if "keep_prediction_ring" in learned:
        best_ring = max((q for q in quality if q is not learned), key=lambda q: q["keep_prediction_ring"])
        text += (f". With a one-pixel ring of true background kept: {learned['keep_prediction_ring']:.2f} against "
                 f"{best_ring['keep_prediction_ring']:.2f} ({best_ring['inpainter']})")
    if inpainters:
        best_psnr = max(inpainters, key=lambda q: q["psnr_db"])
        text += (f". PSNR in held-out holes: {learned['psnr_db']:.1f} dB vs {best_psnr['psnr_db']:.1f} dB for the best "
                 f"weight-free inpainter ({best_psnr['inpainter']})")
        if "blur" in rows:
            text += f"; blur's {rows['blur']['psnr_db']:.1f} dB comes from the removed pixels"
    return text


def inpainting_section(removal: dict, figures_dir: Path) -> Section:
    from .figures import plot_inpainting_quality, plot_removal_maps, plot_removal_pairs

    quality, rows, agreement, robustness = (removal["quality"], removal["rows"], removal["agreement"],
                                            removal["robustness"])
    learned = next(q for q in quality if q["inpainter"] == removal["inpainter"])
    parts = [_fill_comparison(learned, quality, removal["train_seconds"])]
    by_name = {r["method"]: r for r in rows}
    for pair in ("SP", "LIME", "MP"):
        a, b = by_name.get(pair), by_name.get(f"{pair}-G")
        if a and b:
            text = (f"{pair} → {pair}-G: deletion AUC with inpainted substrate {a['deletion_auc_inpaint']:.3f} → "
                    f"{b['deletion_auc_inpaint']:.3f} (lower is better)")
            if "relevance_mass" in a:
                text += f", relevance mass {a['relevance_mass']:.2f} → {b['relevance_mass']:.2f}"
            parts.append(text)
    if robustness:
        robust = {r["method"]: r for r in robustness}
        gains = [f"{p}: Spearman {robust[p]['spearman']:.2f} → {robust[p + '-G']['spearman']:.2f}"
                 for p in ("SP", "LIME", "MP") if p in robust and p + "-G" in robust]
        parts.append("Similarity of maps across hyperparameter settings (random floor "
                     f"{robustness[0]['random_spearman']:.2f}): " + "; ".join(gains))
    random_row = by_name.get("random")
    if random_row:
        from .removal_study import HIGHER_IS_BETTER

        last = [m for m in HIGHER_IS_BETTER if m in random_row and
                sorted(rows, key=lambda r: r.get(m, float("nan")), reverse=HIGHER_IS_BETTER[m])[-1]["method"] == "random"]
        parts.append(f"The random map ranks last by {len(last)} of "
                     f"{sum(1 for m in HIGHER_IS_BETTER if m in random_row)} metrics ({', '.join(last) or 'none'})")
    if agreement:
        taus = [a["tau"] for a in agreement]
        parts.append(f"Kendall τ between the metrics' rankings ranges from {min(taus):+.2f} to {max(taus):+.2f} "
                     f"(median {float(np.median(taus)):+.2f})")
    reading = ". ".join(parts) + "."
    maps_figure = plot_removal_maps(removal["images"], removal["masks"], removal["maps"], figures_dir / "removal_maps")
    return Section(
        "Inpainting vs constant fill", reading,
        figures=[(plot_inpainting_quality(quality, figures_dir / "inpainting_quality"),
                  "Held-out test images: PSNR inside random holes (25-50 % of the image) and the share of images whose "
                  "prediction is unchanged when everything outside the (dilated) object mask is filled."),
                 (plot_removal_pairs(rows, figures_dir / "inpainting_vs_fill"),
                  "Classical fill (grey) vs inpainting (blue) for sliding patch, LIME and Meaningful Perturbation; "
                  "dashed: random map."),
                 (maps_figure, "Maps of each method on four test images (object outline in yellow).")],
        tables=[(_rounded(quality), "Inpainters: quality, keep-prediction rate and cost (ms per image)."),
                (_rounded(rows), "Every method under the evaluation suite (model 0). inpaint_metric: INPAINT-METRIC "
                 "area (class-conditional, lower is better), inpaint_metric_agnostic: its class-agnostic variant."),
                (_rounded(robustness), "Mean pairwise similarity of maps across hyperparameter settings."),
                (_rounded(agreement), "Kendall τ between the rankings of the methods by each pair of metrics.")])


def _rounded(rows: list[dict], digits: int = 3) -> list[dict]:
    return [{k: (round(v, digits) if isinstance(v, float) else v) for k, v in row.items() if "ci_" not in k}
            for row in rows]


def _get(summary, method, grouping, model_set="main"):
    return next((r for r in summary if r["method"] == method and r["grouping"] == grouping
                 and r["model_set"] == model_set), None)


def headline_section(summary: list[dict]) -> Section:
    """Every method × grouping ranked by cross-seed stability and by fidelity, random control included."""
    rows = [r for r in summary if r["model_set"] == "main"]
    by_ssim = sorted(rows, key=lambda r: -r["ssim"])
    by_deletion = {id(r): rank for rank, r in enumerate(sorted(rows, key=lambda r: r["deletion_auc"]), 1)}
    table = [{
        "stability rank": rank, "method": r["method"], "grouping": r["grouping"],
        "SSIM": f"{r['ssim']:.3f} [{r['ssim_ci_low']:.3f}, {r['ssim_ci_high']:.3f}]",
        "Spearman": round(r["spearman"], 3), "top-10% ∩": round(r["topk_intersection"], 3),
        "MeGe": round(r["mege"], 3), "ReCo": round(r["reco"], 3),
        "deletion AUC ↓": round(r["deletion_auc"], 3), "fidelity rank": by_deletion[id(r)],
        "µFidelity": round(r["mu_fidelity"], 3),
        "relevance mass": round(r.get("relevance_mass", float("nan")), 3),
    } for rank, r in enumerate(by_ssim, 1)]
    best, random_rows = by_ssim[0], [r for r in rows if r["method"] == "random"]
    random_rank = min(by_deletion[id(r)] for r in random_rows) if random_rows else None
    reading = (f"The most stable map across retrained models is {best['method']} with {best['grouping']} grouping "
               f"(SSIM {best['ssim']:.3f}). ")
    if random_rank is not None:
        reading += (f"The random-map control's best fidelity rank is {random_rank} of {len(rows)}: "
                    + ("deletion AUC tells real maps from noise here." if random_rank > len(rows) * 0.6 else
                       "deletion AUC barely separates real maps from random ones here; read fidelity with care."))
        grouped_random = [r for r in random_rows if r["grouping"] != "pixel"]
        if grouped_random:
            r = max(grouped_random, key=lambda r: r["ssim"])
            reading += (f" Note that grouped random maps reach SSIM {r['ssim']:.3f} ({r['grouping']}): SSIM rewards "
                        "smoothness, so compare grouped methods with the grouped random control, and prefer Spearman.")
    return Section("Headline: every method ranked", reading, tables=[(table, "Main models. SSIM with 95 % CI over "
                   "images × model pairs; MeGe/ReCo (Fel et al.) on the test images with distance sqrt(1 − |ρ|); "
                   "fidelity rank by deletion AUC of model 0 (mean-colour substrate); µFidelity (Bhatt et al.) "
                   "with 20 % of a 9×9 grid removed.")])


def stability_reading(summary: list[dict]) -> str:
    sentences = []
    for model_set in dict.fromkeys(r["model_set"] for r in summary):
        for method in dict.fromkeys(r["method"] for r in summary if r["method"] != "random"):
            pixel = _get(summary, method, "pixel", model_set)
            others = [r for r in summary if r["method"] == method and r["model_set"] == model_set
                      and r["grouping"] != "pixel"]
            if pixel is None or not others:
                continue
            best = max(others, key=lambda r: r["spearman"])
            sentences.append(f"{method} ({model_set}): Spearman {pixel['spearman']:.2f} → {best['spearman']:.2f} "
                             f"with {best['grouping']}, SSIM {pixel['ssim']:.2f} → {best['ssim']:.2f}")
    gains = [(_get(summary, r["method"], "pixel", r["model_set"]), r) for r in summary
             if r["grouping"] != "pixel" and r["method"] != "random"]
    improved = sum(1 for p, g in gains if p and g["spearman"] > p["spearman"])
    return (f"Grouping raised the cross-seed Spearman correlation in {improved} of {len(gains)} method × grouping "
            f"cases. " + "; ".join(sentences) + ".")


def reduction_reading(rows: list[dict]) -> str:
    if not rows:
        return "No pixel-level method ran, so no projection could be measured."
    below = sum(1 for r in rows if r["projection_variance_reduction"] >= 1 - 1e-9)
    real = [r for r in rows if r["method"] != "random"]
    ratio = np.mean([r["projection_variance_reduction"] / r["mean_segment_size"] for r in real]) if real else float("nan")
    return (f"The projection reduced total variance across models in {below} of {len(rows)} cases (the theory says "
            f"all: tr(PΣ) ≤ tr(Σ)). Real methods reach on average {ratio:.0%} of the independent-pixel factor d/m, "
            f"because neighbouring pixels' gradients vary together across seeds; random maps sit on the line. The "
            f"bias column is the share of the mean map that is not constant on segments: where it is large, grouping "
            f"buys stability by discarding signal.")


def sampling_reading(summary: list[dict]) -> str:
    parts = []
    for model_set in dict.fromkeys(r["model_set"] for r in summary):
        noise, suppression = _get(summary, "smoothgrad", "pixel", model_set), _get(summary, "suppression", "pixel", model_set)
        if noise and suppression:
            parts.append(f"{model_set} models: suppression sampling gives cross-seed Spearman "
                         f"{suppression['spearman']:.2f} vs {noise['spearman']:.2f} for Gaussian noise (SmoothGrad), "
                         f"deletion AUC {suppression['deletion_auc']:.3f} vs {noise['deletion_auc']:.3f}")
    return ("; ".join(parts) + ".") if parts else "SmoothGrad and suppression were not both in this study."


def confidence_reading(rows: list[dict]) -> str:
    """Compare the samplers at matched strengths (σ as a fraction of the range = share erased)."""
    noise = {r["strength"]: r for r in rows if r["sampler"] == "gaussian noise"}
    erased = {r["strength"]: r for r in rows if r["sampler"] == "suppression"}
    levels = sorted(level for level in noise if level > 0 and level in erased)
    if not levels:
        return ""
    higher = [level for level in levels if erased[level]["probability"] > noise[level]["probability"]]
    clean = noise.get(0.0, noise[levels[0]])["probability"]
    examples = ", ".join(f"{erased[level]['probability']:.2f} vs {noise[level]['probability']:.2f} at {level:.0%}"
                         for level in levels[1:4])
    verdict = ("as the SUPPRESS paper argues, suppressed samples stay closer to what the model recognises"
               if len(higher) > len(levels) / 2 else
               "unlike the SUPPRESS paper's argument, suppressed samples are not the more recognisable here")
    return (f"At matched strengths the model is more confident on suppressed than on noisy samples at "
            f"{len(higher)} of {len(levels)} levels (p of the explained class, suppressed vs noisy: {examples}; "
            f"clean images {clean:.2f}): {verdict}.")


def fidelity_reading(summary: list[dict]) -> str:
    rows = [r for r in summary if r["model_set"] == "main" and r["method"] != "random"]
    if len(rows) < 3:
        return "Too few methods for a trade-off."
    from scipy.stats import spearmanr

    rho = spearmanr([r["ssim"] for r in rows], [r["deletion_auc"] for r in rows]).statistic
    return (f"Across {len(rows)} method × grouping combinations the rank correlation between cross-seed SSIM and "
            f"deletion AUC is {rho:+.2f} ({'stabler maps tend to be less faithful' if rho > 0.2 else 'stabler maps are not less faithful' if rho < -0.2 else 'no clear trade-off'}; "
            f"lower AUC = more faithful).")


def sanity_reading(summary: list[dict]) -> str:
    rows = [r for r in summary if r["model_set"] == "main" and "sanity_spearman" in r]
    if not rows:
        return "The sanity check did not run."
    worst = max(rows, key=lambda r: r["sanity_spearman"])
    return (f"A method passes when its map of a randomly initialised network is unlike the trained one. The highest "
            f"similarity to the randomised model is {worst['method']} / {worst['grouping']} (Spearman "
            f"{worst['sanity_spearman']:.2f}): a map that changes little when the weights are destroyed reflects the "
            f"image (edges, or the segmentation) more than the model.")


def example_panels(models, images, labels, masks, settings: StudySettings, figures_dir: Path) -> list:
    """Per method (pixel and the first super-pixel grouping): one image's maps across models."""
    partitions = compute_partitions(images[:1], settings.groupings, settings.n_segments)
    shown = {"pixel": None}
    superpixel = [g for g in settings.groupings if g not in ("pixel", "grid")][:1]
    shown.update({g: partitions[g] for g in superpixel})
    figures = []
    for method in settings.methods:
        per_model = [explain_groupings(method, model, k, images[:1], labels[:1], shown, settings)
                     for k, model in enumerate(models)]
        for grouping in shown:
            maps = [grey_maps(maps[grouping])[0].cpu() for maps in per_model]
            path = plot_model_maps(images[0], None if masks is None else masks[0], maps,
                                   figures_dir / f"maps_{method}_{grouping}", title=f"{method} / {grouping}")
            figures.append((path, f"{method}, {grouping}: each model's map of the same image, mean and std."))
    return figures
