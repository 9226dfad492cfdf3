"""``stablesal report`` and every other study command: one configuration in, one results folder out.

:func:`run_pipeline` loads the data, builds the model sets once (:class:`~.context.Context`), runs
the registered stages (:mod:`.stages`) the configuration asks for, or ``only`` those named, times
them, writes each CSV table once, assembles ``results.json`` (checked against
:mod:`.schema`) and renders ``index.html``. ``stablesal stability``, ``consensus`` and
``factor-study`` and the analysis scripts run the same pipeline with ``only=[...]``: one output
shape everywhere. Each stage caches its units under ``runs/<name>/`` keyed by a hash of what they
depend on, so a re-run reuses finished work and an interrupted run resumes.
"""

from __future__ import annotations

import platform
import shutil
import time
from importlib import metadata
from pathlib import Path

import torch

from ..core.executor import SERIAL, Executor, check_executor
from ..core.storage import atomic_write_json, atomic_write_text
from ..core.tables import csv_text, format_table
from ..core.version import __version__, source_hash
from ..data.datasets import load_configured
from ..data.selection import ordered_for_explaining
from ..report.render import render_report
from ..report.sections.stability import headline_table, split_summary
from .config import StudyConfig
from .context import Context
from ..models.model_sets import (  # noqa: F401  (re-exported: the names the report module had)
    checkpoint_paths, main_model_count, train_config_from, train_model_sets, untrained_models, user_fold_runs,
    user_model_runs, with_predicted_labels,
)
from .schema import SCHEMA_VERSION, SHARED_LISTS, check_results
from .stages import STAGES, entry_types, example_panels, gradient_settings, ordered_stages  # noqa: F401

