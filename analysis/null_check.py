"""Run the negative control of ``experiments/null_check.toml`` (main models trained on permuted
labels against a random-label null of the same size) and write what it shows to one JSON file:

* every headline row's excess over the random-label null (Spearman), how many of the 95 % design
  intervals exclude 0, and how many rows Holm's procedure resolves across them (both should be
  near 0: the report must credit no agreement to learning here);
* the consensus test of the K main models against the random-label reference: the share of
  images in which it finds any region, per method × grouping (a complete null: that share is the
  false-discovery rate, at most q = 0.05 when the test is calibrated, and must be at most 10 %).

    python analysis/null_check.py --config experiments/null_check.toml --out experiments/results/null_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stablesal.core.storage import atomic_write_json  # noqa: E402
from stablesal.studies.removal.fill_quality import wilson_half_width  # noqa: E402
from stablesal.pipeline.config import load_config  # noqa: E402
from stablesal.pipeline.run import run_pipeline  # noqa: E402


def summarise_null_check(results: dict) -> dict:
    """The two checks of the module docstring, from a report's ``results.json``."""
    ranking = results["ranking"]
    rows = ranking["rows"]
    raw = [r for r in rows if r["excess_ci_low"] > 0 or r["excess_ci_high"] < 0]
    holm = [r for r in rows if r["excess_holm"] <= ranking["alpha"]]
    units = []
    for unit in (results.get("consensus") or {}).get("units", []):
        for test in unit["tests"]:
            if test["test"] == "rank-sum":
                continue
            units.append({"method": unit["method"], "grouping": unit["grouping"], "test": test["test"],
                          "images_with_regions": test["images_with_regions"], "n_images": test["n_images"],
                          "share_of_images": test["share_with_regions"],
                          "n_models": unit["n_models"], "n_reference": unit.get("n_reference")})
    found, tested = sum(u["images_with_regions"] for u in units), sum(u["n_images"] for u in units)
    share = found / tested if tested else float("nan")
    half = wilson_half_width(found, tested) if tested else float("nan")
    centre = (found + 1.959963984540054 ** 2 / 2) / (tested + 1.959963984540054 ** 2) if tested else float("nan")
    return {"null": ranking["null"], "rows": len(rows),
            "intervals_excluding_0": [{"method": r["method"], "grouping": r["grouping"], "excess": r["excess"],
                                       "ci_low": r["excess_ci_low"], "ci_high": r["excess_ci_high"]} for r in raw],
            "holm_resolved": len(holm), "largest_excess": max(r["excess"] for r in rows),
            "smallest_excess": min(r["excess"] for r in rows), "consensus": units,
            "worst_consensus_share": max((u["share_of_images"] for u in units if u["share_of_images"] is not None),
                                         default=None),
            # every unit's images together (units share the models and images: the interval, Wilson's for
            # independent trials, is for orientation)
            "consensus_pooled": {"images_with_regions": found, "image_units": tested, "share": share,
                                 "wilson_low": centre - half, "wilson_high": centre + half}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/null_check.toml")
    parser.add_argument("--out", default="experiments/results/null_check.json")
    parser.add_argument("-q", "--quiet", action="store_true")
    parser.add_argument("--from-results", default="", help="a finished run's results.json: summarise it, run nothing")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    began = time.perf_counter()
    if args.from_results:
        folder = Path(args.from_results).parent
        previous = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
        began -= previous.get("seconds", 0.0)  # the run's own time, not this summary's
    else:
        folder = run_pipeline(config, only=["stability", "consensus"], progress=not args.quiet)
    results = json.loads((folder / "results.json").read_text())
    summary = summarise_null_check(results)
    atomic_write_json(args.out, {"config": results["config"], "models": results["models"], **summary,
                                 "environment": results["environment"],
                                 "seconds": round(time.perf_counter() - began, 1)})
    print(json.dumps({k: v for k, v in summary.items() if k != "consensus"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
