"""Do the default study's findings on generated shapes hold on real photographs? Compare two
reports' key tables and write what holds and what does not to one JSON file
(``experiments/results/replication.json``).

For each report: how many method × grouping rows lie above each null family at a family-wise 5 %
(Holm, the ranking's own p-values), and which. For the rows both reports have: each one's excess
over the random-label null on both, with its design interval, whether the two resolved verdicts
agree, and Spearman's ρ between the two rankings' excesses (descriptive: the rows share models and
images, so ρ has no interval here and no reading rests on it alone). For the grouping contrasts
(a super-pixel grouping minus pixel maps, cross-seed Spearman): the rows resolved in each report
(Holm across the report's rows) and whether their signs agree.

    python analysis/replication.py experiments/results/default.json experiments/results/lfw.json \
        --out experiments/results/replication.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stablesal.core.multiple_testing import holm  # noqa: E402
from stablesal.core.settings import NULL_SETS  # noqa: E402
from stablesal.core.storage import atomic_write_json  # noqa: E402


def above(ranking: dict, null: str) -> list[dict]:
    """The ranking's rows above ``null`` at family-wise ``alpha`` (Holm-adjusted p, positive excess)."""
    return [r for r in ranking["rows"] if r.get(f"above_{null}_holm", 1.0) <= ranking["alpha"]
            and r.get(f"above_{null}", 0.0) > 0]


def _unit(row: dict) -> tuple[str, str]:
    return row["method"], row["grouping"]


def report_summary(results: dict) -> dict:
    ranking = results["ranking"]
    return {"dataset": results["dataset"]["name"], "rows": len(ranking["rows"]),
            "main_test_accuracy": [m["test_acc"] for m in results["models"] if m["set"] == "main"],
            "above": {null: [{"method": r["method"], "grouping": r["grouping"], "excess": r[f"above_{null}"],
                              "ci_low": r[f"above_{null}_ci_low"], "ci_high": r[f"above_{null}_ci_high"]}
                             for r in above(ranking, null)]
                      for null in NULL_SETS if f"above_{null}_holm" in ranking["rows"][0]}}


def grouping_verdicts(results: dict, alpha: float = 0.05) -> dict[tuple[str, str], int]:
    """(method, grouping) → +1 / −1 / 0: a super-pixel grouping's Spearman above / below pixel maps,
    resolved by Holm across the report's contrasts, or not resolved."""
    rows = [r for r in results["grouping_contrasts"] if r.get("spearman_difference_p") is not None]
    adjusted = holm([r["spearman_difference_p"] for r in rows])
    return {_unit(r): (0 if p > alpha else 1 if r["spearman_difference"] > 0 else -1) for r, p in zip(rows, adjusted)}


def compare(first: dict, second: dict) -> dict:
    a = {_unit(r): r for r in first["ranking"]["rows"]}
    b = {_unit(r): r for r in second["ranking"]["rows"]}
    shared = [unit for unit in a if unit in b]
    resolved_a = {_unit(r) for r in above(first["ranking"], "random_label")}
    resolved_b = {_unit(r) for r in above(second["ranking"], "random_label")}
    rows = [{"method": m, "grouping": g,
             "excess_first": a[(m, g)]["excess"], "ci_first": [a[(m, g)]["excess_ci_low"], a[(m, g)]["excess_ci_high"]],
             "excess_second": b[(m, g)]["excess"],
             "ci_second": [b[(m, g)]["excess_ci_low"], b[(m, g)]["excess_ci_high"]],
             "resolved_first": (m, g) in resolved_a, "resolved_second": (m, g) in resolved_b}
            for m, g in shared]
    rho = stats.spearmanr([a[u]["excess"] for u in shared], [b[u]["excess"] for u in shared]).statistic
    ga, gb = grouping_verdicts(first), grouping_verdicts(second)
    both = [u for u in ga if u in gb]
    return {"shared_rows": len(shared), "rows": rows,
            "verdicts_agree": sum(r["resolved_first"] == r["resolved_second"] for r in rows),
            "ranking_rank_correlation": float(rho),
            "grouping": {"shared": len(both),
                         "resolved_first": sum(ga[u] != 0 for u in both), "resolved_second": sum(gb[u] != 0 for u in both),
                         "same_resolved_sign": sum(ga[u] == gb[u] != 0 for u in both),
                         "opposite_resolved_sign": sum(ga[u] * gb[u] < 0 for u in both)}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="results.json of the generated-shapes report")
    parser.add_argument("second", help="results.json of the real-image report")
    parser.add_argument("--out", default="experiments/results/replication.json")
    args = parser.parse_args(argv)
    first, second = (json.loads(Path(p).read_text()) for p in (args.first, args.second))
    result = {"first": report_summary(first), "second": report_summary(second), "comparison": compare(first, second),
              "files": [args.first, args.second]}
    atomic_write_json(Path(args.out), result)
    comparison = result["comparison"]
    print(f"{result['first']['dataset']} vs {result['second']['dataset']}: {comparison['shared_rows']} shared rows, "
          f"verdicts (above random-label, Holm) agree on {comparison['verdicts_agree']}, ranking ρ = "
          f"{comparison['ranking_rank_correlation']:.2f}; grouping contrasts {comparison['grouping']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
