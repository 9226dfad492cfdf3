"""Print compact Markdown tables of one stability report straight from its ``results.json`` (the
full results page with its readings is ``docs/results.md``, from ``analysis/results_page.py``):

    python analysis/report_tables.py reports/default/results.json

Sections: models, gradient stability per method and grouping (above the random-label and untrained
nulls, with the test–retest ceiling), the variance decomposition, main vs control vs null models, super-pixels
vs the matched grid, variance reduction against its predictions, MeGe/ReCo by the fold protocol, perturbation presets, the factor study's effects, inpainting quality and the removal methods under the
evaluation suite. Numbers only: the readings are the report page's (and docs/results.md's).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def number(value, digits: int = 3) -> str:
    """A table cell: fixed digits, a true minus sign, "–" for a missing value."""
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return "–"
    return f"{value:.{digits}f}".replace("-", "−")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def models(results: dict) -> str:
    parts = []
    for name in ("main", "control", "random_label"):
        accuracy = [m["test_acc"] for m in results["models"] if m["set"] == name]
        seconds = sum(m["seconds"] for m in results["models"] if m["set"] == name)
        if accuracy:
            parts.append(f"{name}: {len(accuracy)} models, test accuracy {100 * min(accuracy):.1f}–"
                         f"{100 * max(accuracy):.1f} %, {seconds:.0f} s of training")
    return "; ".join(parts)


def ci(row: dict, key: str, digits: int = 3) -> str:
    """``value [low, high]``, the 95 % interval the report computed; "–" when missing."""
    value = row.get(key)
    if value is None or value != value:
        return "–"
    low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    if low is None or high is None or low != low or high != high:
        return number(value, digits)
    return f"{number(value, digits)} [{number(low, digits)}, {number(high, digits)}]"


def _strictest(row: dict) -> str:
    """The key of the agreement beyond the strictest null the row has (else the raw Spearman)."""
    return next((f"spearman_above_{n}" for n in ("random_label", "bn_calibrated", "untrained")
                 if f"spearman_above_{n}" in row), "spearman")


def _main_rows(results: dict, family_filter) -> list[dict]:
    rows = [r for r in results["stability_summary"] if r["model_set"] == "main" and family_filter(r["family"])]
    return sorted(rows, key=lambda r: -(r[_strictest(r)] if r[_strictest(r)] == r[_strictest(r)] else -1e9))


def gradient_stability(results: dict) -> str:
    rows = _main_rows(results, lambda family: family != "perturbation")
    return table(
        ["method", "grouping", "Spearman above random-label", "above untrained", "Spearman", "random-label",
         "untrained", "retest", "corrected", "SSIM", "deletion AUC ↓", "µFidelity", "sanity ρ ↓"],
        [[r["method"], r["grouping"], ci(r, "spearman_above_random_label", 2), ci(r, "spearman_above_untrained", 2),
          ci(r, "spearman", 2), ci(r, "spearman_random_label", 2),
          ci(r, "spearman_untrained", 2), ci(r, "spearman_retest", 2), ci(r, "spearman_corrected", 2), ci(r, "ssim", 2),
          number(r.get("deletion_auc")), number(r.get("mu_fidelity"), 2),
          number(r.get("sanity_spearman"), 2) if r["method"] != "random" else "–"] for r in rows])


def variance_decomposition(results: dict) -> str:
    rows = [r for r in results["stability_summary"] if r["model_set"] == "main" and "share_explainer" in r]
    components = [c for c in ("explainer", "seed", "split", "models") if any(f"share_{c}" in r for r in rows)]
    return table(["method", "grouping"] + [f"{c} share" for c in components] + ["total variance"],
                 [[r["method"], r["grouping"]] + [ci(r, f"share_{c}", 2) for c in components]
                  + [number(r.get("variance_total"))] for r in rows])


def control_vs_main(results: dict, grouping: str = "pixel") -> str:
    rows = {(r["model_set"], r["method"]): r for r in results["stability_summary"] if r["grouping"] == grouping}
    methods = [m for (s, m) in rows if s == "control"]
    return table(["method", "Spearman, disjoint splits + seeds", "Spearman, same split, seeds only",
                  "Spearman, random-label", "Spearman, BN-calibrated", "Spearman, untrained"],
                 [[m, ci(rows[("main", m)], "spearman", 2), ci(rows[("control", m)], "spearman", 2),
                   ci(rows.get(("random_label", m), {}), "spearman", 2),
                   ci(rows.get(("bn_calibrated", m), {}), "spearman", 2),
                   ci(rows.get(("untrained", m), {}), "spearman", 2)] for m in methods if ("main", m) in rows])


def matched_grid(results: dict) -> str:
    rows = results["grid_contrasts"]
    return table(["method", "super-pixels", "segment px (grid)", "Δ Spearman", "Δ SSIM", "Δ top-10 %", "Δ deletion AUC",
                  "Δ relevance mass", "Δ bias"],
                 [[r["method"], r["grouping"], f"{number(r['segment_size'], 1)} ({number(r['reference_segment_size'], 1)})",
                   ci(r, "spearman_difference"), ci(r, "ssim_difference"), ci(r, "topk_intersection_difference"),
                   ci(r, "deletion_auc_difference"), ci(r, "relevance_mass_difference"), ci(r, "bias_difference")]
                  for r in rows])


def variance_reduction(results: dict) -> str:
    rows = results["variance_reduction"]
    return table(["method", "partition", "d/m", "tr(Σ)/tr(PΣ) measured", "predicted (correlation)",
                  "measured / predicted", "bias", "NSR gain (grouped method)"],
                 [[r["method"], r["partition"], number(r["mean_segment_size"], 1), ci(r, "measured", 2),
                   ci(r, "predicted", 2), ci(r, "measured_over_predicted", 2), ci(r, "bias"), ci(r, "nsr_gain", 2)]
                  for r in rows])


def perturbation_presets(results: dict) -> str:
    rows = _main_rows(results, lambda family: family == "perturbation")
    return table(["preset", "Spearman above random-label", "Spearman", "random-label", "retest", "corrected",
                  "deletion AUC ↓", "µFidelity", "sanity ρ ↓", "s per model"],
                 [[r["method"], ci(r, "spearman_above_random_label", 2), ci(r, "spearman", 2),
                   ci(r, "spearman_random_label", 2), ci(r, "spearman_retest", 2), ci(r, "spearman_corrected", 2),
                   number(r.get("deletion_auc")), number(r.get("mu_fidelity"), 2), number(r.get("sanity_spearman"), 2),
                   number(r.get("explain_seconds_per_model"), 2)] for r in rows])


def factor_effects(results: dict) -> str:
    designs = results["factor_study"]["analysis"]["designs"]
    return table(["design", "factor", "levels", "η² SRG", "η² deletion AUC", "η² insertion AUC"],
                 [[name, e["factor"], str(e["levels"]), ci(e, "eta2_srg", 2), ci(e, "eta2_deletion_auc", 2),
                   ci(e, "eta2_insertion_auc", 2)] for name, design in designs.items() for e in design["effects"]])


def mege_folds(results: dict) -> str:
    test = {(r["method"], r["grouping"]): r for r in results["stability_summary"] if r["model_set"] == "main"}
    rows = sorted(results["mege_folds"]["rows"], key=lambda r: (r["method"] == "random", -r["mege"]))
    return table(["method", "grouping", "MeGe (folds)", "above random map", "ceiling (retest)", "below ceiling",
                  "ReCo (folds)", "S= / S≠", "MeGe (test images)", "ReCo (test images)"],
                 [[r["method"], r["grouping"], ci(r, "mege", 2), ci(r, "mege_above_random", 2),
                   ci(r, "mege_retest", 2), ci(r, "mege_below_retest", 2), number(r["reco"], 2),
                   f"{r['n_same']} / {r['n_different']}",
                   number(test.get((r["method"], r["grouping"]), {}).get("mege_test"), 2),
                   number(test.get((r["method"], r["grouping"]), {}).get("reco_test"), 2)] for r in rows])


def inpainting_quality(results: dict) -> str:
    quality = results["inpainting"]["quality"]
    several = all("keep_prediction_models_mean" in q for q in quality)

    def over_models(q: dict) -> list[str]:
        if not several:
            return []
        return [f"{number(q['keep_prediction_models_mean'], 2)} ({number(q['keep_prediction_models_min'], 2)}–"
                f"{number(q['keep_prediction_models_max'], 2)})"]

    return table(["fill", "PSNR in holes (dB)", "SSIM", "kept ± 95 %", "kept, correct", "kept, wrong"]
                 + ([f"kept, mean of {quality[0]['n_models']} models (range)"] if several else [])
                 + ["kept, ring known", "ms / image"],
                 [[q["inpainter"], number(q["psnr_db"], 1), number(q["ssim"]),
                   f"{number(q['keep_prediction'], 2)} ± {number(q.get('keep_prediction_ci95'), 2)}",
                   number(q.get("keep_prediction_correct"), 2), number(q.get("keep_prediction_wrong"), 2)]
                  + over_models(q) + [number(q.get("keep_prediction_ring"), 2), number(q["ms_per_image"], 2)]
                  for q in quality])


REMOVAL_METRICS = [("deletion_auc_mean", "del. AUC mean ↓"), ("deletion_auc_inpaint", "del. AUC inpaint ↓"),
                   ("insertion_auc", "insertion ↑"), ("srg", "SRG ↑"), ("relevance_mass", "rel. mass ↑"),
                   ("iou", "IoU ↑"), ("pointing_game", "pointing ↑"), ("saliency_metric", "Dabkowski–Gal ↓"),
                   ("mu_fidelity", "µFidelity ↑"), ("inpaint_metric", "INPAINT-METRIC ↓")]


def removal_methods(results: dict) -> str:
    return table(["method"] + [label for _, label in REMOVAL_METRICS],
                 [[r["method"]] + [number(r.get(key)) for key, _ in REMOVAL_METRICS]
                  for r in results["inpainting"]["methods"]])


def robustness(results: dict) -> str:
    return table(["method", "settings", "SSIM", "Spearman", "random SSIM", "random Spearman"],
                 [[r["method"], str(r["settings"]), number(r["ssim"]), number(r["spearman"]), number(r["random_ssim"]),
                   number(r["random_spearman"])] for r in results["inpainting"]["robustness"]])


SECTIONS = {"models": models, "gradient stability": gradient_stability,
            "variance decomposition": variance_decomposition, "control vs main": control_vs_main,
            "matched grid": matched_grid, "variance reduction": variance_reduction,
            "MeGe and ReCo (fold protocol)": mege_folds, "perturbation presets": perturbation_presets,
            "factor study": factor_effects, "inpainting quality": inpainting_quality,
            "removal methods": removal_methods, "robustness across hyperparameters": robustness}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a report's results.json")
    parser.add_argument("--section", choices=list(SECTIONS), action="append",
                        help="print only these sections (repeatable)")
    args = parser.parse_args(argv)
    results = json.loads(Path(args.results).read_text())
    for name in args.section or SECTIONS:
        try:
            body = SECTIONS[name](results)
        except KeyError as missing:  # a report without that stage (e.g. inpainting disabled)
            body = f"(not in this report: {missing})"
        print(f"### {name}\n\n{body}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
