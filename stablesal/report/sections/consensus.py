"""The report's consensus and planner sections: pure functions of the consensus stage's units
(``results["consensus"]``), so every sentence is computed from numbers with their intervals.
Figures are drawn from the units and the maps' ``.npz`` files in the report folder."""

from __future__ import annotations

from pathlib import Path

from ..html import Section, report_section
from ..figures import plot_consensus
from ..figures import plot_reliability


def fmt(row: dict, key: str, digits: int = 2) -> str:
    """``"0.42 [0.30, 0.55]"`` for ``row[key]`` and its interval (``key_low``, ``key_high``, the
    consensus stage's names); ``"–"`` when missing."""
    value = row.get(key)
    if value is None or value != value:
        return "–"
    low, high = row.get(f"{key}_low"), row.get(f"{key}_high")
    if low is None or high is None or low != low or high != high:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"

TWO_SAMPLE = "trained vs untrained"


def _label(unit: dict) -> str:
    return f"{unit['method']}/{unit['grouping']}"


def _test(unit: dict, name: str) -> dict | None:
    return next((row for row in unit["tests"] if row["test"] == name), None)


def _calibration(unit: dict, null: str, test: str) -> dict | None:
    return next((row for row in unit["calibration"] if row["null"] == null and row["test"] == test), None)


def calibration_reading(units: list[dict]) -> str:
    """Whether the observed false-discovery rate stays at or below q under the nulls, per test."""
    parts = []
    for null, test, what in (("permuted", "rank-sum", "the rank-sum test with every model's map permuted across "
                              "regions"),
                             ("permuted", TWO_SAMPLE, "the trained-vs-untrained test with every map permuted"),
                             ("pool", TWO_SAMPLE, "the trained-vs-untrained test with both groups drawn from the "
                              "untrained networks")):
        rows = [row for row in (_calibration(unit, null, test) for unit in units) if row is not None]
        if not rows:
            continue
        q = rows[0]["q"]
        worst = max(rows, key=lambda row: row["fdr_high"])
        held = sum(row["fdr_high"] <= q + 0.02 for row in rows)
        parts.append(f"{what}: observed FDR {min(r['fdr'] for r in rows):.3f}–{max(r['fdr'] for r in rows):.3f} "
                     f"over {len(rows)} method × grouping units (largest upper 95 % end {worst['fdr_high']:.3f}, "
                     f"{_label(next(u for u in units if _calibration(u, null, test) is worst))}); "
                     f"{held} of {len(rows)} have the upper end within q + 0.02 = {q + 0.02:.2f}")
    pool = [row for row in (_calibration(unit, "pool", "rank-sum") for unit in units) if row is not None]
    if pool:
        parts.append(
            f"untrained networks alone: the rank-sum test finds regions in a share {min(r['fdr'] for r in pool):.2f}–"
            f"{max(r['fdr'] for r in pool):.2f} of images (every such discovery is structure the architecture puts "
            "in the maps without training: the rank-sum consensus says which regions the models agree on, not which "
            "regions training taught them)")
    return ("Calibration (simulated studies under nulls where no region is consistent; with ranks, the permuted "
            "null does not depend on the maps, so it checks the tests and Benjamini–Hochberg, and only the "
            "untrained networks check the data): " + "; ".join(parts) + "." if parts else "")


