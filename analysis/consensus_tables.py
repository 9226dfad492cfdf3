"""Print the tables of a consensus experiment's results (``experiments/results/consensus.json``) as
Markdown: power and regions found per method × grouping and test, the false-discovery calibration
under every null, and the planner's predictions against held-out models.

    python analysis/consensus_tables.py experiments/results/consensus.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def interval(row: dict, key: str, digits: int = 2) -> str:
    value = row.get(key)
    if value is None:
        return ""
    low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
    if low is None or high is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def markdown(rows: list[dict]) -> str:
    if not rows:
        return "(none)"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def tables(results: dict) -> dict[str, str]:
    units = results["units"]
    power = [{"method": u["method"], "grouping": u["grouping"], "test": t["test"],
              "models": f"{t['n_models']}" + (f" vs {t['n_reference']}" if t["n_reference"] else ""),
              "regions found / image": interval(t, "significant", 1), "power": interval(t, "power"),
              "on object": interval(t, "on_object")}
             for u in units for t in u["tests"]]
    calibration = [{"method": u["method"], "grouping": u["grouping"], "test": c["test"], "null": c["null"],
                    "models": f"{c['n_models']}" + (f" vs {c['n_reference']}" if c.get("n_reference") else ""),
                    "studies": c["n_studies"], "FDR": interval(c, "fdr", 3)}
                   for u in units for c in u["calibration"]]
    planner = [{"method": v["method"], "grouping": v["grouping"], "K′": v["models"], "samples": v.get("samples") or "",
                "predicted": f"{v['predicted']:.3f}", "observed": f"{v['observed']:.3f}", "error": f"{v['error']:+.3f}",
                "without V_μ's correction": f"{v['predicted_uncorrected'] - v['observed']:+.3f}"
                if "predicted_uncorrected" in v else "",
                "noise not split": f"{v['predicted_unsplit'] - v['observed']:+.3f}" if "predicted_unsplit" in v else ""}
               for u in units for v in u["validation"]]
    sentences = "\n".join(f"- {u['sentence']}" for u in units)
    return {"power": markdown(power), "calibration": markdown(calibration), "planner": markdown(planner),
            "sentences": sentences}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    args = parser.parse_args(argv)
    results = json.loads(Path(args.results).read_text())
    models = results.get("models", [])
    if models:
        accuracies = [m["test_acc"] for m in models]
        print(f"{len(models)} models, test accuracy {min(accuracies):.1%}–{max(accuracies):.1%}; "
              f"{results.get('seconds', float('nan')):.0f} s in all\n")
    for name, text in tables(results).items():
        print(f"## {name}\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
