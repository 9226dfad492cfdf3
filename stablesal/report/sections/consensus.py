"""The report's consensus and planner sections: pure functions of the consensus stage's units
(``results["consensus"]``), so every sentence is computed from numbers with their intervals.
Figures are drawn from the units and the maps' ``.npz`` files in the report folder.

Two tests, two readings: the trained-vs-reference permutation test reads as *learning beyond the
reference null* (random-label, BN-calibrated or untrained networks) and leads; the rank-sum test
reads as *agreement among the trained models* (untrained networks agree too), is labelled so and
never headlines. Units written before the null families (``"trained vs untrained"`` and no
``reads``, ``reference`` or ``calibration_skipped``) still render: what is missing is derived from
the test names and the rows' design."""

from __future__ import annotations

import math
from pathlib import Path

from ..html import Section, report_section
from ..figures import plot_consensus
from ..figures import plot_reliability
from ...core.settings import NULL_NAMES
from ...studies.consensus.run import reference_models_needed


def in_words(text: str) -> str:
    """Prose with the null families' identifiers (``random_label``) as the page names them
    (``random-label``): results keep identifiers, readers get words."""
    for key, name in NULL_NAMES.items():
        text = text.replace(key, name)
    return text


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


RANK_SUM = "rank-sum"
TWO_SAMPLE = "trained vs untrained"  # the two-sample test's name when the reference is untrained networks


def _label(unit: dict) -> str:
    return f"{unit['method']}/{unit['grouping']}"


def _test(unit: dict, name: str) -> dict | None:
    return next((row for row in unit["tests"] if row["test"] == name), None)


def _two_sample(unit: dict) -> dict | None:
    """The unit's trained-vs-reference row (whatever its reference), or None."""
    return next((row for row in unit["tests"] if row["test"] != RANK_SUM), None)


def reference_of(unit: dict) -> str:
    """The unit's reference set: its ``reference``, else read from the two-sample test's name."""
    if unit.get("reference"):
        return unit["reference"]
    row = _two_sample(unit)
    return row["test"].removeprefix("trained vs ").strip() if row is not None else "untrained"


def reads(row: dict) -> str:
    """What a test row reads as: ``"agreement"`` (rank-sum) or ``"learning beyond <reference>"``."""
    if row.get("reads"):
        return row["reads"]
    if row["test"] == RANK_SUM:
        return "agreement"
    return f"learning beyond {row.get('reference') or row['test'].removeprefix('trained vs ').strip()}"


def _calibration(unit: dict, null: str, test: str) -> dict | None:
    return next((row for row in unit["calibration"] if row["null"] == null and row["test"] == test), None)


def _degenerate_pool(row: dict) -> bool:
    """A pool study that can draw only one set of models (results before the pool check): the pool
    is no larger than the models each study draws."""
    return row["null"] == "pool" and row.get("pool") is not None and \
        row["pool"] <= row.get("n_models", 0) + (row.get("n_reference") or 0)


def skipped_calibrations(unit: dict) -> list[dict]:
    """The unit's calibrations that cannot run, each with its reason: its ``calibration_skipped``,
    and for older units the pool rows that drew all the pool (one study repeated)."""
    skipped = list(unit.get("calibration_skipped", []))
    for row in unit["calibration"]:
        if _degenerate_pool(row):
            skipped.append({"null": "pool", "test": row["test"], "pool": row["pool"], "n_models": row["n_models"],
                            "reason": f"the pool holds {row['pool']} models and each study draws "
                                      f"{row['n_models'] + (row.get('n_reference') or 0)}: every study draws the same "
                                      f"models (one study repeated {row.get('n_studies', '')} times), so its "
                                      f"{row['fdr']:.3f} is one study, not a rate"})
    return skipped


