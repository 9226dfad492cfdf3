"""The page's first section: the answer. Which method × grouping to trust on these models, how far
its agreement across retrained models rises above the strictest null (with its interval, as a
forest plot), which differences are resolved, and how many models a reliable mean map needs; each
statement computed from the ranking's paired intervals and Holm-adjusted p-values
(:func:`stablesal.studies.stability.statistics.ranking_rows`) and the planner's plans.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ...core.intervals import coverage_note
from ...core.settings import NULL_NAMES
from ..figures import save_figure
from ..html import Section, report_section

SHOWN = 8  # rows of the verdict's table (the forest plot shows every row)


def _interval(row: dict, key: str) -> str:
    return f"{row[key]:+.2f} [{row[f'{key}_ci_low']:+.2f}, {row[f'{key}_ci_high']:+.2f}]".replace("-", "−")


def resolved_rows(ranking: dict) -> list[dict]:
    """The rows whose excess over the ranking's null is above 0 at family-wise ``alpha`` (Holm)."""
    return [r for r in ranking["rows"] if r["excess_holm"] <= ranking["alpha"] and r["excess"] > 0]


def plot_forest(ranking: dict, path_stem) -> Path:
    """Every method × grouping's cross-seed Spearman above the ranking's null, with its 95 % design
    interval, best first; filled: resolved above 0 at family-wise 5 % (Holm)."""
    rows = ranking["rows"]
    resolved = {(r["method"], r["grouping"]) for r in resolved_rows(ranking)}
    fig, axis = plt.subplots(figsize=(6.4, 0.22 * len(rows) + 1.2))
    positions = np.arange(len(rows))[::-1]
    for y, row in zip(positions, rows):
        filled = (row["method"], row["grouping"]) in resolved
        axis.plot([row["excess_ci_low"], row["excess_ci_high"]], [y, y], color="tab:blue", linewidth=1.2)
        axis.plot(row["excess"], y, "o", color="tab:blue", markerfacecolor="tab:blue" if filled else "white",
                  markersize=4)
    axis.axvline(0, color="black", linewidth=0.6)
    axis.set_yticks(positions, [f"{r['method']} / {r['grouping']}" for r in rows], fontsize=6)
    axis.set_xlabel(f"cross-seed Spearman above the {NULL_NAMES.get(ranking['null'], ranking['null'])} null "
                    "(95 % design interval)", fontsize=8)
    axis.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    data = [{"method": r["method"], "grouping": r["grouping"], "excess": r["excess"], "excess_ci_low": r["excess_ci_low"],
             "excess_ci_high": r["excess_ci_high"], "excess_holm": r["excess_holm"],
             "resolved": (r["method"], r["grouping"]) in resolved} for r in rows]
    return save_figure(fig, path_stem, data=data)


def _plans(results: dict) -> dict[tuple[str, str], dict]:
    consensus = results.get("consensus") or {}
    return {(u["method"], u["grouping"]): u for u in consensus.get("units", []) if u.get("sentence")}


def models_reading(results: dict, rows: list[dict]) -> str:
    """What the planner says about the shown rows' model counts, or that it did not run."""
    plans = _plans(results)
    planned = [plans[(r["method"], r["grouping"])] for r in rows if (r["method"], r["grouping"]) in plans]
    scope = "these rows"
    if not planned and plans:  # the rows shown are not planned: what the planner says of the units it planned
        planned, scope = list(plans.values()), "the units it planned (the consensus methods and groupings)"
    if not planned:
        return "How many models: the planner did not run (it runs with the consensus stage)."
    out_of_reach = [u for u in planned if "out of reach" in u["sentence"]]
    refused = [u for u in planned if (u.get("plan") or {}).get("refused")]
    reached = [u for u in planned if u not in out_of_reach and u not in refused]
    parts = []
    if reached:
        parts += [u["sentence"] for u in reached[:2]]
    if out_of_reach:
        lows = [u["plan"]["models_low"] for u in out_of_reach if (u.get("plan") or {}).get("models_low") is not None]
        parts.append(f"for {len(out_of_reach)} of the {len(planned)} planned units a reliable mean map beyond the null is "
                     "out of reach (more than 10 000 models)" + (f"; the bootstrap's lower ends are {min(lows)}–"
                                                                f"{max(lows)} models" if lows else ""))
    if refused:
        parts.append(f"for {len(refused)} the planner refuses: the mean map shares nothing above the null")
    return f"How many models (the planner, target ρ = 0.9 beyond the null, on {scope}): " + "; ".join(parts) + "."


