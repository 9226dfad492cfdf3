"""Run only the MeGe/ReCo fold stage of a report configuration and write its rows to a JSON file,
with the held-out test-image variant (``mege_test``/``reco_test``) of an existing results file set
beside them. Reuses the report's cached fold models and study units under ``runs/<name>``.

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
from stablesal.pipeline.config import load_config  # noqa: E402
from stablesal.data import load_configured  # noqa: E402
from stablesal.pipeline.run import fold_stage  # noqa: E402
from stablesal.core.storage import atomic_write_json  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/default.toml")
    parser.add_argument("--results", default=None, help="a report's results.json for the test-image variant")
    parser.add_argument("--out", required=True)
    parser.add_argument("--note", default="", help="a line recorded in the file (machine, threads, date)")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    dataset = load_configured(config.data)
    runs_dir = Path(config.report.runs_dir) / config.report.name
    scratch = Path(args.out).with_suffix("")  # the stage's CSV goes beside the JSON, then is removed
    began = time.perf_counter()
    folds = fold_stage(config, dataset, runs_dir, scratch, progress=not args.quiet)
    seconds = time.perf_counter() - began
    test_variant = []
    if args.results:
        summary = json.loads(Path(args.results).read_text())["stability_summary"]
        test_variant = [{k: r.get(k) for k in ("method", "grouping", "mege_test", "reco_test")}
                        for r in summary if r["model_set"] == "main"]
    atomic_write_json(args.out, {"config": config.folds.__dict__, "fold_models": len(folds["models"]),
                                 "models": folds["models"], "n_samples": folds["n_samples"], "rows": folds["rows"],
                                 "test_image_variant": test_variant, "seconds": round(seconds, 1),
                                 "note": args.note})
    if scratch.exists():
        for path in sorted(scratch.glob("*")):
            path.unlink()
        scratch.rmdir()
    print(f"{len(folds['rows'])} rows in {args.out} ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