def calibration_reading(units: list[dict]) -> str:
    """Whether the observed false-discovery rate stays at or below q under the nulls, per test; and
    which pool calibrations could not run, and why."""
    parts = []
    reference = reference_of(units[0]) if units else "untrained"
    two_sample = [name for name in dict.fromkeys(row["test"] for unit in units for row in unit["tests"])
                  if name != RANK_SUM]
    checks = [("permuted", RANK_SUM, "the rank-sum test (agreement) with every model's map permuted across regions")]
    for name in two_sample:
        ref = name.removeprefix("trained vs ").strip()
        checks += [("permuted", name, f"the {name} test with every map permuted"),
                   ("pool", name, f"the {name} test with both groups drawn from the {ref} models")]
    for null, test, what in checks:
        rows = [row for row in (_calibration(unit, null, test) for unit in units)
                if row is not None and not _degenerate_pool(row)]
        if not rows:
            continue
        q = rows[0]["q"]
        worst = max(rows, key=lambda row: row["fdr_high"])
        held = sum(row["fdr_high"] <= q + 0.02 for row in rows)
        parts.append(f"{what}: observed FDR {min(r['fdr'] for r in rows):.3f}–{max(r['fdr'] for r in rows):.3f} "
                     f"over {len(rows)} method × grouping units (largest upper 95 % end {worst['fdr_high']:.3f}, "
                     f"{_label(next(u for u in units if _calibration(u, null, test) is worst))}); "
                     f"{held} of {len(rows)} have the upper end within q + 0.02 = {q + 0.02:.2f}")
    pool = [row for row in (_calibration(unit, "pool", RANK_SUM) for unit in units)
            if row is not None and not _degenerate_pool(row)]
    if pool:
        ref = pool[0].get("reference") or reference
        parts.append(
            f"{ref} models alone: the rank-sum test finds regions in a share {min(r['fdr'] for r in pool):.2f}–"
            f"{max(r['fdr'] for r in pool):.2f} of images (every such discovery is structure that models which "
            "learned nothing about the classes put in their maps: the rank-sum consensus says which regions the "
            "models agree on, not which regions training taught them)")
    skipped = [(unit, row) for unit in units for row in skipped_calibrations(unit)]
    if skipped:
        unit, row = skipped[0]
        tests = sorted({row["test"] for _, row in skipped})
        parts.append(f"not run in {len({_label(u) for u, _ in skipped})} of {len(units)} units ("
                     + ", ".join(f"pool, {test}" for test in tests) + f"): {row['reason']} ({_label(unit)})")
    return ("Calibration (simulated studies under nulls where no region is consistent; with ranks, the permuted "
            "null does not depend on the maps, so it checks the tests and Benjamini–Hochberg, and only the "
            "pools of null models check the data): " + "; ".join(parts) + "." if parts else "")


def _needed(row: dict, key: str, threshold: float, n_permutations: int | None) -> int | None:
    """``row[key]`` (the stage's count of reference models), or computed for older rows."""
    if key in row:
        return row[key]
    if n_permutations is None:
        return None
    return reference_models_needed(row["n_models"], threshold, n_permutations)


def reachability_warning(units: list[dict], n_permutations: int | None = None) -> str:
    """A warning when the trained-vs-reference test can find no region with this design (its
    smallest p-value is above q, so BH rejects nothing however extreme every region is), or no
    lone region (above q/R): how many reference models, beside the unit's K trained ones, would
    make a region reachable. Empty when every unit can find a lone region."""
    rows = [(unit, _two_sample(unit)) for unit in units if _two_sample(unit) is not None]
    blocked = [(unit, row) for unit, row in rows if not row["can_discover"]]
    limited = [(unit, row) for unit, row in rows if row["can_discover"] and not row["can_find_lone_region"]]
    if not blocked and not limited:
        return ""
    unit, row = (blocked or limited)[0]
    reference = row.get("reference") or reference_of(unit)
    q = row.get("q", 0.05)
    family = max(1, round(q / row["lone_region_threshold"]))
    any_region = _needed(row, "reference_for_discovery", q, n_permutations) if blocked else None
    lone = _needed(row, "reference_for_lone_region", row["lone_region_threshold"], n_permutations)
    what = (f"no region can be found in {len(blocked)} of {len(rows)} units" if blocked else
            f"no lone consistent region can be found in {len(limited)} of {len(rows)} units (only many at once)")
    relabellings = math.comb(row["n_models"] + row["n_reference"], row["n_models"])
    text = (f"Warning: with this design {what}: with {row['n_models']} trained and {row['n_reference']} "
            f"{reference} models the {row['test']} test's smallest p-value is {row['smallest_p']:.2g} "
            f"(it depends only on the C(K + R, K) = {relabellings} relabellings of the K + R models and the "
            f"permutation count), while Benjamini–Hochberg at q = {q:g} over {family} regions needs at most {q:g} to "
            f"find any region and {row['lone_region_threshold']:.2g} to find a lone one")
    fixes = []
    if any_region is not None:
        fixes.append(f"{any_region} {reference} models would make a region reachable")
    if lone is not None:
        fixes.append(f"{lone} {reference} models would make a lone region reachable")
    if fixes:
        text += f". Beside these {row['n_models']} trained models, " + " and ".join(fixes)
    else:
        text += ". More permutations are needed, not more models"
    return text + (". Untrained and random-label references cost no labels (untrained networks no training; "
                   "random-label models a training run each on permuted labels), so they can be many.")


