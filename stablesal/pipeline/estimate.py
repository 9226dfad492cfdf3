"""``stablesal estimate``: cross-seed agreement predicted from one trained model, without retraining.

Main model 0 of the configuration (the user's checkpoint, or stablesal's own model 0) is varied by
each proxy of ``[proxy] names``; the variants go through the stability study of ``[gradient]``, and
:func:`stablesal.studies.proxies.estimate.estimate_rows` turns their agreement into the predicted
agreement of independently retrained models, with the calibration's interval added. What the
calibration does not cover is refused before any model is loaded or trained.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..core.storage import atomic_write_json
from ..core.tables import format_table
from ..data.datasets import load_configured
from ..data.selection import ordered_for_explaining
from ..models.proxies import make_variants, spawn_children
from ..models.training import seed_plan
from ..studies.proxies.estimate import (
    SHIPPED_TRANSFER, calibration_path, check_calibrated, estimate_rows, evidence, load_calibration,
)
from ..studies.stability.run import run_study
from .config import StudyConfig
from .model_sets import explained_run, train_config_from
from .run import write_csv
from .stages import gradient_settings

# the columns the terminal shows
ESTIMATE_COLUMNS = ("method", "grouping", "proxy", "proxy_agreement", "calibration_difference",
                    "predicted_cross_seed_agreement", "predicted_cross_seed_agreement_ci_low",
                    "predicted_cross_seed_agreement_ci_high")


def run_estimate(config: StudyConfig, out: Path | str | None = None, progress: bool = True) -> tuple[Path, dict]:
    """Run the estimate (see the module docstring); writes ``estimate.json`` and ``estimate.csv``
    in ``out`` (default ``<[report] out_dir>/<[report] name>``). Returns ``(folder, result)``."""
    proxy = config.proxy
    calibration = load_calibration(proxy.calibration)
    dataset = ordered_for_explaining(load_configured(config.data), config.data.selection, config.data.selection_seed)
    channels, side = dataset.image_shape[0], dataset.image_shape[-1]
    study = gradient_settings(config.gradient)
    check_calibrated(calibration, list(proxy.names), side, channels,
                     [(method, grouping) for method in study.methods for grouping in study.groupings], asdict(proxy))
    models = config.models
    if "spawn" in proxy.names and models.user_models:
        raise ValueError("[proxy] names: 'spawn' resumes stablesal's own training at an epoch; checkpoints (or a "
                         "training function) of yours cannot be spawned from: choose finetune, bootstrap_finetune, "
                         "laplace or dropout")
    training = [name for name in proxy.names if name in ("finetune", "bootstrap_finetune")]
    if training and (not dataset.labelled or not len(dataset.train_labels)):
        raise ValueError(f"[proxy] names: {training} fine-tune on labelled training images; [data] {dataset.name} "
                         "has none")
    out = Path(config.report.out_dir) / config.report.name if out is None else Path(out)
    runs_dir = Path(config.report.runs_dir) / config.report.name
    run = explained_run(config, dataset, runs_dir, 0, progress)
    train_config = train_config_from(models)
    plan_entry = seed_plan(models.k, models.vary, models.base_seed, max(1, len(dataset.train_labels)))[0]
    settings = proxy.settings()
    images, labels, masks = (dataset.test_images[:config.gradient.n_images], dataset.test_labels[:config.gradient.n_images],
                             None if dataset.test_masks is None else dataset.test_masks[:config.gradient.n_images])
    source = evidence(calibration, proxy.calibration)
    # the shipped calibration's correction was also tested on held-out settings: its spread widens the interval
    transfer = (json.loads(SHIPPED_TRANSFER.read_text())
                if calibration_path(proxy.calibration) == calibration_path("") and SHIPPED_TRANSFER.is_file() else None)
    rows = []
    for name in proxy.names:
        k = proxy.spawn_k if name == "spawn" else proxy.k
        variants = make_variants(
            name, run.model, k, images=dataset.train_images, labels=dataset.train_labels, settings=settings,
            config=train_config, seed=proxy.seed, device=models.device,
            spawn=lambda epoch, count: spawn_children(dataset, plan_entry, train_config, epoch, count,
                                                      runs_dir / "spawn", models.device, progress=progress,
                                                      seed=proxy.seed))
        units = run_study({name: variants}, images, labels, masks, study, progress=progress, include_random=False)
        rows += estimate_rows(units, calibration, name, source, transfer)
    result = {"kind": "estimate", "evidence": source, "proxies": list(proxy.names), "rows": rows,
              "note": "predicted agreement (mean Spearman between independently retrained models) from one "
                      "model's proxy variants and a calibration on other data: an estimate, not a measurement"}
    atomic_write_json(out / "estimate.json", result)
    write_csv(out / "estimate.csv", rows)
    return out, result


def estimate_table(result: dict) -> str:
    """The terminal's table of an estimate: the columns of :data:`ESTIMATE_COLUMNS`, and why a
    unit has no prediction where the calibration does not cover it."""
    table = []
    for row in result["rows"]:
        cells = {key: row.get(key, "") for key in ESTIMATE_COLUMNS}
        if "refused" in row:
            cells["predicted_cross_seed_agreement"] = f"refused: {row['refused']}"
        table.append(cells)
    return format_table(table)
