"""``stablesal estimate``: cross-seed agreement predicted from one trained model, without retraining.

Main model 0 of the configuration (the user's checkpoint, or stablesal's own model 0) is varied by
each proxy of ``[proxy] names``; the variants go through the stability study of ``[gradient]``, and
:func:`stablesal.studies.proxies.estimate.estimate_rows` turns their agreement into the predicted
agreement of independently retrained models, with the calibration's interval added. What the
calibration does not cover is refused before any model is loaded or trained.
"""

from __future__ import annotations

from pathlib import Path

from ..core.storage import atomic_write_json
from ..core.tables import format_table
from ..data.datasets import load_configured
from ..data.selection import ordered_for_explaining
from ..studies.proxies.estimate import evidence, load_calibration
from .config import StudyConfig
from ..models.model_sets import explained_run
from .run import write_csv
from .stages import ESTIMATE_NOTE, check_estimate, proxy_estimate_rows

# the columns the terminal shows
ESTIMATE_COLUMNS = ("method", "grouping", "proxy", "proxy_agreement", "calibration_difference",
                    "predicted_cross_seed_agreement", "predicted_cross_seed_agreement_ci_low",
                    "predicted_cross_seed_agreement_ci_high")


def run_estimate(config: StudyConfig, out: Path | str | None = None, progress: bool = True) -> tuple[Path, dict]:
    """Run the estimate (see the module docstring); writes ``estimate.json`` and ``estimate.csv``
    in ``out`` (default ``<[report] out_dir>/<[report] name>``). Returns ``(folder, result)``."""
    calibration = load_calibration(config.proxy.calibration)
    dataset = ordered_for_explaining(load_configured(config.data), config.data.selection, config.data.selection_seed)
    check_estimate(config, dataset, calibration)
    out = Path(config.report.out_dir) / config.report.name if out is None else Path(out)
    runs_dir = Path(config.report.runs_dir) / config.report.name
    run = explained_run(config.models, dataset, runs_dir, 0, progress)
    n = config.gradient.n_images
    images, labels, masks = (dataset.test_images[:n], dataset.test_labels[:n],
                             None if dataset.test_masks is None else dataset.test_masks[:n])
    rows = proxy_estimate_rows(config, dataset, run.model, images, labels, masks, calibration, runs_dir, progress)
    result = {"kind": "estimate", "evidence": evidence(calibration, config.proxy.calibration),
              "proxies": list(config.proxy.names), "rows": rows, "note": ESTIMATE_NOTE}
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
