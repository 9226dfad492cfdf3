"""The report layer: :mod:`.html` (the page and its section registry), :mod:`.figures`,
:mod:`.render` (``index.html`` from ``results.json``) and :mod:`.sections`.

``stablesal.report`` was the orchestration module; its names moved to
:mod:`stablesal.pipeline.run`. They are still found here for one release, with a
DeprecationWarning (``_MOVED``), except the per-stage functions (``gradient_study``,
``fold_stage``, ...), which became the stage classes of :mod:`stablesal.pipeline.stages`."""

import warnings

from .render import render_report

# name -> the module it moved to: the declared compatibility re-exports (tests/test_architecture.py
# exempts exactly these lazy imports from the layer order); removed after one release
_MOVED = {
    "QUICK_OVERRIDES": "stablesal.pipeline.run",
    "apply_quick": "stablesal.pipeline.run",
    "write_csv": "stablesal.pipeline.run",
    "RECORDED_DISTRIBUTIONS": "stablesal.pipeline.run",
    "configured_seeds": "stablesal.pipeline.run",
    "interval_notes": "stablesal.pipeline.run",
    "train_config_from": "stablesal.pipeline.run",
    "gradient_settings": "stablesal.pipeline.run",
    "checkpoint_paths": "stablesal.pipeline.run",
    "user_model_runs": "stablesal.pipeline.run",
    "with_predicted_labels": "stablesal.pipeline.run",
    "user_fold_runs": "stablesal.pipeline.run",
    "train_model_sets": "stablesal.pipeline.run",
    "untrained_models": "stablesal.pipeline.run",
    "terminal_summary": "stablesal.pipeline.run",
    "run_report": "stablesal.pipeline.run",
    "example_panels": "stablesal.pipeline.run",
}


def __getattr__(name):
    if name in _MOVED:
        warnings.warn(f"stablesal.report.{name} moved to {_MOVED[name]}; the old name goes after one release",
                      DeprecationWarning, stacklevel=2)
        from ..pipeline import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
