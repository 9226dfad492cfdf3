"""The ``stablesal`` command line: ``train-seeds``, ``explain``, ``perturb``, ``stability``,
``consensus``, ``plan``, ``factor-study``, ``report`` and ``render``."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from pathlib import Path
from typing import NamedTuple

from .core.version import __version__
from .pipeline.config import BUILT_IN_COPIES, ModelsSection, StudyConfig, config_from_dict, read_toml
from .core.settings import (
    DRAWS, FIDELITY_CHOICES, MODEL_VARY, NULL_SETS, PROCEDURES, RNG_KINDS, SCOPES, SUPPRESSION_MODES, SUPPRESSION_UNITS, VARY_CHOICES,
    StudySettings, TrainConfig,
)
from .core.tables import format_table

# Defaults come from the settings dataclasses (stablesal.settings), as the TOML sections' do.
_MODELS, _TRAIN, _STUDY = ModelsSection(), TrainConfig(), StudySettings()
_CONFIG = StudyConfig()

# The commands that read a TOML file (--config) resolve their configuration in five layers:
#   1. the defaults of the configuration (stablesal.pipeline.config, from stablesal.core.settings);
#   2. the TOML file;
#   3. --set section.key=value, any key of any section, in the order given (a value is read as TOML:
#      --set models.k=5, --set gradient.methods='["saliency"]'; a bare word is a string);
#   4. the named flags the user gives: a flag that sets a configuration key has no parser default
#      (None), so a flag left out never overrides the file or --set;
#   5. what the command itself fixes (FIXED), and, for `stablesal report` with no --config and no --set
#      under its default name (`make report`: the built-in study as it is), the copies of its figures
#      and results into the repository (BUILT_IN_COPIES; experiments/default.toml sets them itself).
# One exception to 1: stability, consensus and plan are not the report, so when neither --name nor
# the TOML's [report] name names the run, its folder under --runs is the command's own name
# (RUN_NAMES), not [report] name's default "default" (the report's folder).
RUN_NAMES = {"stability": "stability", "consensus": "consensus", "plan": "plan", "estimate": "estimate"}
# consensus and plan use no control models: none is trained (of the null families they build only
# their [consensus] reference). factor-study explains one model (main model 0 of a one-model seed plan).
_NO_NULLS = {"untrained_k": 0, "random_label_k": 0, "bn_calibrated_k": 0}
FIXED = {"consensus": {"models": {"control_k": 0}}, "plan": {"models": {"control_k": 0}},
         "factor-study": {"models": {"k": 1, "vary": "seed", "control_k": 0, **_NO_NULLS}}}
# explain and perturb read only these sections (their explainers' settings are their own flags): a
# --set elsewhere would change nothing, so it is refused; the file may hold every section (the report's)
READS = {"explain": ("data", "models", "report"), "perturb": ("data", "models", "report")}


class ConfigFlag(NamedTuple):
    """A command-line flag that sets one configuration key."""

    flag: str     # as typed, e.g. "-k/--models"
    section: str  # e.g. "models"
    key: str      # e.g. "k"


def _config_flag(parser: argparse.ArgumentParser, *names: str, section: str, key: str, help: str = "",
                 default_text: str | None = None, **kwargs) -> argparse.Action:
    """Add a flag that sets ``[section] key``. It has no default of its own (None: not given), so it
    overrides the TOML file only when the user gives it; the default its help states is read from
    the configuration's defaults, so that it cannot drift from them."""
    if default_text is None:
        default = getattr(getattr(_CONFIG, section), key)
        default_text = " ".join(map(str, default)) if isinstance(default, list) else str(default)
    text = f"{help} " if help else ""
    action = parser.add_argument(*names, default=None, help=f"{text}([{section}] {key}; default {default_text})",
                                 **kwargs)
    action.config_key = (section, key)
    return action


def config_flags(parser: argparse.ArgumentParser) -> dict[str, ConfigFlag]:
    """The flags of a command's parser that set configuration keys, by their argparse destination."""
    return {action.dest: ConfigFlag("/".join(action.option_strings), *action.config_key)
            for action in parser._actions if hasattr(action, "config_key")}


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parsers of the subcommands, by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _put(raw: dict, section: str, key: str, value) -> None:
    """Set ``raw[section][key]``, leaving a section that is not a table for config_from_dict to refuse."""
    values = raw.setdefault(section, {})
    if isinstance(values, dict):
        values[key] = value