def verdict_reading(results: dict) -> str:
    ranking = results["ranking"]
    rows, alpha = ranking["rows"], ranking["alpha"]
    null = NULL_NAMES.get(ranking["null"], ranking["null"])
    resolved = resolved_rows(ranking)
    raw = sum(1 for r in rows if r["excess_ci_low"] > 0)
    first = rows[0]
    others = {name: sum(1 for r in rows if r.get(f"above_{name}_holm", 1) <= alpha and r.get(f"above_{name}", 0) > 0)
              for name in NULL_NAMES if name != ranking["null"] and f"above_{name}_holm" in first}
    weaker = ", ".join(f"{count} of {len(rows)} above the {NULL_NAMES[name]} null" for name, count in others.items())
    n_models = next((r["n_models"] for r in results.get("stability_summary", []) if r.get("model_set") == "main"),
                    None)
    k = f"K = {n_models} models" if n_models else "these models"
    if not resolved:
        positive = sum(1 for r in rows if r["excess"] > 0)
        text = (f"Which method to trust on these models: not established with {k}. No single method × grouping is "
                f"resolved above what {null} networks (the same recipe on permuted labels) share, at a family-wise "
                f"{100 * alpha:.0f} % (Holm's adjustment across the {len(rows)} rows). {positive} of the {len(rows)} "
                f"excesses are positive and {raw} raw 95 % intervals exclude 0, but every row is measured against the "
                f"same {null} networks, so they are not {raw} independent findings: the data do not rule out "
                f"agreement beyond the null, and they cannot attribute it to a method. The largest excess, "
                f"{first['method']} / {first['grouping']} at {_interval(first, 'excess')}, is not evidence that it is "
                f"more stable than the others; the ranking below orders point estimates only."
                + (f" Against weaker nulls: {weaker}." if weaker else ""))
    else:
        best = resolved[0]
        text = (f"Which method to trust on these models: {best['method']} / {best['grouping']}, whose cross-seed "
                f"Spearman lies {_interval(best, 'excess')} above {null} networks (Holm p = {best['excess_holm']:.3f}); "
                f"{len(resolved)} of {len(rows)} methods × groupings are resolved above that null. Whether it is more "
                "stable than the other resolved rows is not tested here: that needs the paired difference of the two "
                "rows, which the headline's table gives.")
    shown = resolved[:3] if resolved else rows[:3]
    return " ".join([text, models_reading(results, shown)] + ([coverage_note(n_models)] if n_models else []))


def verdict_table(results: dict) -> list[dict]:
    ranking = results["ranking"]
    plans = _plans(results)
    resolved = {(r["method"], r["grouping"]) for r in resolved_rows(ranking)}
    null = NULL_NAMES.get(ranking["null"], ranking["null"])
    table = []
    for row in ranking["rows"][:SHOWN]:
        plan = (plans.get((row["method"], row["grouping"])) or {}).get("plan") or {}
        models = ("refused" if plan.get("refused") else
                  f"≥ {plan['models_low']}" if plan.get("models_low") is not None and plan.get("models_high") is None
                  else f"{plan['models_low']}–{plan['models_high']}" if plan.get("models_low") is not None else "")
        table.append({"method": row["method"], "grouping": row["grouping"],
                      f"Spearman above {null}": _interval(row, "excess"), "Holm p": f"{row['excess_holm']:.3f}",
                      "resolved": "yes" if (row["method"], row["grouping"]) in resolved else "no",
                      "models for ρ = 0.9 (bootstrap interval)": models})
    return table


@report_section("verdict", order=8, stage="stability")
def _verdict(results: dict, out: Path) -> Section | None:
    ranking = results.get("ranking")
    if not ranking or not ranking.get("rows") or "excess_holm" not in ranking["rows"][0]:
        return None
    null = NULL_NAMES.get(ranking["null"], ranking["null"])
    return Section(
        "Verdict: which method, how stable beyond the null, how many models", verdict_reading(results),
        figures=[(plot_forest(ranking, out / "figures" / "verdict_forest"),
                  f"Cross-seed Spearman of every method × grouping above the {null} null, 95 % design intervals over "
                  "images and models; filled: above 0 at family-wise 5 % (Holm).")],
        tables=[(verdict_table(results), f"The first {SHOWN} rows of the ranking, with the planner's model count "
                                         "where it planned the unit.")])
