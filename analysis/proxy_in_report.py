"""The estimate without retraining, checked on the default report's own retrained models: run the
default study's stability stage (its cached units and models are reused from ``runs/default``) and
the proxy stage on main model 0, and write the estimate beside the measurement to one JSON file.

    python analysis/proxy_in_report.py [--out experiments/results/proxy_in_report.json]

The shipped calibration was made on 19 models of the same architecture that differ only in their
seed (8 epochs on 5 000 images); the default report trains 6 epochs on 10 000 images per model, so
this tests the calibration on a recipe it was not fitted on. The measurement beside the estimate
comes from the report's control models (model 0's split, other seeds), which, like the
calibration's truth, differ only in their seed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stablesal.core.storage import atomic_write_json  # noqa: E402
from stablesal.pipeline.config import config_from_dict, read_toml  # noqa: E402
from stablesal.pipeline.run import run_pipeline  # noqa: E402

PROXIES = ["laplace", "finetune"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "experiments" / "default.toml"))
    parser.add_argument("--runs", default=str(ROOT / "runs"), help="the runs folder of `make report`")
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results" / "proxy_in_report.json"))
    parser.add_argument("--report", default=str(ROOT / "reports" / "proxy_in_report"),
                        help="the results folder of the run (results.json, the tables, the page)")
    args = parser.parse_args(argv)
    raw = read_toml(args.config)
    raw.setdefault("proxy", {}).update({"names": PROXIES, "in_report": True})
    raw.setdefault("report", {}).update({"runs_dir": args.runs, "copy_figures_to": "", "copy_results_to": ""})
    config = config_from_dict(raw)
    # the run's own results folder (its page shows the section); the JSON below keeps what the docs cite
    out = run_pipeline(config, only=["stability", "proxy"], out=Path(args.report))
    results = json.loads((out / "results.json").read_text())
    written = {"what": "the estimate without retraining on the default report's main model 0, beside the "
                       "cross-seed agreement its retrained models show (experiments/default.toml)",
               "code_version": results["environment"].get("code_version"),
               "models": [m for m in results["models"] if m["set"] == "main"],
               "n_images": results["n_images"], "proxy_estimate": results["proxy_estimate"],
               "timings_s": results["timings_s"]}
    atomic_write_json(args.out, written)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