def power_reading(units: list[dict]) -> str:
    """Power on the object masks per test, and what the two-sample test can reach with these K."""
    parts, reach = [], []
    for name in ("rank-sum", TWO_SAMPLE):
        rows = [(unit, _test(unit, name)) for unit in units if _test(unit, name) is not None]
        rows = [(unit, row) for unit, row in rows if "power" in row]
        if not rows:
            continue
        best_unit, best = max(rows, key=lambda pair: pair[1]["power"])
        parts.append(f"{name}: the largest share of object regions found is {fmt(best, 'power')} "
                     f"({_label(best_unit)}), with {fmt(best, 'on_object')} of its discoveries on the object")
    two_sample = [row for unit in units for row in unit["tests"] if row["test"] == TWO_SAMPLE]
    blocked = [row for row in two_sample if not row["can_discover"]]
    limited = [row for row in two_sample if row["can_discover"] and not row["can_find_lone_region"]]
    for rows, what in ((blocked, "it cannot find any region (BH needs a p-value at or below q even when every "
                                 "region is extreme)"),
                       (limited, "it finds regions only when many are consistent at once; a lone consistent "
                                 "region needs p ≤ q/R")):
        if not rows:
            continue
        row = rows[0]
        needs = (f"about {row['models_for_lone_region']} of each would let it find a lone region"
                 if row.get("models_for_lone_region") else
                 f"at least {row['permutations_for_lone_region']} permutations would let it find a lone region")
        reach.append(f"with {row['n_models']} trained and {row['n_reference']} untrained models the permutation "
                     f"test's smallest p-value is {row['smallest_p']:.2g} (q/R = {row['lone_region_threshold']:.2g}), "
                     f"so {what}; {needs}")
    text = ("Power (share of the regions lying at least half on the object mask that are found, mean over images "
            "[95 % t interval]): " + "; ".join(parts) + ". " if parts else "")
    return text + ("What these models can find: " + "; ".join(reach) + "." if reach else "")


def planner_reading(units: list[dict]) -> str:
    """The planner's sentences and, where held-out models exist, its errors."""
    validated = [row for unit in units for row in unit["validation"]]
    extrapolated = [row for row in validated if row.get("samples") not in (None, row.get("pilot_samples"))]
    text = " ".join(unit["sentence"] + "." for unit in units[:6]) + (" …" if len(units) > 6 else "")
    if validated:
        within = sorted({f"{r['method']}/{r['grouping']}" for r in validated if abs(r["error"]) <= 0.05})
        worst = max(validated, key=lambda r: abs(r["error"]))
        text += (f" Checked against held-out models ({validated[0]['held_out']} models, random disjoint groups): "
                 f"{sum(abs(r['error']) <= 0.05 for r in validated)} of {len(validated)} predictions are within "
                 f"±0.05 of the observed reliability ({len(within)} method × grouping units); the largest error is "
                 f"{worst['error']:+.3f} ({worst['method']}/{worst['grouping']} at K′ = {worst['models']}).")
        if extrapolated:
            text += (f" {len(extrapolated)} of them are at another sample count than the pilot's (the held-out models "
                     f"explained again), which checks the 1/n scaling of the explainer's noise.")
    else:
        text += (" No held-out models were left after the pilot and the consensus models, so these predictions are "
                 "not checked here (experiments/consensus.toml checks them on 16 held-out models).")
    return text


