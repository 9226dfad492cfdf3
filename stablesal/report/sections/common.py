"""The report page as a sequence of registered sections, each a pure function of ``results.json``.

A section builder takes the report's results (the parsed ``results.json``) and its folder, and
returns one :class:`~stablesal.report.html.Section`, several, or None (nothing to show); it never
runs a model, so ``stablesal render`` rebuilds the page from the results folder alone. Builders are
registered in :data:`stablesal.report.html.SECTIONS` with an ``order`` (the page runs from low to
high): this module holds the report-wide ones; :mod:`stablesal.report.sections.stability` and
:mod:`stablesal.report.sections.consensus` hold those of their studies. Every module of
``stablesal/report/sections/`` is imported by :func:`report_sections`, so a new section is one new
module (or one registered function) and its test.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import numpy as np

from . import stability as sections_
from ...explain.explainers import is_control
from ..figures import model_frames, plot_stability_fidelity, plot_timing
from ..html import SECTIONS, Section, Slider, report_section
from .stability import split_summary
from ..figures import plot_sampling_confidence
from ...studies.factors.effects import factor_reading
from ..figures import plot_factor_effects, plot_factor_levels
from ..figures import plot_inpainting_quality, plot_removal_pairs
from ...studies.removal.run import HIGHER_IS_BETTER
from ...core.settings import FIDELITY_AUTO_MAX_SIDE, NULL_NAMES


def page_order() -> list[str]:
    """The registered sections in the order of the page (their ``order``; one total order: no two
    sections share a place), after importing every module of this folder so each registers its
    builders."""
    folder = Path(__file__).resolve().parent
    for module in pkgutil.iter_modules([str(folder)]):
        importlib.import_module(f"{__package__}.{module.name}")
    orders = [SECTIONS.info(name, "order") for name in SECTIONS]
    if len(set(orders)) != len(orders):
        shared = sorted({order for order in orders if orders.count(order) > 1})
        raise ValueError(f"report sections share a place on the page (order {shared}): give each its own")
    return sorted(SECTIONS, key=lambda name: SECTIONS.info(name, "order"))


def report_sections(results: dict, out: Path) -> list[Section]:
    """Every section of the page, in order, from a report's results alone (a section whose stage did
    not run is left out); figures drawn from rows are written under ``out/figures``."""
    sections: list[Section] = []
    ran = results.get("stages")  # absent from results written before the stage pipeline: every stage ran
    for name in page_order():
        stage = SECTIONS.info(name, "stage")
        if ran is not None and stage is not None and stage not in ran:
            continue
        built = SECTIONS[name](results, Path(out))
        sections += [] if built is None else [built] if isinstance(built, Section) else list(built)
    return sections


@report_section("warnings", order=5)
def warnings_section(results: dict, out: Path) -> Section | None:
    """What the run warned about (``results.json["warnings"]``, e.g. too few models for intervals),
    first on the page; None when it warned about nothing (or predates the key)."""
    said = results.get("warnings") or []
    if not said:
        return None
    return Section("Warnings", " ".join(f"Warning: {text.rstrip('.')}." for text in said))


@report_section("setup", order=10)
def setup(results: dict, out: Path) -> Section:
    drawn = results["figures"]
    main_rows = [r for r in results["models"] if r["set"] == "main"]
    control_rows = [r for r in results["models"] if r["set"] == "control"]
    return Section(title="Setup", reading=setup_reading(results), figures=[
        (out / drawn["dataset_examples"][0], drawn["dataset_examples"][1])] if "dataset_examples" in drawn else [],
        tables=[(main_rows + control_rows, "Models: seed, data split, training-set size, accuracy and training time "
                                           "(s).")])


@report_section("left out", order=20)
def left_out(results: dict, out: Path) -> list[Section]:
    return left_out_sections(results)


@report_section("sampling", order=90, stage="figures")
def sampling(results: dict, out: Path) -> Section:
    gradient_summary = split_summary(results)[1]
    confidence = results["sampling_confidence"]
    return Section(
        "Noise vs suppression sampling", sections_.sampling_reading(gradient_summary, results.get("ranking")) + " "
        + confidence_reading(confidence),
        figures=[(plot_sampling_confidence(confidence, out / "figures" / "sampling_confidence"),
                  "Model 0 on the samples each sampler makes: probability of the explained class and predictive "
                  "entropy, Gaussian noise (σ as a fraction of the input range) vs suppression (fixed keep rate).")])


@report_section("fidelity", order=100, stage="stability")
def fidelity(results: dict, out: Path) -> Section | None:
    if not has_fidelity(results):  # said in "Left out"
        return None
    gradient_summary = split_summary(results)[1]
    return Section(
        "Stability vs fidelity", sections_.fidelity_reading(gradient_summary),
        figures=[(plot_stability_fidelity(gradient_summary, out / "figures" / "stability_fidelity"),
                  "Each point is a method × grouping on the main models: cross-seed Spearman above the random-label "
                  "null family against deletion AUC of model 0.")])


@report_section("sanity", order=110, stage="stability")
def sanity(results: dict, out: Path) -> Section:
    summary = results["stability_summary"]
    return Section("Sanity: model randomisation", sections_.sanity_reading(summary), tables=[([
        {"method": r["method"], "grouping": r["grouping"], "sanity Spearman ↓": sections_.fmt(r, "sanity_spearman"),
         "sanity SSIM ↓": sections_.fmt(r, "sanity_ssim"), "cross-seed Spearman": sections_.fmt(r, "spearman")}
        for r in summary if r["model_set"] == "main" and "sanity_spearman" in r],
        "Similarity between maps of the trained model 0 and of the same architecture with random weights "
        "(lower = the map depends on what was learned), intervals over images.")])


@report_section("factors", order=160, stage="factor_study")
def factors(results: dict, out: Path) -> Section | None:
    if results["factor_study"] is None:
        return None
    return factor_section(results["factor_study"], out / "figures")


@report_section("inpainting", order=170, stage="inpainting")
def inpainting(results: dict, out: Path) -> Section | None:
    if results["inpainting"] is None:
        return None
    return inpainting_section(results["inpainting"], out / "figures", out / results["figures"]["removal_maps"][0])


@report_section("examples", order=180, stage="figures")
def examples(results: dict, out: Path) -> Section:
    panels = [(out / path, caption) for path, caption in results["figures"]["example_panels"]]
    cards = [(caption.split(":")[0], model_frames(path.with_suffix(".csv"))) for path, caption in panels
             if path.with_suffix(".csv").is_file()]
    sliders = [Slider("Model shown in every card:", cards)] if cards else []
    reading = ("Each row shows one test image explained by every main model, with the per-pixel mean and standard "
               "deviation across models.")
    if sliders:
        reading += " Below them, the slider shows one model's map for every method at once, on one colour scale per method."
    return Section("Example maps across models", reading, figures=panels, sliders=sliders)


@report_section("timing", order=190, stage="stability")
def timing(results: dict, out: Path) -> Section:
    environment = results["environment"]
    return Section("Timing", f"Explaining {results['n_images']} images took the times below per model on "
                   f"{environment['processor']} ({environment['threads']} threads).",
                   figures=[(plot_timing(results["stability_summary"], out / "figures" / "timing"),
                             "Seconds per model.")])


def setup_reading(results: dict) -> str:
    """The data, the models (stablesal's retrained models or the user's) and their accuracy."""
    config, timings, dataset = results["config"], results["timings_s"], results["dataset"]
    models = config["models"]
    main_rows = [r for r in results["models"] if r["set"] == "main"]
    control_rows = [r for r in results["models"] if r["set"] == "control"]
    accuracies = [row["test_acc"] for row in main_rows + control_rows
                  if row.get("test_acc") is not None and row["test_acc"] == row["test_acc"]]
    text = (f"{dataset['name']}: {dataset['train']} training and {dataset['test']} test images of shape "
            f"{tuple(dataset['image_shape'])}, {len(dataset['classes'])} classes. ")
    if "training" not in timings:  # a run of stages that use no main model (e.g. only the fold stage)
        return text + f"The stages that ran ({', '.join(results.get('stages', []))}) use no main model."
    if models.get("checkpoints"):
        text += f"{len(main_rows)} models from the user's checkpoints"
    elif models.get("train"):
        text += (f"{len(main_rows)} models trained by the user's function {models['train']!r}, differing in "
                 f"{models['vary']!r}")
    else:
        text += (f"{len(main_rows)} {models['arch']} models differ in {models['vary']!r} (seed = weight "
                 "initialisation, data order and augmentation; split = disjoint training data)")
    if control_rows:
        text += (f"; {len(control_rows)} control models are trained on model 0's data with other seeds (none of "
                 "them a main model)")
    random_label = [r for r in results["models"] if r["set"] == "random_label"]
    nulls = []
    if random_label:
        chance = [r["test_acc"] for r in random_label if r.get("test_acc") is not None and r["test_acc"] == r["test_acc"]]
        nulls.append(f"{len(random_label)} random-label networks (the same recipe, seeds and data, the labels "
                     "permuted" + (f"; test accuracy {min(chance):.1%}–{max(chance):.1%}" if chance else "") + ")")
    unavailable = results.get("nulls_unavailable") or {}
    if models.get("bn_calibrated_k") and "bn_calibrated" not in unavailable:
        nulls.append(f"{models['bn_calibrated_k']} BN-calibrated networks (untrained, batch-norm statistics "
                     "re-estimated on training images)")
    if models["untrained_k"] and "untrained" not in unavailable:
        nulls.append(f"{models['untrained_k']} untrained networks of the same architecture, each with its own "
                     "initialisation")
    if nulls:
        text += "; the null families are " + ", ".join(nulls)
    if accuracies:
        text += (f". Test accuracy ranges from {min(accuracies):.1%} to {max(accuracies):.1%} (mean "
                 f"{sum(accuracies) / len(accuracies):.1%})")
    else:
        text += ". The test images have no labels: every map explains the class model 0 predicts"
    return (text + f"; loading or training the models took {timings['training']:.0f} s in total. "
            + explained_reading(dataset))


def explained_reading(dataset: dict) -> str:
    """Which test images the studies explain and how many of each class (``dataset["explained"]``,
    absent from results written before it was recorded: then nothing is said)."""
    explained = dataset.get("explained")
    if not explained or not explained["runs"]:
        return ""
    how = (f"a class-balanced order of the test images (seeded with {explained['seed']})"
           if explained["selection"] == "stratified" else "the test images in the dataset's own order")
    runs = sorted(explained["runs"], key=lambda run: (run["first"], run["stop"]))
    parts = [f"images {run['first'] + 1}–{run['stop']}: "
             + ", ".join(f"{name} {count}" for name, count in run["classes"].items()) for run in runs]
    missing = sorted({name for name in dataset["classes"]} - {name for run in runs for name in run["classes"]})
    text = f"The studies explain runs of {how}; " + "; ".join(parts) + "."
    if missing:
        text += f" No image of {', '.join(missing)} is explained."
    return text


def left_out_sections(results: dict) -> list[Section]:
    """One line for each section the inputs could not feed, saying why (never an error)."""
    config, dataset = results["config"], results["dataset"]
    notes = []
    if config["models"].get("checkpoints") or config["models"].get("train"):
        if config["folds"]["enabled"] and config["models"].get("checkpoints"):
            notes.append("MeGe and ReCo (fold protocol): left out, they need models trained on folds of the "
                         "training data; checkpoints are used as they are (give [models] train to run the fold plan "
                         "with your training function).")
        if config["models"]["control_k"]:
            notes.append("Variance decomposition by seed and split: left out, it needs control models trained on "
                         "model 0's data with other seeds.")
    for null, reason in (results.get("nulls_unavailable") or {}).items():
        notes.append(f"The {NULL_NAMES[null]} null: left out, {reason}.")
    if not results.get("inpainting") and config["inpainting"]["enabled"] and not dataset["train"]:
        notes.append("Inpainting vs constant fill: left out, the learned inpainter trains on training images and "
                     "the data has none.")
    if not dataset.get("has_masks"):
        notes.append("Localisation (relevance mass, pointing game) and the consensus power: left out, the data has "
                     "no object masks.")
    if not has_fidelity(results) and results.get("stability_summary"):
        side = max(dataset["image_shape"][-2:])
        why = ("[gradient] fidelity is \"off\"" if config["gradient"].get("fidelity") == "off" else
               f"the images are {side} px a side and [gradient] fidelity = \"auto\" computes them up to "
               f"{FIDELITY_AUTO_MAX_SIDE} px (at 224 px they took 45 % of a study of Saliency and SmoothGrad, "
               "benchmarks/results/study_224.json)")
        notes.append(f"Model 0's fidelity (deletion and insertion AUC, µFidelity) and the stability-vs-fidelity "
                     f"section: left out, {why}; set [gradient] fidelity = \"on\" to compute them.")
    return [Section("Left out", " ".join(notes))] if notes else []


def has_fidelity(results: dict) -> bool:
    """Whether the stability rows carry model 0's fidelity (``deletion_auc``): not when ``[gradient]
    fidelity`` left it out."""
    return any("deletion_auc" in row for row in results.get("stability_summary") or [])


def factor_section(factors: dict, figures_dir: Path) -> Section:
    configurations, analysis, settings = factors["configurations"], factors["analysis"], factors["settings"]
    top = sorted(configurations, key=lambda c: -c["srg"])[:8]
    tables = []
    for name, design in analysis["designs"].items():
        level = round(100 * design["confidence"])
        tables.append(([{"factor": e["factor"], "levels": e["levels"], "η² SRG": sections_.fmt(e, "eta2_srg"),
                         "η² deletion AUC": sections_.fmt(e, "eta2_deletion_auc"),
                         "η² insertion AUC": sections_.fmt(e, "eta2_insertion_auc")} for e in design["effects"]],
                       f"η² per factor, {name.replace('_', '-')} design ({design['n_configurations']} configurations, "
                       f"fully crossed), {level} % percentile-bootstrap interval over {design['n_images']} images "
                       f"({design['n_boot']} resamples; conditional on model 0)."))
    tables.append(([{**{k: c[k] for k in ("segmentation", "sampler", "n_samples", "calculator", "map")},
                     "SRG": sections_.fmt(c, "srg", 3), "deletion AUC": sections_.fmt(c, "deletion_auc", 3),
                     "insertion AUC": sections_.fmt(c, "insertion_auc", 3)} for c in top],
                   "The eight configurations with the highest mean SRG (t interval over images)."))
    main = analysis["designs"].get("main") or next(iter(analysis["designs"].values()))
    return Section(
        "Perturbation factor study (SEG-SMOOTH)", factor_reading(analysis, configurations),
        figures=[(plot_factor_effects(main["effects"], figures_dir / "factor_effects"),
                  "Share of the variance of each score across the main design's configurations explained by each "
                  "factor's main effect, with bootstrap intervals over images."),
                 (plot_factor_levels(configurations, figures_dir / "factor_levels"),
                  f"SRG (LIF − MIF, {settings['srg_steps']} deletion steps, image-mean fill) of every configuration, "
                  f"by level of each factor; bars are level means. {settings['n_images']} images, model 0.")],
        tables=tables)


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


def inpainting_section(removal: dict, figures_dir: Path, maps_figure: Path) -> Section:
    """The inpainting section from ``results["inpainting"]``; ``maps_figure``: the methods' maps,
    drawn when the report ran."""
    quality, rows, agreement, robustness = (removal["quality"], removal["methods"], removal["metric_agreement"],
                                            removal["robustness"])
    learned = next(q for q in quality if q["inpainter"] == removal["inpainter"])
    parts = [_fill_comparison(learned, quality, removal["inpainter_train_seconds"])]
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
    random_row = next((r for r in rows if is_control(r)), None)
    if random_row:
        last = [m for m in HIGHER_IS_BETTER if m in random_row and
                sorted(rows, key=lambda r: r.get(m, float("nan")), reverse=HIGHER_IS_BETTER[m])[-1] is random_row]
        parts.append(f"The random map ranks last by {len(last)} of "
                     f"{sum(1 for m in HIGHER_IS_BETTER if m in random_row)} metrics ({', '.join(last) or 'none'})")
    if agreement:
        taus = [a["tau"] for a in agreement]
        parts.append(f"Kendall τ between the metrics' rankings ranges from {min(taus):+.2f} to {max(taus):+.2f} "
                     f"(median {float(np.median(taus)):+.2f})")
    reading = ". ".join(parts) + "."
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