def power_reading(units: list[dict]) -> str:
    """Power on the object masks per test, the trained-vs-reference test first (learning beyond
    the null) and the rank-sum test labelled as agreement; and what the two-sample test can reach
    with these K."""
    parts, reach = [], []
    names = [name for name in dict.fromkeys(row["test"] for unit in units for row in unit["tests"])
             if name != RANK_SUM] + [RANK_SUM]
    for name in names:
        rows = [(unit, _test(unit, name)) for unit in units if _test(unit, name) is not None]
        rows = [(unit, row) for unit, row in rows if "power" in row]
        if not rows:
            continue
        best_unit, best = max(rows, key=lambda pair: pair[1]["power"])
        label = (f"{name} (agreement among the trained models, not evidence of learning)" if name == RANK_SUM else
                 f"{name} ({reads(best)})")
        parts.append(f"{label}: the largest share of object regions found is {fmt(best, 'power')} "
                     f"({_label(best_unit)}), with {fmt(best, 'on_object')} of its discoveries on the object")
    two_sample = [row for unit in units for row in unit["tests"] if row["test"] != RANK_SUM]
    blocked = [row for row in two_sample if not row["can_discover"]]
    limited = [row for row in two_sample if row["can_discover"] and not row["can_find_lone_region"]]
    for rows, what in ((blocked, "it cannot find any region (BH needs a p-value at or below q even when every "
                                 "region is extreme)"),
                       (limited, "it finds regions only when many are consistent at once; a lone consistent "
                                 "region needs p ≤ q/R")):
        if not rows:
            continue
        row = rows[0]
        reference = row.get("reference") or row["test"].removeprefix("trained vs ").strip()
        needs = (f"about {row['models_for_lone_region']} of each would let it find a lone region"
                 if row.get("models_for_lone_region") else
                 f"at least {row['permutations_for_lone_region']} permutations would let it find a lone region")
        reach.append(f"with {row['n_models']} trained and {row['n_reference']} {reference} models the permutation "
                     f"test's smallest p-value is {row['smallest_p']:.2g} (q/R = {row['lone_region_threshold']:.2g}), "
                     f"so {what}; {needs}")
    text = ("Power (share of the regions lying at least half on the object mask that are found, mean over images "
            "[95 % t interval]): " + "; ".join(parts) + ". " if parts else "")
    return text + ("What these models can find: " + "; ".join(reach) + "." if reach else "")