QUICK_OVERRIDES = {
    "data": {"n_train": 2000, "n_test": 300},
    "models": {"k": 3, "epochs": 3, "vary": "seed", "control_k": 0, "untrained_k": 3, "random_label_k": 3,
               "bn_calibrated_k": 3},
    "gradient": {"n_images": 12, "n_samples": 8, "n_steps": 8,
                 "methods": ["saliency", "integrated_gradients", "smoothgrad", "suppression"],
                 "groupings": ["pixel", "fastslic", "grid"]},
    "perturbation": {"n_images": 6, "n_samples": 100, "methods": ["rise", "lime", "occlusion", "ciu"]},
    "folds": {"k": 3, "pool": 1500, "per_fold": 4},
    "factors": {"n_images": 4, "sample_sizes": ["M", 100], "segmentations": ["grid-bilinear", "slic/gaussian"],
                "samplers": ["random", "shap", "single"]},
    "inpainting": {"steps": 60, "width": 8, "n_images": 3, "quality_images": 16, "lime_samples": 40, "mp_iterations": 12,
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
    # a quick report is never the committed one: it copies nothing out of its folder
    config.report.copy_figures_to = config.report.copy_results_to = ""
    return config


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    atomic_write_text(path, csv_text(rows))


# the installed distributions whose versions results.json records beside torch and Python
RECORDED_DISTRIBUTIONS = ("captum", "numpy", "scipy", "scikit-image", "fast-slic", "opencv-python-headless",
                          "matplotlib")


def _environment() -> dict:
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
        "code_version": source_hash(),  # the whole package
    }


# the fewest main models whose between-model statistics have an interval: each interval is a
# delete-one-model jackknife, and a pairwise statistic needs a pair left after a deletion
MIN_MODELS_FOR_INTERVALS = 3


def few_models_warning(count: int) -> str:
    """The warning of a run whose main model set has ``count`` < :data:`MIN_MODELS_FOR_INTERVALS` models."""
    return (f"{count} model{'s' if count != 1 else ''}: the between-model intervals need at least "
            f"{MIN_MODELS_FOR_INTERVALS} (each is a delete-one-model jackknife); the report shows point estimates "
            "without intervals")


def explained_images(ctx: Context) -> dict:
    """How the run chose the images it explains (``results.json["dataset"]["explained"]``): the
    selection rule and its seed, and each run of test images a stage took, ``{"first", "stop",
    "classes": {class name: count}}``, in the order the stages took them."""
    data = ctx.config.data
    return {"selection": data.selection if ctx.dataset.labelled else "first",
            "seed": data.selection_seed, "runs": list(ctx.explained)}


def configured_seeds(config: StudyConfig) -> dict:
    """Every seed of the configuration, ``{"section.key": value}`` (keys that name a seed), so a
    reader of results.json finds them in one place."""
    return {f"{section}.{key}": value for section, values in config.to_dict().items() if isinstance(values, dict)
            for key, value in values.items() if "seed" in key}


def interval_notes(results: dict) -> dict:
    """How every table of ``results`` with intervals computed them (``results.json["intervals"]``):
    ``{table: interval_note}`` of the stages that ran, from the notes the computing modules keep
    next to their code (each stage's ``interval_notes``)."""
    return {table: note for stage in ordered_stages() if stage.name in results["stages"]
            for table, note in stage.interval_notes(results).items()}


# the headline table's first columns, which the terminal shows: rank, method, grouping, draws,
# Spearman above each null family present (random-label first)
TERMINAL_COLUMNS = 7


def terminal_summary(results: dict, top: int | None = 8) -> str:
    """The page's headline for the terminal: its ``top`` first rows (all with None), in its order
    (:func:`~stablesal.report.sections.stability.headline_ranking`: cross-seed Spearman above the
    untrained-network null) and with its first :data:`TERMINAL_COLUMNS` columns, as the page prints
    them. ``results``: a report's parsed ``results.json``."""
    rows = headline_table(split_summary(results)[1])[:top]
    return format_table([dict(list(row.items())[:TERMINAL_COLUMNS]) for row in rows])


def run_pipeline(config: StudyConfig, only: list[str] | None = None, out: Path | str | None = None,
                 progress: bool = True, executor: Executor = SERIAL, render: bool = True) -> Path:
    """Run the stages the configuration asks for (all registered stages it enables, or only those
    named in ``only``), write their tables, ``results.json`` and the figures that need models into
    ``out`` (default ``<[report] out_dir>/<[report] name>``), and render ``index.html`` from the
    results; returns the folder. Checkpoints and cached units go under
    ``<[report] runs_dir>/<[report] name>``."""
    check_executor(executor)
    unknown = sorted(set(only or ()) - set(STAGES))
    if unknown:
        raise ValueError(f"only: unknown stage(s) {unknown}; the stages are {list(STAGES)}")
    began = time.perf_counter()
    out = Path(config.report.out_dir) / config.report.name if out is None else Path(out)
    runs_dir = Path(config.report.runs_dir) / config.report.name
    timings: dict[str, float] = {}

    start = time.perf_counter()
    dataset = ordered_for_explaining(load_configured(config.data), config.data.selection, config.data.selection_seed)
    timings["data"] = time.perf_counter() - start
    chosen = [stage for stage in ordered_stages() if only is None or stage.name in only]
    ctx = Context(config, dataset, runs_dir, out, progress, executor)
    if any(stage.compares_models for stage in chosen):  # said before the long work starts
        count = main_model_count(config.models)
        if count < MIN_MODELS_FOR_INTERVALS:
            ctx.warn(few_models_warning(count))
    # which stages run is known before any model is trained (the stability stage keeps maps for the
    # consensus; a stage may ask whether an earlier one runs), from the configuration alone
    for stage in chosen:
        if stage.enabled(ctx):
            ctx.stages += (stage.name,)
        elif only is not None:  # asked for by name: say why it cannot run, before the long work
            raise ValueError(f"only: the {stage.name} stage does not run with this configuration: {stage.off_reason}")
    ctx.uses = frozenset(name for stage in chosen if stage.name in ctx.stages for name in stage.uses)
    if ctx.uses:
        start = time.perf_counter()
        # trains, resumes or loads the main models and those of the control and random-label sets the
        # stages use, timed on their own
        model_rows = ctx.model_rows()
        timings["training"] = time.perf_counter() - start

    tables: dict[str, list[dict]] = {}
    entries: dict = {"models": model_rows if "training" in timings else [], "stability_summary": []}
    for stage in (stage for stage in chosen if stage.name in ctx.stages):
        start = time.perf_counter()
        result = ctx.results[stage.name] = stage.run(ctx)
        timings[stage.name] = time.perf_counter() - start
        for name, rows in stage.tables(result).items():
            tables.setdefault(name, []).extend(rows)
        for key, value in stage.entries(result).items():
            if key in SHARED_LISTS:  # a list several stages give is one list, in stage order
                if not isinstance(value, list):
                    raise TypeError(f"stage {stage.name}: results.json[{key!r}] is a shared list, got {type(value)}")
                entries[key] = entries.get(key, []) + value
            elif key not in stage.entry_types or key in entries:
                raise ValueError(f"stage {stage.name} writes results.json[{key!r}], which is "
                                 + ("another stage's" if key in entries else "not among its entry_types"))
            else:
                entries[key] = value
    for stage in ordered_stages():
        for key, value in stage.absent.items():
            entries.setdefault(key, value)

    timings["total"] = time.perf_counter() - began
    results = {"schema": SCHEMA_VERSION, "config": config.to_dict(), "environment": _environment(), "dataset": {**ctx.dataset.describe(), "explained": explained_images(ctx)},
               "stages": list(ctx.stages), "timings_s": timings, **entries,
               "seeds": configured_seeds(config), "warnings": list(ctx.warnings)}
    results["intervals"] = interval_notes(results)
    check_results(results, entry_types())
    for name, rows in tables.items():
        write_csv(out / name, rows)
    write_csv(out / "models.csv", results["models"])
    atomic_write_json(out / "results.json", results)
    if render:
        render_report(out)
    return out


def run_report(config: StudyConfig, progress: bool = True, executor: Executor = SERIAL) -> Path:
    """The whole report (every stage the configuration enables) in ``<[report] out_dir>/<[report]
    name>``; the figures and ``results.json`` are also copied to ``[report] copy_figures_to`` and
    ``copy_results_to`` (as ``<name>.json``) when those are set: only the built-in configuration
    sets them (:data:`~.config.BUILT_IN_COPIES`), so any other run writes nothing outside its own
    folders. Returns the report folder."""
    out = run_pipeline(config, progress=progress, executor=executor)
    if config.report.copy_figures_to:
        target = Path(config.report.copy_figures_to)
        target.mkdir(parents=True, exist_ok=True)
        for figure in (out / "figures").glob("*.p*"):
            shutil.copy2(figure, target / figure.name)
    if config.report.copy_results_to:
        target = Path(config.report.copy_results_to)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(out / "results.json", target / f"{config.report.name}.json")
    return out
