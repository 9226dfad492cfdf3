"""Does a proxy's calibration carry to data and architectures it was not fitted on? Leave one
calibration out, fit the correction on the others, test it on the held-out one, and write the
errors to one JSON file (``experiments/results/proxy_transfer.json``).

The correction of a proxy × method × grouping is the mean of the others' differences (proxy −
truth, :mod:`stablesal.studies.proxies.calibration`); on the held-out calibration the predicted
agreement of retrained models is its proxy agreement minus that correction, and the error is the
prediction minus the held-out truth, i.e. the held-out difference minus the correction, with the
held-out difference's design interval shifted by the same amount. Beside it, the error without any
correction (the held-out difference itself).

    python analysis/proxy_transfer.py experiments/results/proxy.json experiments/results/proxy_lfw_small_cnn.json \
        experiments/results/proxy_lfw_resnet20.json --out experiments/results/proxy_transfer.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stablesal.core.storage import atomic_write_json  # noqa: E402
from stablesal.studies.proxies.calibration import AGREEMENT_TOLERANCE  # noqa: E402


def label(calibration: dict) -> str:
    return f"{calibration['dataset']['name']}/{calibration['architecture']}"


def transfer(calibrations: list[dict]) -> dict:
    """The leave-one-calibration-out errors of every proxy × method × grouping all of them hold."""
    keyed = [{(r["proxy"], r["method"], r["grouping"]): r for r in c["rows"]} for c in calibrations]
    common = sorted(set.intersection(*(set(k) for k in keyed)))
    rows = []
    for held, calibration in enumerate(calibrations):
        for unit in common:
            others = [keyed[i][unit]["difference"] for i in range(len(calibrations)) if i != held]
            correction = sum(others) / len(others)
            row = keyed[held][unit]
            error = row["difference"] - correction
            rows.append({"held_out": label(calibration), "proxy": unit[0], "method": unit[1], "grouping": unit[2],
                         "correction": correction, "truth_agreement": row["truth_agreement"],
                         "proxy_agreement": row["proxy_agreement"], "predicted": row["proxy_agreement"] - correction, "error": error,
                         "error_ci_low": row["difference_ci_low"] - correction,
                         "error_ci_high": row["difference_ci_high"] - correction,
                         "uncorrected_error": row["difference"],
                         "within_tolerance": abs(error) <= AGREEMENT_TOLERANCE,
                         "rank_correlation": row["rank_correlation"],
                         "rank_correlation_ci_low": row["rank_correlation_ci_low"],
                         "rank_correlation_ci_high": row["rank_correlation_ci_high"],
                         "cost_share": row.get("cost_share")})
    summary = []
    for proxy in dict.fromkeys(r["proxy"] for r in rows):
        for held in dict.fromkeys(r["held_out"] for r in rows):
            mine = [r for r in rows if r["proxy"] == proxy and r["held_out"] == held]
            summary.append({"proxy": proxy, "held_out": held, "units": len(mine),
                            "mean_abs_error": sum(abs(r["error"]) for r in mine) / len(mine),
                            "mean_abs_uncorrected_error": sum(abs(r["uncorrected_error"]) for r in mine) / len(mine),
                            "within_tolerance": sum(r["within_tolerance"] for r in mine),
                            "rank_target_met": sum(r["rank_correlation"] >= 0.7 for r in mine),
                            "cost_share": mine[0]["cost_share"]})
    return {"calibrations": [label(c) for c in calibrations], "commits": [c.get("commit") for c in calibrations],
            "tolerance": AGREEMENT_TOLERANCE, "rows": rows, "summary": summary}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calibrations", nargs="+", help="proxy calibration files (analysis/proxy_calibration.py)")
    parser.add_argument("--out", default="experiments/results/proxy_transfer.json")
    args = parser.parse_args(argv)
    if len(args.calibrations) < 2:
        raise SystemExit("leave-one-out needs at least two calibration files")
    result = transfer([json.loads(Path(path).read_text()) for path in args.calibrations])
    atomic_write_json(Path(args.out), result)
    for row in result["summary"]:
        print(f"{row['proxy']:>20} held out {row['held_out']:>20}: mean |error| {row['mean_abs_error']:.3f} "
              f"(uncorrected {row['mean_abs_uncorrected_error']:.3f}), {row['within_tolerance']}/{row['units']} within "
              f"±{AGREEMENT_TOLERANCE}, rank ≥ 0.7 in {row['rank_target_met']}/{row['units']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
