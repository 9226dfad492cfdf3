"""The README's tables of the proxy calibrations, printed as Markdown from the committed result
files (``experiments/results/proxy*.json``); ``tests/test_readme.py`` checks the README holds them.

    python analysis/proxy_tables.py
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results"
# setting label → (calibration file, worth file)
SETTINGS = {"shapes / small_cnn": ("proxy.json", "proxy_worth_shapes.json"),
            "digits / small_cnn": ("proxy_digits.json", "proxy_worth_digits.json"),
            "photographs / small_cnn": ("proxy_lfw_small_cnn.json", "proxy_worth_lfw_small_cnn.json"),
            "photographs / resnet20": ("proxy_lfw_resnet20.json", "proxy_worth_lfw_resnet20.json")}
MAX_COST = 0.2


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def _worth(worth: dict | None, proxy: str) -> str:
    """The median worth over method × grouping units and its range (1.0 also where the variants'
    mean map is below one retrained model's, r_proxy < r(1))."""
    if worth is None:
        return "not run"
    values = [row["worth"] for row in worth["rows"] if row["proxy"] == proxy]
    if not values:
        return "not run"
    return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def _percent(share: float) -> str:
    return f"{100 * share:.1f} %" if share < 0.01 else f"{100 * share:.0f} %"


def above_parent(worth: dict | None, proxy: str) -> str:
    """How many method × grouping units the proxy's worth interval lies wholly above the parent's
    worth (model 0 explained k times, the control), of the units both have."""
    if worth is None:
        return "not run"
    parent = {(r["method"], r["grouping"]): r["worth"] for r in worth["rows"] if r["proxy"] == "parent"}
    rows = [r for r in worth["rows"] if r["proxy"] == proxy and (r["method"], r["grouping"]) in parent]
    if not rows or proxy == "parent":
        return "–"
    return f"{sum(r['worth_ci_low'] > parent[(r['method'], r['grouping'])] for r in rows)} of {len(rows)}"


def calibration_table() -> str:
    """Per setting and proxy (at most 20 % of a training run, or spawned): the cost, the mean
    |proxy − truth| over method × grouping units, how many units meet each target, and the worth."""
    lines = ["| setting | K_true | proxy | cost (share of a run) | mean abs(proxy − truth) | within ±0.05 | "
             "rank ρ ≥ 0.7 | worth in retrained models, median (range) | worth above the parent's |",
             "|---|---:|---|---:|---:|---:|---:|---|---:|"]
    for label, (calibration_file, worth_file) in SETTINGS.items():
        calibration, worth = _load(calibration_file), _load(worth_file)
        if calibration is None:
            continue
        for row in calibration["closest_any_cost"]:
            if row["cost_share"] > MAX_COST and not row["proxy"].startswith("spawn"):
                continue
            lines.append(f"| {label} | {calibration['k_truth']} | `{row['proxy']}` | {_percent(row['cost_share'])} | "
                         f"{row['mean_abs_difference']:.2f} | {row['within_tolerance']} of {row['units']} | "
                         f"{row['rank_target_met']} of {row['units']} | {_worth(worth, row['proxy'])} | "
                         f"{above_parent(worth, row['proxy'])} |")
        # the control: model 0 itself explained k times, what averaging explainer draws alone is worth
        lines.append(f"| {label} | {calibration['k_truth']} | the parent, explained "
                     f"{calibration['config']['proxy']['k']} times (control) | 0 % | – | – | – | "
                     f"{_worth(worth, 'parent')} | – |")
    return "\n".join(lines)


def transfer_table() -> str:
    """Per proxy within the cost and held-out setting: the corrected and uncorrected mean |error|,
    and how many units meet each target."""
    transfer = _load("proxy_transfer.json")
    lines = ["| proxy | held out | mean abs(error), corrected | uncorrected | within ±0.05 | rank ρ ≥ 0.7 |",
             "|---|---|---:|---:|---:|---:|"]
    for row in sorted(transfer["summary"], key=lambda r: (r["proxy"], r["held_out"])):
        if row["cost_share"] is None or row["cost_share"] > MAX_COST:
            continue
        lines.append(f"| `{row['proxy']}` | {row['held_out']} | {row['mean_abs_error']:.2f} | "
                     f"{row['mean_abs_uncorrected_error']:.2f} | {row['within_tolerance']} of {row['units']} | "
                     f"{row['rank_target_met']} of {row['units']} |")
    return "\n".join(lines)


def main() -> int:
    print(calibration_table())
    print()
    print(transfer_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