def consensus_section(consensus: dict, out: Path) -> Section:
    """Consensus maps, their calibration and power (figures first, then short tables)."""
    units = consensus["units"]
    maps_dir = out / "consensus"
    figures = []
    # the overlays need the maps' .npz files: a folder without them (a results file alone) gets none
    shown = [unit for unit in units if unit.get("files")
             and all((maps_dir / name).exists() for name in unit["files"])][:2]
    for unit in shown:
        figures.append((plot_consensus(unit, maps_dir, out / "figures" / f"consensus_{unit['method']}_"
                                       f"{unit['grouping']}"),
                        f"{_label(unit)}: single-model grey maps and the {unit['n_models']}-model mean, with the "
                        "regions each test finds outlined in green."))
    n_images = consensus.get("n_images", units[0]["n_images"] if units else 0)
    reading = (f"Per region (super-pixels, or blocks of a grid for pixel maps) of each of {n_images} test images: "
               "is it ranked consistently high by the retrained models? Rank-sum: each model ranks the image's "
               "regions, and the sum of a region's ranks is compared with its exact distribution when every rank is "
               "uniform. Trained vs untrained: the trained models' ranks against untrained networks', by permuting "
               "which models are called trained. Regions are found with Benjamini–Hochberg at "
               f"q = {consensus['settings']['q']:g} over each image's regions. " + calibration_reading(units) + " "
               + power_reading(units))
    table = [{"method": unit["method"], "grouping": unit["grouping"], "test": row["test"],
              "models": row["n_models"], "untrained": row["n_reference"] or "",
              "regions found / image": fmt(row, "significant"), "area": fmt(row, "area"),
              "power": fmt(row, "power") if "power" in row else "",
              "on object": fmt(row, "on_object") if "on_object" in row else "",
              "smallest p": f"{row['smallest_p']:.2g}"}
             for unit in units for row in unit["tests"]]
    calibration = [{"method": unit["method"], "grouping": unit["grouping"], "null": row["null"], "test": row["test"],
                    "studies": row["n_studies"], "FDR": fmt(row, "fdr", 3)} for unit in units
                   for row in unit["calibration"]]
    return Section("Consensus maps: which regions the models agree on", reading, figures=figures, tables=[
        (table, "Regions found per image and the share of the image they cover, power on the object masks, and the "
                "smallest p-value the test can give with these models (mean [95 % t interval over images])."),
        (calibration, "Observed false-discovery rate of simulated studies (permuted: every map shuffled across "
                      "regions; pool: models drawn from the untrained networks), t interval over studies.")])


def planner_section(consensus: dict, out: Path) -> Section:
    """Reliability of the K′-model mean map against K′, predicted from the pilot, with checks."""
    units = consensus["units"]
    settings = consensus["settings"]
    reading = (f"From a pilot of {settings['pilot_models']} models (random explainers run twice), the reliability "
               "of the mean map of K′ models (its correlation over pixels with the mean of infinitely many) is "
               "predicted from three variance terms: the mean map's spatial variance, the model-to-model variance "
               "and the explainer's own noise, which falls with the sample count (Spearman–Brown). "
               + planner_reading(units))
    table = [{"method": unit["method"], "grouping": unit["grouping"],
              "models": unit["recommendation"]["models"] if unit["recommendation"]["models"] is not None else "—",
              "samples": unit["recommendation"]["samples"] if unit["recommendation"]["samples"] is not None else "",
              "ρ(4)": next((f"{r['reliability']:.3f}" for r in unit["curve"] if r["models"] == 4), ""),
              "ρ(8)": next((f"{r['reliability']:.3f}" for r in unit["curve"] if r["models"] == 8), ""),
              "spatial var": f"{unit['components']['V_mu']:.4f}", "model var": f"{unit['components']['E_m']:.4f}",
              "explainer var": f"{unit['components']['E_s']:.4f}"} for unit in units]
    validation = [{"method": r["method"], "grouping": r["grouping"], "K′": r["models"], "samples": r.get("samples") or "",
                   "predicted": f"{r['predicted']:.3f}", "observed": f"{r['observed']:.3f}",
                   "error": f"{r['error']:+.3f}"} for unit in units for row in [unit] for r in row["validation"]]
    tables = [(table, f"Models (and samples, for random explainers, at most {settings['max_samples']}) for "
                      f"reliability {settings['target']:g}; predicted reliability at 4 and 8 models; the pilot's "
                      "variance terms (grey maps, centred).")]
    if validation:
        tables.append((validation, "Predicted against observed reliability on held-out models."))
    return Section("Planner: how many models and samples", reading,
                   figures=[(plot_reliability(units, out / "figures" / "planner_reliability"),
                             "Predicted reliability against the number of models; points: observed on held-out "
                             "models.")], tables=tables)


@report_section("consensus", order=140, stage="consensus")
def _consensus(results: dict, out: Path) -> Section | list[Section] | None:
    if results.get("consensus") is not None:
        return [consensus_section(results["consensus"], out), planner_section(results["consensus"], out)]
    if results["config"].get("consensus", {}).get("enabled"):
        return Section("Consensus maps", "Left out: the consensus map and the planner need at least 3 main models "
                       "([models] k).")
    return None