def planner_reading(units: list[dict]) -> str:
    """The planner's sentences (what it predicts, its interval, or why no plan) and, where
    held-out models exist, its errors."""
    validated = [row for unit in units for row in unit["validation"]]
    extrapolated = [row for row in validated if row.get("samples") not in (None, row.get("pilot_samples"))]
    text = " ".join(unit["sentence"] + "." for unit in units[:6]) + (" …" if len(units) > 6 else "")
    refused = [unit for unit in units if (unit.get("plan") or {}).get("refused")]
    if refused:
        text += (f" No plan for {len(refused)} of {len(units)} units: their shared component is not above the "
                 f"{refused[0]['plan']['null'] or 'noise'}" + (" null" if refused[0]["plan"]["null"] else "") +
                 f" ({', '.join(_label(unit) for unit in refused[:6])}" + (", …" if len(refused) > 6 else "") + ").")
    if validated:
        within = sorted({f"{r['method']}/{r['grouping']}" for r in validated if abs(r["error"]) <= 0.05})
        worst = max(validated, key=lambda r: abs(r["error"]))
        text += (f" Checked against held-out models ({validated[0]['held_out']} models, random disjoint groups): "
                 f"{sum(abs(r['error']) <= 0.05 for r in validated)} of {len(validated)} predictions are within "
                 f"±0.05 of the observed correlation ({len(within)} method × grouping units); the largest error is "
                 f"{worst['error']:+.3f} ({worst['method']}/{worst['grouping']} at K′ = {worst['models']}).")
        beyond = [r for r in validated if "error_beyond" in r]
        if beyond:
            worst = max(beyond, key=lambda r: abs(r["error_beyond"]))
            text += (f" Beyond the {beyond[0].get('null', 'reference')} null (its mean map partialled out of the "
                     f"held-out group means): {sum(abs(r['error_beyond']) <= 0.05 for r in beyond)} of {len(beyond)} "
                     f"within ±0.05, largest error {worst['error_beyond']:+.3f} "
                     f"({worst['method']}/{worst['grouping']} at K′ = {worst['models']}).")
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
    figures, toggles = [], {}
    # the overlays need the maps' .npz files: a folder without them (a results file alone) gets none
    shown = [unit for unit in units if unit.get("files")
             and all((maps_dir / name).exists() for name in unit["files"])][:2]
    for unit in shown:
        stem = out / "figures" / f"consensus_{unit['method']}_{unit['grouping']}"
        path = plot_consensus(unit, maps_dir, stem)
        toggles[path] = (plot_consensus(unit, maps_dir, stem.with_name(stem.name + "_plain"), overlay=False),
                         "outline the regions found")
        figures.append((path, f"{_label(unit)}: single-model grey maps and the {unit['n_models']}-model mean, with "
                              "the regions each test finds outlined in green."))
    n_images = consensus.get("n_images", units[0]["n_images"] if units else 0)
    reference = reference_of(units[0]) if units else "untrained"
    settings = consensus["settings"]
    warning = reachability_warning(units, settings.get("n_permutations"))
    reading = ((warning + " " if warning else "")
               + f"Per region (super-pixels, or blocks of a grid for pixel maps) of each of {n_images} test images. "
               f"Learning beyond the null (trained vs {reference}): is the region ranked higher by the trained models "
               f"than by {reference} models, which learned nothing about the classes? The trained models' ranks "
               f"against the {reference} models', by permuting which models are called trained. Agreement (rank-sum, "
               "not evidence of learning): is the region ranked consistently high by the trained models? Each model "
               "ranks the image's regions, and the sum of a region's ranks is compared with its exact distribution "
               "when every rank is uniform; models that learned nothing agree on edges and contrast too. Regions are "
               f"found with Benjamini–Hochberg at q = {settings['q']:g} over each image's regions. "
               + power_reading(units) + " " + calibration_reading(units))
    ordered = [row for unit in units for row in sorted(unit["tests"], key=lambda row: row["test"] == RANK_SUM)]
    by_row = {id(row): unit for unit in units for row in unit["tests"]}
    table = [{"method": by_row[id(row)]["method"], "grouping": by_row[id(row)]["grouping"], "test": row["test"],
              "models": row["n_models"], "reference": row["n_reference"] or "",
              "regions found / image": fmt(row, "significant"), "area": fmt(row, "area"),
              "power": fmt(row, "power") if "power" in row else "",
              "on object": fmt(row, "on_object") if "on_object" in row else "",
              "smallest p": f"{row['smallest_p']:.2g}", "reads": in_words(reads(row))}
             for row in ordered]
    calibration = [{"method": unit["method"], "grouping": unit["grouping"], "null": row["null"], "test": row["test"],
                    "studies": row["n_studies"], "FDR": fmt(row, "fdr", 3),
                    "note": "one study repeated: not a rate" if _degenerate_pool(row) else ""}
                   for unit in units for row in unit["calibration"]]
    skipped = [{"method": unit["method"], "grouping": unit["grouping"], "null": row["null"], "test": row["test"],
                "reason": row["reason"]} for unit in units for row in unit.get("calibration_skipped", [])]
    tables = [
        (table, "Regions found per image and the share of the image they cover, power on the object masks, the "
                "smallest p-value the test can give with these models (mean [95 % t interval over images]), and what "
                "each test reads as: learning beyond the reference null, or agreement among the trained models."),
        (calibration, f"Observed false-discovery rate of simulated studies (permuted: every map shuffled across "
                      f"regions; pool: models drawn from the {reference} models), t interval over studies.")]
    if skipped:
        tables.append((skipped, "Calibrations not run, and why."))
    return Section("Consensus maps: regions beyond the null, and agreement", in_words(reading), figures=figures,
                   toggles=toggles, tables=tables)


