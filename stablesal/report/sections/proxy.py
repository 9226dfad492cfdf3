"""The "Without retraining" section: the estimate from one model's proxy variants beside the
cross-seed agreement the retrained models actually show (``results.json["proxy_estimate"]``,
written when ``[proxy] in_report = true``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures import plot_estimate_vs_measured
from ..html import Section, report_section


def _interval(value: float, low: float, high: float) -> str:
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def estimate_reading(estimate: dict) -> str:
    """What the rows support: how often the measured agreement falls inside the estimate's interval,
    the mean error, and that the measured value has an interval of its own."""
    rows = [r for r in estimate["rows"] if "measured" in r]
    refused = [r for r in estimate["rows"] if "refused" in r]
    if not rows:
        return ("An estimate needs a calibrated method × grouping that the stability study also measured; none is "
                f"here ({len(refused)} units not calibrated).")
    inside = sum(bool(r["measured_inside"]) for r in rows)
    errors = np.array([r["error"] for r in rows])
    measured_half = np.mean([(r["measured_ci_high"] - r["measured_ci_low"]) / 2 for r in rows])
    predicted_half = np.mean([r.get("predicted_half_width", (r["predicted_cross_seed_agreement_ci_high"]
                                                             - r["predicted_cross_seed_agreement_ci_low"]) / 2)
                              for r in rows])
    k = rows[0].get("measured_k")
    measured_set = estimate.get("measured_set", "main")
    which = {"control": f"the {k} control models (model 0's data split, other seeds: the calibration's truth also "
                        "varies only the seed)",
             "main": f"the {k} main models" + ("" if estimate.get("measured_varies", "seed") == "seed" else
                                               f" (they vary {estimate.get('measured_varies')}; the calibration's "
                                               "truth varies only the seed)")}[measured_set]
    proxies = ", ".join(dict.fromkeys(r["proxy"] for r in rows))
    direction = ("over-estimates" if np.all(errors > 0) else "under-estimates" if np.all(errors < 0)
                 else "errs in both directions on")
    return (f"An estimate, not a measurement: main model 0 varied by {proxies}, the variants' agreement moved by the "
            f"offset of {estimate['evidence']}. Beside it, the cross-seed Spearman this report measured on {which}. "
            f"The measured value lies inside the estimate's interval in {inside} of {len(rows)} method × grouping "
            f"× proxy rows; the estimate {direction} the measurement, by {np.mean(np.abs(errors)):.2f} on average "
            f"(largest {np.max(np.abs(errors)):.2f}). The intervals are wide on both sides (±{predicted_half:.2f} "
            f"for the estimate, ±{measured_half:.2f} for the measurement on average), so a unit inside its interval "
            "is consistent with the estimate, not a confirmation of it."
            + (f" {len(refused)} units are not calibrated and get no estimate." if refused else ""))


@report_section("proxy", order=115, stage="proxy")
def without_retraining(results: dict, out: Path) -> Section | None:
    estimate = results.get("proxy_estimate")
    if estimate is None:
        return None
    if estimate.get("refused"):
        return Section("Without retraining: an estimate from one model",
                       f"Left out: {estimate['refused'].rstrip('.')}.")
    rows = [r for r in estimate["rows"] if "measured" in r]
    table = [{"method": r["method"], "grouping": r["grouping"], "proxy": r["proxy"], "variants": r["k_variants"],
              "variants agree": _interval(r["proxy_agreement"], r["proxy_agreement_ci_low"], r["proxy_agreement_ci_high"]),
              "estimated cross-seed": _interval(r["predicted_cross_seed_agreement"],
                                                r["predicted_cross_seed_agreement_ci_low"],
                                                r["predicted_cross_seed_agreement_ci_high"]),
              "measured cross-seed": _interval(r["measured"], r["measured_ci_low"], r["measured_ci_high"]),
              "estimate − measured": r["error"], "measured inside": "yes" if r["measured_inside"] else "no"}
             for r in rows]
    figures = [(plot_estimate_vs_measured(rows, out / "figures" / "proxy_estimate"),
                "Estimated against measured cross-seed Spearman, 95 % intervals both ways; on the diagonal the "
                "estimate is right.")] if rows else []
    return Section("Without retraining: an estimate from one model", estimate_reading(estimate), figures=figures,
                   tables=[(table, "Per method × grouping and proxy: the variants' agreement, the estimate and the "
                                   "measurement on the retrained models.")] if table else [])