def parse_set(assignment: str) -> tuple[str, str, object]:
    """``"section.key=value"`` → ``(section, key, value)``; the value is read as a TOML value
    (``5``, ``0.1``, ``true``, ``["a", "b"]``, ``"text"``), and a bare word that is not TOML is a string."""
    import tomllib

    target, equals, text = assignment.partition("=")
    section, dot, key = target.strip().partition(".")
    if not equals or not dot or not section or not key or "." in key:
        raise ValueError(f"--set {assignment!r}: expected SECTION.KEY=VALUE, e.g. --set models.k=5")
    try:
        value = tomllib.loads(f"value = {text.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return section, key, value


def resolve_config(args) -> StudyConfig:
    """The configuration a command runs with (see the layers above), checked (names, types, counts)
    before any data is made or model trained. Pure: it reads the TOML file and ``args``, nothing else."""
    raw = read_toml(args.config)
    report = raw.get("report")
    assignments = [parse_set(text) for text in args.set or []]
    for section, key, _ in assignments:
        if args.command in READS and section not in READS[args.command]:
            raise ValueError(f"--set {section}.{key}: {args.command} reads only "
                             f"{', '.join(f'[{name}]' for name in READS[args.command])} from the configuration; "
                             f"its explainer's settings are its own flags (stablesal {args.command} --help)")
    if args.command in RUN_NAMES and not (isinstance(report, dict) and "name" in report) and not any(
            (section, key) == ("report", "name") for section, key, _ in assignments):
        _put(raw, "report", "name", RUN_NAMES[args.command])
    for section, key, value in assignments:
        _put(raw, section, key, value)
    given = {dest: flag for dest, flag in args.config_flags.items() if getattr(args, dest) is not None}
    for dest, flag in given.items():
        _put(raw, flag.section, flag.key, getattr(args, dest))
    for section, values in FIXED.get(args.command, {}).items():
        for key, value in values.items():
            _put(raw, section, key, value)
    try:
        config = config_from_dict(raw)
    except (ValueError, TypeError, FileNotFoundError) as error:
        if type(error) not in (ValueError, TypeError, FileNotFoundError):
            raise
        # a bad value the user typed is named by its flag as well as its key
        named = [flag.flag for flag in given.values() if re.search(rf"\[{flag.section}\] {flag.key}\b", str(error))]
        named += [f"--set {section}.{key}" for section, key, _ in assignments
                  if re.search(rf"\[{section}\] {key}\b|{key!r} in \[{section}\]|section \[{section}\]", str(error))]
        raise type(error)(str(error) + "".join(f" (given as {flag})" for flag in dict.fromkeys(named))) from None
    if args.command in ("consensus", "plan"):
        from .models.model_sets import main_model_count

        k = main_model_count(config.models)  # k, or the checkpoint files the patterns match
        what = "[models] checkpoints" if config.models.checkpoints else "[models] k (-k/--models)"
        if args.command == "consensus" and k < 3:
            raise ValueError(f"{what}: a consensus map needs at least 3 retrained models, got {k}")
        if args.command == "plan" and k < 3:
            raise ValueError(f"{what}: the planner needs a pilot of at least 3 models, got {k}")
    if args.command == "report" and args.quick:
        from .pipeline.run import apply_quick

        config = apply_quick(config)
    elif args.command == "report" and args.config is None and not assignments and config.report.name == "default":
        for key, value in BUILT_IN_COPIES.items():  # the built-in study as it is: refresh the repository's copies
            setattr(config.report, key, value)
    return config


def _add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that set [models] keys of stablesal's seed plan, and --vary, which also takes the
    leave-fold-out plan (not a [models] vary: the report's fold models are the [folds] section)."""
    _config_flag(parser, "-k", "--models", type=int, section="models", key="k", help="number of retrained models K")
    parser.add_argument("--vary", default=None, choices=VARY_CHOICES,
                        help="what differs between models: seed, disjoint data split, both, or leave-fold-out "
                             "(model i trains on every fold but fold i: the MeGe protocol; default [models] vary, "
                             f"{_MODELS.vary})")
    _config_flag(parser, "--arch", section="models", key="arch", help="an architecture (`stablesal list architectures`)")
    _config_flag(parser, "--epochs", type=int, section="models", key="epochs")
    _config_flag(parser, "--batch-size", type=int, section="models", key="batch_size")
    _config_flag(parser, "--lr", type=float, section="models", key="lr")
    _config_flag(parser, "--base-seed", type=int, section="models", key="base_seed")
    _config_flag(parser, "--device", section="models", key="device", help="cpu or cuda")


def _add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=1,
                        help="units of work in parallel: local processes, or Dask workers with --dask")
    parser.add_argument("--dask", action="store_true", help="run the units on a Dask LocalCluster of --workers")
    parser.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (tcp://HOST:PORT)")


@contextlib.contextmanager
def _executor(args):
    """The executor the flags ask for (serial: units here, one after another), closed when the command ends."""
    from .core.executor import SERIAL, make_executor

    if args.workers == 1 and not args.dask and not args.scheduler:
        yield SERIAL
        return
    with make_executor(workers=args.workers, scheduler=args.scheduler, dask=args.dask) as executor:
        yield executor


def cmd_train_seeds(args) -> int:
    from .data.datasets import load_configured
    from .models.training import summary_rows, train_seeds
    from .models.model_sets import train_config_from

    config = resolve_config(args)  # checked before any data is made
    models = config.models
    dataset = load_configured(config.data)
    with _executor(args) as executor:
        runs = train_seeds(dataset, k=models.k, vary=args.vary or models.vary, config=train_config_from(models),
                           out_dir=Path(args.out), base_seed=models.base_seed, device=models.device,
                           progress=not args.quiet, executor=executor)
    print(format_table(summary_rows(runs)))
    print(f"checkpoints in {args.out}")
    return 0


class ExplainInputs(NamedTuple):
    """What ``explain`` and ``perturb`` explain: the data, the model's run and module (on the
    device), the first test images ``[n, C, H, W]`` in [0, 1] of the class-balanced order a report
    explains (``[data] selection``) with their labels (the model's predictions on unlabelled data)
    and object masks ``[n, H, W]`` (or None)."""

    config: StudyConfig
    dataset: object
    run: object
    model: object
    images: object
    labels: object
    masks: object


def _explain_inputs(args) -> ExplainInputs:
    """The configuration (defaults < --config < --set < flags: the data from [data], the model from
    [models] as the report loads it), then the data and main model ``--model-index``: the user's
    checkpoint (or model of their training function) when [models] or --checkpoint names one,
    otherwise stablesal's default model of the seed plan, trained or reused, which one line says."""
    from .data.datasets import load_configured
    from .models.model_sets import check_model_index, default_model_file, explained_run, with_predicted_labels
    from .data.selection import ordered_for_explaining

    config = resolve_config(args)
    if args.images < 1:
        raise ValueError(f"--images must be at least 1 (test images to explain), got {args.images}")
    check_model_index(config.models, args.model_index, "--model-index")  # before any data is made
    dataset = load_configured(config.data)
    runs_dir = Path(config.report.runs_dir) / config.report.name
    if not config.models.user_models and dataset.labelled and len(dataset.train_labels):  # else explained_run refuses
        model_file = default_model_file(config.models, dataset, runs_dir, args.model_index)
        what = (f"the default {config.models.arch} on {config.data.dataset}, trained before ({model_file})"
                if model_file.exists() else f"training the default {config.models.arch} on {config.data.dataset}")
        print(f"{args.command}: no model given (--checkpoint or [models] checkpoints): {what}", file=sys.stderr)
    run = explained_run(config.models, dataset, runs_dir, args.model_index, progress=not args.quiet)
    device = config.models.device
    model = run.model.to(device)
    if not dataset.labelled:
        dataset = with_predicted_labels(dataset, model)
    # class-balanced as a report orders them (on unlabelled data: by the classes this model predicts)
    dataset = ordered_for_explaining(dataset, config.data.selection, config.data.selection_seed)
    count = min(args.images, len(dataset.test_labels))
    images, labels = dataset.test_images[:count].to(device), dataset.test_labels[:count].to(device)
    masks = None if dataset.test_masks is None else dataset.test_masks[:count]
    return ExplainInputs(config, dataset, run, model, images, labels, masks)


def _model_record(run) -> dict:
    """Which model made the maps, for the saved maps file."""
    return {"model": run.meta.get("config_hash"), "checkpoint": run.meta.get("checkpoint"),
            "model_index": run.index}


def cmd_explain(args) -> int:
    from .explain.gradient.methods import METHODS, make_method
    from .report.figures import plot_explanations
    from .metrics.similarity import grey_maps
    from .explain.segmentation import make_segmenter
    from .core.storage import save_torch
    from .data.selection import test_positions

    from .core.registry import check_name
    from .explain.segmentation import SEGMENTERS

    for name in args.method:  # before any data is made or model trained
        check_name("--method", name, METHODS)
    for name in args.grouping:
        check_name("--grouping", name, {"pixel"} | set(SEGMENTERS))
    config, dataset, run, model, images, labels, masks = _explain_inputs(args)
    from .report.figures import plot_boundaries

    groupings = {}
    out = Path(args.out)
    for name in args.grouping:
        groupings[name] = None if name == "pixel" else make_segmenter(name, n_segments=args.n_segments)(images)
        if groupings[name] is not None:
            plot_boundaries(images.cpu(), groupings[name].cpu(), out / f"segments_{name}")
    saved = {}
    for method_name in args.method:
        options = {}
        if method_name == "suppression":  # the named variants (suppression_patch, ...) keep their own settings
            options = {"mode": args.suppression_mode, "unit": args.suppression_unit}
        method = make_method(method_name, model, grouping="segments", n_samples=args.n_samples, n_steps=args.n_steps,
                             noise_level=args.noise_level, rng=args.rng, **options)
        extra = {}
        if method.needs_baselines:
            extra["baselines"] = dataset.train_images[:16].to(config.models.device)
        maps = method.attribute_groupings(images, target=labels, groupings=groupings, seed=args.seed, **extra)
        greys = {f"{method_name} / {g}": grey_maps(m).cpu() for g, m in maps.items()}
        path = plot_explanations(images.cpu(), masks, greys, out / f"explain_{method_name}",
                                 dataset.class_names, labels.cpu())
        saved.update({f"{method_name}/{g}": m.cpu() for g, m in maps.items()})
        print(f"{method_name}: {str(method)} -> {path}")
    save_torch(out / "maps.pt", {"maps": saved, "labels": labels.cpu(),
                                 "test_positions": test_positions(dataset, 0, len(labels)), **_model_record(run)})
    print(f"maps saved to {out / 'maps.pt'} (test accuracy of the model: {run.meta.get('test_accuracy', float('nan')):.3f})")
    return 0


def cmd_perturb(args) -> int:
    from .report.figures import plot_explanations
    from .metrics.similarity import grey_maps
    from .core.registry import check_name
    from .explain.perturbation import PRESETS, Perturbation, make_preset
    from .explain.perturbation.calculators import CALCULATORS
    from .explain.perturbation.features import SMOOTHINGS
    from .explain.perturbation.pipeline import MAPS
    from .explain.perturbation.samplers import SAMPLERS
    from .core.storage import save_torch
    from .data.selection import test_positions

    for name in args.preset or []:  # before any data is made or model trained
        check_name("--preset", name, PRESETS)
    for flag, name, choices in (("--smoothing", args.smoothing, SMOOTHINGS), ("--sampler", args.sampler, SAMPLERS),
                                ("--calculator", args.calculator, CALCULATORS), ("--map", args.map, MAPS)):
        if name is not None:
            check_name(flag, name, choices)
    config, dataset, run, model, images, labels, masks = _explain_inputs(args)
    custom = {k: v for k, v in (("segmenter", args.segmenter), ("smoothing", args.smoothing),
                                ("sampler", args.sampler), ("calculator", args.calculator), ("map", args.map),
                                ("n_samples", args.n_samples), ("n_segments", args.n_segments)) if v is not None}
    if args.replacement is not None:
        try:
            custom["replacement"] = float(args.replacement)
        except ValueError:
            custom["replacement"] = args.replacement
    pipelines = {}
    if args.preset:
        for name in args.preset:
            options = dict(custom)
            pipelines[name] = make_preset(name, model, **options)
    else:
        pipelines["custom"] = Perturbation(model, **custom)
    out = Path(args.out)
    saved = {}
    from tqdm.auto import tqdm

    for name, pipeline in tqdm(pipelines.items(), desc="perturb", disable=args.quiet):
        maps = pipeline.attribute(images, target=labels, seed=args.seed)
        saved[name] = {"pipeline": str(pipeline), "maps": maps.cpu()}
        path = plot_explanations(images.cpu(), masks, {f"{name}": grey_maps(maps).cpu()}, out / f"perturb_{name}",
                                 dataset.class_names, labels.cpu())
        print(f"{name}: {pipeline} -> {path}")
    save_torch(out / "perturbation_maps.pt", {"maps": saved, "labels": labels.cpu(),
                                 "test_positions": test_positions(dataset, 0, len(labels)), **_model_record(run)})
    print(f"maps saved to {out / 'perturbation_maps.pt'}")
    return 0


def _run_stages(args, config, only: list[str], out: Path | None = None) -> tuple[Path, dict]:
    """Run the pipeline's ``only`` stages (the same code and output shape as ``stablesal report``:
    results.json, the CSV tables, figures and index.html) and return the folder and its results."""
    from .pipeline.run import run_pipeline

    with _executor(args) as executor:
        folder = run_pipeline(config, only=only, out=out, progress=not args.quiet, executor=executor)
    return folder, json.loads((folder / "results.json").read_text())


def cmd_factor_study(args) -> int:
    from .studies.factors.effects import factor_reading

    config = resolve_config(args)
    out, results = _run_stages(args, config, ["factor_study"])
    study = results["factor_study"]
    for name, design in study["analysis"]["designs"].items():
        print(f"{name} design:")
        print(format_table([{k: v for k, v in e.items() if "srg" in k or k in ("factor", "levels")}
                            for e in design["effects"]]))
    print(factor_reading(study["analysis"], study["configurations"]))
    print(f"results.json, tables, figures and index.html in {out}")
    return 0


def cmd_stability(args) -> int:
    config = resolve_config(args)
    from .pipeline.run import terminal_summary

    out, results = _run_stages(args, config, ["stability", "figures"], Path(args.out))
    print(terminal_summary(results, top=None))  # every method × grouping, as the page's headline ranks them
    print(f"results.json, tables, figures and index.html in {out}")
    return 0


def cmd_consensus(args) -> int:
    config = resolve_config(args)  # checked (names, q, counts, k >= 3) before any model is trained
    out, results = _run_stages(args, config, ["consensus"], Path(args.out))
    units = results["consensus"]["units"]
    if args.png:
        import numpy as np

        from .studies.consensus.test import write_mask_pngs

        for row in (row for unit in units for row in unit["tests"]):
            masks = np.load(out / "consensus" / row["file"])["mask"]
            write_mask_pngs(masks, out / "consensus" / row["file"].removesuffix(".npz"))
    columns = ("method", "grouping", "test", "n_models", "n_reference", "significant", "area", "power", "can_discover")
    print(format_table([{k: row.get(k, float("nan")) for k in columns} for unit in units for row in unit["tests"]]))
    print(format_table([{k: row.get(k) for k in ("method", "grouping", "null", "test", "n_studies", "fdr", "fdr_low",
                                                 "fdr_high")}
                        for unit in units for row in [dict(r, method=unit["method"], grouping=unit["grouping"])
                                                      for r in unit["calibration"]]]))
    print(f"maps (.npz), results.json, tables, figures and index.html in {out}")
    return 0


def cmd_estimate(args) -> int:
    from .pipeline.estimate import estimate_table, run_estimate

    config = resolve_config(args)  # checked (proxy names, counts, settings) before anything is loaded
    out, result = run_estimate(config, Path(args.out) if args.out else None, progress=not args.quiet)
    print(f"ESTIMATE (not a measurement) of the agreement between independently retrained models, from "
          f"{', '.join(result['proxies'])} variants of model 0; calibration: {result['evidence']}")
    print(estimate_table(result))
    print(f"estimate.json and estimate.csv in {out}")
    return 0


def cmd_plan(args) -> int:
    from .studies.consensus.run import is_random_method, pilot_plans
    from .data.datasets import load_configured
    from .pipeline.context import Context
    from .pipeline.run import gradient_settings
    from .data.selection import ordered_for_explaining

    config = resolve_config(args)  # checked (names, target, counts, k >= 3) before any model is trained
    settings = config.consensus.settings()
    if args.what == "samples" and not any(is_random_method(m) for m in settings.methods):
        raise ValueError(f"--what samples: the sample planner needs a random method (smoothgrad, vargrad, "
                         f"gradient_shap, sparsified_smoothgrad, suppression, rise, lime, kernel_shap); got "
                         f"{settings.methods}")
    runs_dir = Path(config.report.runs_dir) / config.report.name
    # the models as a report builds them: the main set (unlabelled data labelled by model 0 and put in order)
    # and the [consensus] reference null family, whose mean map the plan partials out
    ctx = Context(config, load_configured(config.data), runs_dir, runs_dir, progress=not args.quiet)
    runs = ctx.runs
    if ctx.dataset.labelled:  # as a report does (an unlabelled split was put in order once model 0 labelled it)
        ctx.dataset = ordered_for_explaining(ctx.dataset, config.data.selection, config.data.selection_seed)
    reference_name, reference, _ = ctx.consensus_reference
    count = min(settings.n_images, len(ctx.dataset.test_labels))
    images, labels, _ = ctx.test_images(0, count)
    plans = pilot_plans([run.model for run in runs], images, labels, gradient_settings(config.gradient), settings,
                        progress=not args.quiet, reference=reference if len(reference) >= 3 else None,
                        reference_name=reference_name or None)
    for plan in plans:
        if args.what == "samples":
            if not plan.random:
                continue
            samples = plan.samples_needed(settings.target, args.at_models)
            goal = (f"a mean map whose correlation with the infinite-model mean map is {settings.target:g} "
                    f"(reliability ρ² = {settings.target ** 2:.2f})")
            print(f"{plan.method} with {plan.grouping}: " + (
                f"{samples} samples with {args.at_models} models for {goal}" if samples is not None else
                f"{args.at_models} models cannot reach {goal} at any sample count"))
        else:
            print(plan.sentence(settings.target, settings.max_samples))
    return 0


def registries() -> dict:
    """Every name a configuration or flag looks up, by kind (``stablesal list``)."""
    from .core.fills import FILLS
    from .data.datasets import DATASETS
    from .explain.gradient.methods import METHODS
    from .explain.perturbation.calculators import CALCULATORS
    from .explain.perturbation.features import SMOOTHINGS
    from .explain.perturbation.pipeline import MAPS
    from .explain.perturbation.presets import PRESETS
    from .explain.perturbation.replacement import REPLACEMENTS
    from .explain.perturbation.samplers import SAMPLERS
    from .explain.segmentation import SEGMENTERS
    from .metrics.registry import METRICS
    from .models.architectures import MODEL_FACTORIES
    from .pipeline.stages import STAGES
    from .report.html import SECTIONS

    return {"methods": METHODS, "presets": PRESETS, "segmenters": SEGMENTERS, "smoothings": SMOOTHINGS,
            "samplers": SAMPLERS, "replacements": {**REPLACEMENTS, **FILLS}, "calculators": CALCULATORS,
            "maps": MAPS, "metrics": METRICS, "datasets": DATASETS, "architectures": MODEL_FACTORIES,
            "stages": STAGES, "sections": SECTIONS}


def cmd_list(args) -> int:
    found = registries()
    for kind in args.kinds or sorted(found):
        if kind not in found:
            from .core.registry import check_name

            check_name("kinds", kind, found)
        names = list(found[kind])
        if kind == "sections":  # in the order of the page
            from .report.sections.common import page_order

            names = page_order()
        elif kind == "stages":  # in the order the pipeline runs them
            names.sort(key=lambda name: found[kind].info(name, "order"))
        print(f"{kind}: {', '.join(names)}")
    return 0


def cmd_render(args) -> int:
    from .pipeline.run import render_report

    print(f"report written to {render_report(Path(args.report_dir))}")
    return 0


def cmd_report(args) -> int:
    from .pipeline.run import run_report

    config = resolve_config(args)
    with _executor(args) as executor:
        out = run_report(config, progress=not args.quiet, executor=executor)
    if not args.quiet:
        from .pipeline.run import terminal_summary

        results = json.loads((out / "results.json").read_text())
        print(terminal_summary(results))
        print(f"time: {results['timings_s']['total']:.0f} s")
    print(f"report written to {out / 'index.html'}")
    return 0


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that set [data] keys."""
    _config_flag(parser, "--dataset", section="data", key="dataset", help="a dataset name (`stablesal list datasets`)")
    _config_flag(parser, "--data-root", section="data", key="root", default_text="none",
                 help="local path for cifar10 / folder / unlabelled / npz data")
    _config_flag(parser, "--n-train", type=int, section="data", key="n_train", help="shapes: number of training images")
    _config_flag(parser, "--n-test", type=int, section="data", key="n_test", help="shapes: number of test images")
    _config_flag(parser, "--image-size", type=int, section="data", key="size",
                 help="shapes / folder / unlabelled: image side in pixels")


def _add_model_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The data and the model of the commands that explain a few test images with one model
    (explain, perturb): from --config's [data] and [models] (as the report reads them), --set, or
    these flags."""
    _add_config_arguments(parser, "[data] and [models], as the report reads them; e.g. your report's file",
                          example="--set models.factory='\"mypkg.nets:build\"' --set data.size=64")
    _add_data_flags(parser)
    _config_flag(parser, "--checkpoint", nargs="+", metavar="FILE", section="models", key="checkpoints",
                 default_text="none: stablesal's default model, trained once and reused",
                 help="checkpoint files or glob patterns: TorchScript, a pickled nn.Module, a state dict (with "
                      "[models] factory or arch) or a train-seeds checkpoint")
    parser.add_argument("--model-index", type=int, default=0,
                        help="which of the [models] models to explain (checkpoint files in order, or seed-plan "
                             "entries; default 0)")


def _add_image_job_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """The arguments of the commands that explain a few test images with one model."""
    parser.add_argument("--images", type=int, default=6, help="number of test images to explain")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    _config_flag(parser, "--device", section="models", key="device", help="torch device, e.g. cpu or cuda")
    _config_flag(parser, "--runs", section="report", key="runs_dir",
                 help="folder of checkpoints, <runs>/<[report] name>/ (the report's: a model it trained is reused)")
    parser.add_argument("--out", default=out, help="folder for the maps and figures")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _add_consensus_arguments(parser: argparse.ArgumentParser) -> None:
    _add_config_arguments(parser, "[data], [models], [gradient], [consensus]")
    _config_flag(parser, "-k", "--models", type=int, section="models", key="k", help="retrained models (at least 3)")
    _config_flag(parser, "--vary", choices=MODEL_VARY, section="models", key="vary")
    _config_flag(parser, "--methods", nargs="+", section="consensus", key="methods")
    _config_flag(parser, "--groupings", nargs="+", section="consensus", key="groupings")
    _config_flag(parser, "--n-images", type=int, section="consensus", key="n_images", help="test images")
    _config_flag(parser, "--target", type=float, section="consensus", key="target", help="reliability to plan for")
    _config_flag(parser, "--max-samples", type=int, section="consensus", key="max_samples",
                 help="the planner adds models beyond this many samples")
    _add_runs_flag(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _add_config_arguments(parser: argparse.ArgumentParser, sections: str,
                          example: str = "--set models.k=5 --set gradient.methods='[\"saliency\"]'") -> None:
    """--config FILE and --set SECTION.KEY=VALUE (repeatable): the TOML layers of a command."""
    parser.add_argument("--config", default=None, help=f"TOML configuration ({sections}; see experiments/default.toml "
                                                       "for every key); a flag overrides it only when given")
    parser.add_argument("--set", action="append", default=None, metavar="SECTION.KEY=VALUE",
                        help=f"set a configuration key over the TOML file (repeatable; the value is TOML: {example}); "
                             "a named flag still wins")


def _add_runs_flag(parser: argparse.ArgumentParser, name: bool = False) -> None:
    """--runs (and --name): where checkpoints and cached units go, <runs>/<name>."""
    _config_flag(parser, "--runs", section="report", key="runs_dir",
                 help="folder of checkpoints and cached units, <runs>/<name> (re-runs resume)")
    command = parser.prog.split()[-1]
    if name:
        _config_flag(parser, "--name", section="report", key="name", help="name of the run",
                     default_text=(f"the TOML's [report] name, else {RUN_NAMES[command]}" if command in RUN_NAMES
                                   else None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stablesal", description=__doc__)
    parser.add_argument("--version", action="version", version=f"stablesal {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train-seeds", help="train K models that differ only in seed and/or data split")
    _add_config_arguments(train, "[data] and [models]")
    _add_data_flags(train)
    _add_training_arguments(train)
    train.add_argument("--out", default="runs/seeds", help="checkpoint folder (re-runs resume here)")
    _add_executor_arguments(train)
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=cmd_train_seeds)

    explain = commands.add_parser("explain", help="maps of test images for any method, sampler and grouping")
    _add_model_job_arguments(explain)
    explain.add_argument("--method", nargs="+", default=["saliency", "smoothgrad", "suppression"],
                         help="gradient methods (`stablesal list methods`)")
    explain.add_argument("--grouping", nargs="+", default=["pixel", "fastslic"],
                         help="pixel, or segmenters (`stablesal list segmenters`)")
    explain.add_argument("--n-segments", type=int, default=_STUDY.n_segments)
    explain.add_argument("--n-samples", type=int, default=_STUDY.n_samples)
    explain.add_argument("--n-steps", type=int, default=_STUDY.n_steps)
    explain.add_argument("--noise-level", type=float, default=_STUDY.noise_level,
                         help="SmoothGrad σ as a fraction of the input range")
    explain.add_argument("--rng", default=_STUDY.rng, choices=RNG_KINDS,
                         help="random streams: per-image generators or counter streams, a whole chunk per draw "
                              "(auto: counter on CUDA)")
    explain.add_argument("--suppression-mode", default=SUPPRESSION_MODES[0], choices=SUPPRESSION_MODES)
    explain.add_argument("--suppression-unit", default=SUPPRESSION_UNITS[0], choices=SUPPRESSION_UNITS)
    _add_image_job_arguments(explain, out="figures/explain")
    explain.set_defaults(func=cmd_explain)

    perturb = commands.add_parser("perturb", help="perturbation maps (RISE, LIME, KernelSHAP, occlusion, PDA, CIU "
                                                   "or a custom pipeline) of test images")
    _add_model_job_arguments(perturb)
    perturb.add_argument("--preset", nargs="+", default=None,
                         help="presets (`stablesal list presets`; default: a custom pipeline from the stage options "
                              "below)")
    perturb.add_argument("--segmenter", default=None, help="`stablesal list segmenters`, grid-bilinear or patches")
    perturb.add_argument("--smoothing", default=None, help="`stablesal list smoothings`")
    perturb.add_argument("--sampler", default=None, help="`stablesal list samplers`")
    perturb.add_argument("--replacement", default=None, help="a number, or `stablesal list replacements`")
    perturb.add_argument("--calculator", default=None, help="`stablesal list calculators`")
    perturb.add_argument("--map", default=None, help="`stablesal list maps`")
    perturb.add_argument("--n-samples", type=int, default=None)
    perturb.add_argument("--n-segments", type=int, default=None)
    _add_image_job_arguments(perturb, out="figures/perturb")
    perturb.set_defaults(func=cmd_perturb)

    factors = commands.add_parser("factor-study", help="the SEG-SMOOTH perturbation factor study scored by SRG")
    _add_config_arguments(factors, "[data], [models], [factors]; e.g. experiments/factor_study.toml")
    _config_flag(factors, "--n-images", type=int, section="factors", key="n_images")
    _add_runs_flag(factors, name=True)
    _config_flag(factors, "--out", section="report", key="out_dir", help="parent folder of the results, <out>/<name>")
    factors.add_argument("-q", "--quiet", action="store_true")
    _add_executor_arguments(factors)
    factors.set_defaults(func=cmd_factor_study)

    stability = commands.add_parser("stability", help="train K models and measure cross-seed saliency stability")
    _add_config_arguments(stability, "[data], [models], [gradient]")
    _config_flag(stability, "-k", "--models", type=int, section="models", key="k", help="retrained models")
    _config_flag(stability, "--vary", choices=MODEL_VARY, section="models", key="vary")
    _config_flag(stability, "--control-k", type=int, section="models", key="control_k",
                 help="control models: model 0's split, other seeds (0, or >= 3)")
    _config_flag(stability, "--untrained-k", type=int, section="models", key="untrained_k",
                 help="untrained networks of the same architecture, a null (0, or >= 3)")
    _config_flag(stability, "--random-label-k", type=int, section="models", key="random_label_k",
                 help="networks trained by the main recipe on permuted labels, the strictest null (0, or >= 3)")
    _config_flag(stability, "--bn-calibrated-k", type=int, section="models", key="bn_calibrated_k",
                 help="untrained networks with batch-norm statistics re-estimated on training images (0, or >= 3)")
    _config_flag(stability, "--draws", choices=DRAWS, section="gradient", key="draws",
                 help="explainer draws: independent per model or shared (labelled)")
    _config_flag(stability, "--rng", choices=RNG_KINDS, section="gradient", key="rng",
                 help="random streams: per-image generators or counter streams (auto: counter on CUDA)")
    _config_flag(stability, "--fidelity", choices=FIDELITY_CHOICES, section="gradient", key="fidelity",
                 help="model 0's deletion/insertion AUC and µFidelity: auto (images up to 64 px), on or off")
    _config_flag(stability, "--methods", nargs="+", section="gradient", key="methods")
    _config_flag(stability, "--groupings", nargs="+", section="gradient", key="groupings")
    _config_flag(stability, "--n-images", type=int, section="gradient", key="n_images", help="test images")
    _add_runs_flag(stability, name=True)
    stability.add_argument("--out", default="reports/stability",
                           help="folder of the tables, JSON and figures (not a configuration key; default "
                                "reports/stability)")
    _add_executor_arguments(stability)
    stability.add_argument("-q", "--quiet", action="store_true")
    stability.set_defaults(func=cmd_stability)

    consensus = commands.add_parser("consensus", help="consensus maps: regions K retrained models attribute "
                                                      "consistently, with the false-discovery rate controlled")
    _add_consensus_arguments(consensus)
    _config_flag(consensus, "--reference", choices=NULL_SETS, section="consensus", key="reference",
                 help="the null family the trained models are tested against")
    _config_flag(consensus, "--untrained-k", type=int, section="models", key="untrained_k",
                 help="untrained networks (with --reference untrained: 0 leaves the rank-sum test only; or >= 3)")
    _config_flag(consensus, "--random-label-k", type=int, section="models", key="random_label_k",
                 help="random-label networks, the default reference (0, or >= 3)")
    _config_flag(consensus, "--q", type=float, section="consensus", key="q", help="false-discovery rate")
    _config_flag(consensus, "--procedure", choices=PROCEDURES, section="consensus", key="procedure",
                 help="Benjamini-Hochberg, or Benjamini-Yekutieli (any dependence)")
    _config_flag(consensus, "--scope", choices=SCOPES, section="consensus", key="scope",
                 help="control the FDR over each image's regions or over all images' regions")
    _config_flag(consensus, "--n-permutations", type=int, section="consensus", key="n_permutations")
    _config_flag(consensus, "--n-models", type=int, section="consensus", key="n_models",
                 help="models in the consensus (0: all); the rest validate the planner")
    _config_flag(consensus, "--calibration-studies", type=int, section="consensus", key="calibration_studies")
    consensus.add_argument("--png", action="store_true", help="also write every region mask as PNG, one per image")
    _add_executor_arguments(consensus)
    consensus.add_argument("--out", default="reports/consensus",
                           help="folder of the maps, tables, JSON and figures (not a configuration key; default "
                                "reports/consensus)")
    consensus.set_defaults(func=cmd_consensus)

    plan = commands.add_parser("plan", help="how many retrained models and explainer samples a reliable mean map needs")
    _add_consensus_arguments(plan)
    plan.add_argument("--what", default="both", choices=["both", "samples"],
                      help="both: fewest models (then samples) for the target; samples: samples at --at-models")
    plan.add_argument("--at-models", type=int, default=8, help="models for --what samples")
    plan.set_defaults(func=cmd_plan)

    estimate = commands.add_parser("estimate", help="cross-seed agreement estimated from one trained model (proxy "
                                                    "variants, calibrated against retraining)")
    _add_config_arguments(estimate, "[data], [models], [gradient], [proxy]")
    _config_flag(estimate, "--proxy-k", type=int, section="proxy", key="k", help="variants per proxy")
    _config_flag(estimate, "--calibration", section="proxy", key="calibration",
                 help="the calibration file the estimate rests on")
    _add_runs_flag(estimate, name=True)
    estimate.add_argument("--out", default=None, help="folder of estimate.json and estimate.csv (default "
                                                      "<[report] out_dir>/<name>)")
    estimate.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    estimate.set_defaults(func=cmd_estimate)

    report = commands.add_parser("report", help="run the whole study and write the stability report")
    _add_config_arguments(report, "every section")
    _config_flag(report, "--name", section="report", key="name", help="report name, the folder <out>/<name>")
    _config_flag(report, "--out", section="report", key="out_dir", help="parent folder of the report")
    _config_flag(report, "--runs", section="report", key="runs_dir",
                 help="folder for checkpoints and cached study units, <runs>/<name>")
    report.add_argument("--quick", action="store_true", help="a small, fast version of the study")
    _add_executor_arguments(report)
    report.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    report.set_defaults(func=cmd_report)

    listing = commands.add_parser("list", help="the registered names: methods, presets, segmenters, metrics, ...")
    listing.add_argument("kinds", nargs="*", help="which lists (default: all)")
    listing.set_defaults(func=cmd_list)

    render = commands.add_parser("render", help="rebuild a report's page from its results folder (no models needed)")
    render.add_argument("report_dir", help="a report folder written by `stablesal report` (holds results.json)")
    render.set_defaults(func=cmd_render)
    for command in subcommands(parser).values():  # resolve_config reads which flags set which keys here
        command.set_defaults(config_flags=config_flags(command))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .core.storage import CorruptFileError

    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, TypeError, CorruptFileError) as error:
        # Bad input is the user's to fix: one clear line, not a traceback from deep inside.
        print(f"stablesal {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