def _interval_cell(plan: dict) -> str:
    if not plan or plan.get("refused") or plan.get("models_low") is None:
        return ""
    high = plan.get("models_high")
    return f"{plan['models_low']}–{high}" if high is not None else f"{plan['models_low']}–>10000"


def planner_section(consensus: dict, out: Path) -> Section:
    """The K′-model mean map's correlation with the infinite-model mean map against K′, predicted
    from the pilot (beyond the reference null when the stage had one), with checks."""
    units = consensus["units"]
    settings = consensus["settings"]
    target = settings["target"]
    nulls = sorted({(unit.get("plan") or {}).get("null") for unit in units} - {None})
    beyond = (f" The plan is for the part of the mean map beyond the {', '.join(nulls)} null: the null's mean map "
              "is partialled out, so structure that models which learned nothing also show is not counted; the "
              "model count has a 95 % interval from bootstrapping the pilot over models, and a unit whose shared "
              "component is not above the null gets no plan." if nulls else "")
    reading = (f"From a pilot of {settings['pilot_models']} models (random explainers run twice), the correlation "
               "over pixels of the K′-model mean map with the mean of infinitely many models (ρ) is predicted from "
               "three variance terms: the mean map's spatial variance, the model-to-model variance and the "
               "explainer's own noise, which falls with the sample count (Spearman–Brown). ρ is a correlation; its "
               f"square ρ² is the reliability (ICC-type): the target ρ = {target:g} is a reliability of "
               f"{target ** 2:.2g}." + beyond + " " + planner_reading(units))
    table = [{"method": unit["method"], "grouping": unit["grouping"],
              "models": unit["recommendation"]["models"] if unit["recommendation"]["models"] is not None else "—",
              "samples": unit["recommendation"]["samples"] if unit["recommendation"]["samples"] is not None else "",
              "ρ(4)": next((f"{r['reliability']:.3f}" for r in unit["curve"] if r["models"] == 4), ""),
              "ρ(8)": next((f"{r['reliability']:.3f}" for r in unit["curve"] if r["models"] == 8), ""),
              "spatial var": f"{unit['components']['V_mu']:.4f}", "model var": f"{unit['components']['E_m']:.4f}",
              "explainer var": f"{unit['components']['E_s']:.4f}",
              "beyond null var": (f"{unit['plan']['V_mu_beyond']:.4f}"
                                  if (unit.get("plan") or {}).get("V_mu_beyond") is not None else ""),
              "models 95 %": _interval_cell(unit.get("plan")),
              "plan": "refused" if (unit.get("plan") or {}).get("refused") else ""} for unit in units]
    validation = [{"method": r["method"], "grouping": r["grouping"], "K′": r["models"],
                   "samples": r.get("samples") or "",
                   "predicted": f"{r['predicted']:.3f}", "observed": f"{r['observed']:.3f}",
                   "error": f"{r['error']:+.3f}",
                   "beyond null": (f"{r['predicted_beyond']:.3f} / {r['observed_beyond']:.3f}"
                                   if "predicted_beyond" in r else "")}
                  for unit in units for r in unit["validation"]]
    tables = [(table, f"Models (and samples, for random explainers, at most {settings['max_samples']}) for a mean map "
                      f"whose correlation with the infinite-model mean map is {target:g} (reliability ρ² = "
                      f"{target ** 2:.2g})" + (", beyond the null, with its 95 % bootstrap interval" if nulls else "")
                      + "; predicted correlation of the trained maps at 4 and 8 models; the pilot's variance terms "
                      "(grey maps, centred).")]
    if validation:
        tables.append((validation, "Predicted against observed correlation with the infinite-model mean map on "
                                   "held-out models (beyond the null: predicted / observed with the null's mean map "
                                   "partialled out)."))
    return Section("Planner: how many models and samples", in_words(reading),
                   figures=[(plot_reliability(units, out / "figures" / "planner_reliability"),
                             "Predicted correlation of the K′-model mean map with the infinite-model mean map "
                             "against the number of models; points: observed on held-out models.")], tables=tables)


@report_section("consensus", order=140, stage="consensus")
def _consensus(results: dict, out: Path) -> Section | list[Section] | None:
    if results.get("consensus") is not None:
        return [consensus_section(results["consensus"], out), planner_section(results["consensus"], out)]
    if results["config"].get("consensus", {}).get("enabled"):
        return Section("Consensus maps", "Left out: the consensus map and the planner need at least 3 main models "
                       "([models] k).")
    return None
