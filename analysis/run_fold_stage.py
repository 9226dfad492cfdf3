"""Run only the MeGe/ReCo fold stage of a report configuration (the pipeline with
``only=["folds"]``: results folder ``<[report] out_dir>/<name>-folds``) and write its rows to a
JSON file, with the held-out test-image variant (``mege_test``/``reco_test``) of an existing
results file set beside them. Reuses the report's cached fold models and study units under
``runs/<name>``.

    python analysis/run_fold_stage.py --config experiments/default.toml \\
        --results experiments/results/default.json --out experiments/results/mege_folds.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from stablesal.core.storage import atomic_write_json  # noqa: E402
from stablesal.pipeline.config import load_config  # noqa: E402
from stablesal.pipeline.run import run_pipeline  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/default.toml")
    parser.add_argument("--results", default=None, help="a report's results.json for the test-image variant")
    parser.add_argument("--out", required=True)
    parser.add_argument("--note", default="", help="a line recorded in the file (machine, threads, date)")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    folder = Path(config.report.out_dir) / f"{config.report.name}-folds"
    began = time.perf_counter()
    results = json.loads((run_pipeline(config, only=["folds"], out=folder, progress=not args.quiet)
                          / "results.json").read_text())
    seconds = time.perf_counter() - began
    fold_models = [row for row in results["models"] if row["set"] == "fold"]
    test_variant = []
    if args.results:
        summary = json.loads(Path(args.results).read_text())["stability_summary"]
        test_variant = [{k: r.get(k) for k in ("method", "grouping", "mege_test", "reco_test")}
                        for r in summary if r["model_set"] == "main"]
    folds = results["mege_folds"]
    atomic_write_json(args.out, {"config": config.folds.__dict__, "fold_models": len(fold_models),
                                 "models": fold_models, "n_samples": folds["n_samples"], "rows": folds["rows"],
                                 "test_image_variant": test_variant, "seconds": round(seconds, 1),
                                 "note": args.note})
    print(f"{len(folds['rows'])} rows in {args.out} ({seconds:.0f} s); the results folder is {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
