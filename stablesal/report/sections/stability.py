"""The report's stability sections: each a pure function of the study's summary rows (no model
passes), so every sentence is computed from numbers that carry their intervals.

Conventions: an interval is "above" a value when its lower end is, "below" when its upper end
is, and the two are "not separated" otherwise; readings only state orderings whose intervals
separate. Intervals are 95 % two-way design intervals (:mod:`stablesal.intervals`): images and
retrained models are both treated as sampled, so they are unconditional on the trained models,
except the fidelity, localisation and sanity columns, which describe model 0 and are intervals
over images only.
"""

from __future__ import annotations

import math
from pathlib import Path
from scipy.stats import spearmanr

from ..html import Section, report_section
from ...explain.explainers import is_control, row_family
from ...metrics.registry import metric_info
from ..figures import plot_variance_decomposition
from ..figures import plot_variance_reduction
from ..figures import plot_stability_bars

DELETION, MU_FIDELITY = metric_info("deletion_auc").arrow, metric_info("mu_fidelity").arrow  # registered directions


def fmt(row: dict, key: str, digits: int = 2) -> str:
    """``"0.42 [0.30, 0.55]"`` for ``row[key]`` and its interval; ``"–"`` when missing."""
    value = row.get(key)
    if value is None or not math.isfinite(value):
        return "–"
    low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def side(row: dict, key: str, value: float = 0.0) -> str:
    """``"above"``, ``"below"`` or ``"not separated"``: where ``row[key]``'s interval lies with
    respect to ``value``."""
    low, high = row.get(f"{key}_ci_low", float("nan")), row.get(f"{key}_ci_high", float("nan"))
    if math.isfinite(low) and low > value:
        return "above"
    if math.isfinite(high) and high < value:
        return "below"
    return "not separated"


def _label(row: dict) -> str:
    return f"{row['method']} / {row['grouping']}"


def _main(summary: list[dict]) -> list[dict]:
    return [r for r in summary if r["model_set"] == "main"]


def draws_note(summary: list[dict]) -> str:
    draws = sorted({r.get("draws", "independent") for r in summary})
    if draws == ["independent"]:
        return "Random explainers drew independently for every model (and for the retest and the sanity copy)."
    return ("SHARED DRAWS: some rows explain every model with the same random draws (draws = 'common'); their "
            "between-model similarity includes the draws they share and is not a stability number.")


def headline_ranking(summary: list[dict]) -> tuple[list[dict], str]:
    """The headline's order, the one ranking of methods (the page's headline and the terminal
    summary, :func:`stablesal.pipeline.run.terminal_summary`): the main-model rows of ``summary``
    but the random maps, best first by cross-seed Spearman above the untrained-network null
    (``spearman_above_untrained``), or by raw Spearman when no untrained networks ran (a NaN ranks
    last; ties keep the summary's order). Returns the ranked rows and the key they are ranked by."""
    rows = [r for r in _main(summary) if not is_control(r)]
    key = "spearman_above_untrained" if rows and all("spearman_above_untrained" in r for r in rows) else "spearman"
    return sorted(rows, key=lambda r: -(r[key] if math.isfinite(r[key]) else -math.inf)), key


def headline_table(summary: list[dict]) -> list[dict]:
    """The headline's table, one row per method × grouping in :func:`headline_ranking`'s order,
    each value as the page prints it (with its interval)."""
    ranked, _ = headline_ranking(summary)
    random_rows = {r["grouping"]: r for r in _main(summary) if is_control(r)}
    return [{
        "rank": rank, "method": r["method"], "grouping": r["grouping"], "draws": r.get("draws", "independent"),
        "Spearman above untrained": fmt(r, "spearman_above_untrained"),
        "Spearman": fmt(r, "spearman"), "untrained null": fmt(r, "spearman_untrained"),
        "random maps": fmt(random_rows.get(r["grouping"], {}), "spearman"),
        "retest ceiling": fmt(r, "spearman_retest"), "corrected": fmt(r, "spearman_corrected"),
        "SSIM": fmt(r, "ssim"), "SSIM untrained": fmt(r, "ssim_untrained"),
        f"deletion AUC {DELETION}": fmt(r, "deletion_auc", 3), f"µFidelity {MU_FIDELITY}": fmt(r, "mu_fidelity"),
    } for rank, r in enumerate(ranked, 1)]


def degenerate_note(summary: list[dict]) -> str:
    """A sentence naming the model sets × methods × groupings with constant (degenerate) maps and the
    pairs left out because of them; empty when there are none."""
    flagged = [r for r in summary if r.get("degenerate_pairs")]
    if not flagged:
        return ""
    parts = [f"{r['model_set']} {_label(r)}: {r['degenerate_maps']} maps, {r['degenerate_pairs']} of "
             f"{r['n_images'] * r['n_models'] * (r['n_models'] - 1) // 2} pairs" for r in flagged]
    return ("Constant maps (a model whose output ignores the image) have no similarity and are left out of every "
            "similarity, so they cannot read as perfectly stable: " + "; ".join(parts[:8])
            + (f"; and {len(parts) - 8} more" if len(parts) > 8 else "") + ". ")


def headline_section(summary: list[dict]) -> Section:
    """Every method × grouping ranked by cross-seed Spearman above the untrained-network null."""
    rows = [r for r in _main(summary) if not is_control(r)]
    random_rows = {r["grouping"]: r for r in _main(summary) if is_control(r)}
    ranked, key = headline_ranking(summary)
    has_null = key == "spearman_above_untrained"
    table = headline_table(summary)
    if not ranked:
        return Section("Headline: every method ranked", "No method ran.")
    best = ranked[0]
    reading = draws_note(summary) + " "
    if has_null:
        above = [r for r in ranked if side(r, key) == "above"]
        below = [r for r in ranked if side(r, key) == "below"]
        reading += (f"Ranked by how far their cross-seed Spearman correlation rises above that of untrained networks "
                    f"of the same architecture (each with its own initialisation, explained the same way), the "
                    f"first is {_label(best)}: {fmt(best, key)} above the null (raw {fmt(best, 'spearman')}, "
                    f"untrained {fmt(best, 'spearman_untrained')}). ")
        if len(ranked) > 1:
            tied = [r for r in ranked[1:] if not best[f"{key}_ci_low"] > r[f"{key}_ci_high"]]
            if tied:
                reading += (f"The first place is not resolved: {len(tied)} other combinations have intervals that "
                            f"overlap its own (" + ", ".join(f"{_label(r)} {r[key]:.2f}" for r in tied[:6])
                            + (", ..." if len(tied) > 6 else "") + "). ")
            else:
                reading += "Its interval lies above every other combination's. "
        reading += (f"{len(above)} of {len(ranked)} method × grouping combinations are more stable than the null "
                    f"(interval above 0), {len(below)} less stable, and {len(ranked) - len(above) - len(below)} "
                    "cannot be told from it. ")
        raw_best = max(rows, key=lambda r: r["spearman"])
        if raw_best is not best:
            reading += (f"By raw Spearman alone the first would be {_label(raw_best)} ({fmt(raw_best, 'spearman')}), "
                        f"but its untrained null is {fmt(raw_best, 'spearman_untrained')}: architecture and input "
                        "alone give that much agreement. ")
    else:
        reading += f"The most similar maps across retrained models are {_label(best)} (Spearman {fmt(best, 'spearman')}). "
    reading += degenerate_note(summary)
    if random_rows:
        pixel_random = random_rows.get("pixel") or next(iter(random_rows.values()))
        reading += (f"I.i.d. random maps score Spearman {fmt(pixel_random, 'spearman')} ({pixel_random['grouping']}); "
                    "grouped random maps share their segments, so "
                    + ", ".join(f"{g}: {fmt(r, 'spearman')}" for g, r in random_rows.items() if g != "pixel") + ".")
    caption = ("Main models. Spearman and SSIM between the grey maps of every pair of retrained models, with 95 % "
               "design intervals over images and models (unconditional: they treat the retrained models as a sample, "
               "so they describe models retrained anew, not only these); 'untrained null': the same between untrained networks; "
               "'retest ceiling': two runs of the explainer on the same model with different seeds (1 for "
               "deterministic methods); 'corrected': Spearman / ceiling (correction for attenuation); deletion AUC "
               "and µFidelity of model 0 (interval over images).")
    return Section("Headline: stability above the untrained-network null", reading, tables=[(table, caption)])


def retest_section(summary: list[dict]) -> Section:
    """Test–retest ceiling of every random method and the between-model similarity relative to it."""
    rows = [r for r in _main(summary) if r.get("random") and not is_control(r)]
    if not rows:
        return Section("Test–retest ceiling", "No random explainer ran, so every map is reproducible exactly.")
    table = [{"method": r["method"], "grouping": r["grouping"], "retest Spearman": fmt(r, "spearman_retest"),
              "between models": fmt(r, "spearman"), "corrected": fmt(r, "spearman_corrected"),
              "retest SSIM": fmt(r, "ssim_retest"), "between models, SSIM": fmt(r, "ssim")} for r in rows]
    low = min(rows, key=lambda r: r["spearman_retest"])
    high = max(rows, key=lambda r: r["spearman_retest"])
    corrected = [r for r in rows if math.isfinite(r.get("spearman_corrected", float("nan")))]
    at_ceiling = [r for r in corrected if side(r, "spearman_corrected", 1.0) != "below"]
    raw_order = sorted(rows, key=lambda r: -r["spearman"])
    corrected_order = sorted(rows, key=lambda r: -(r["spearman_corrected"] if math.isfinite(r["spearman_corrected"])
                                                   else -math.inf))

    agreement = spearmanr([raw_order.index(r) for r in rows], [corrected_order.index(r) for r in rows]).statistic \
        if len(rows) > 2 else float("nan")
    reading = (f"Two runs of the same random explainer on the same model, with different seeds, agree with Spearman "
               f"from {fmt(low, 'spearman_retest')} ({_label(low)}) to {fmt(high, 'spearman_retest')} "
               f"({_label(high)}): that is the most any two models could agree with this sampling budget. Relative to "
               f"that ceiling (Spearman's correction for attenuation) the between-model similarity ranges "
               + (f"from {min(r['spearman_corrected'] for r in corrected):.2f} to "
                  f"{max(r['spearman_corrected'] for r in corrected):.2f}. " if corrected else "undefined. "))
    if at_ceiling:
        reading += ("For " + ", ".join(_label(r) for r in at_ceiling) + " the corrected value cannot be told from 1: "
                    "their maps differ across models no more than across two runs on one model, so their "
                    "instability is the explainer's own sampling noise, which more samples would reduce. ")
    reading += (f"The ranking of these {len(rows)} combinations by corrected similarity agrees with the raw ranking "
                f"with rank correlation {agreement:+.2f}.")
    return Section("Test–retest ceiling and corrected similarity", reading,
                   tables=[(table, "Random methods, main models, 95 % design intervals.")])


def decomposition_section(summary: list[dict], figures_dir: Path) -> Section:
    """Shares of the across-model variance: explainer draws, optimiser seed, data split."""
    rows = [r for r in _main(summary) if "share_explainer" in r]
    components = [c for c in ("explainer", "seed", "split", "models") if any(f"share_{c}" in r for r in rows)]
    table = [{"method": r["method"], "grouping": r["grouping"],
              **{f"{c} share": fmt(r, f"share_{c}") for c in components},
              "total variance": fmt(r, "variance_total", 3)} for r in rows]
    random_methods = [r for r in rows if r.get("random") and not is_control(r)]
    deterministic = [r for r in rows if not r.get("random")]
    reading = ("Across-model variance of the unit-norm maps, split by a nested design: two explainer runs on each "
               "main model (explainer draws), models on one data split with other seeds (optimiser seed), and models "
               "on disjoint splits (data split); method-of-moments estimates, which can fall below 0 by chance. ")
    if deterministic:
        reading += (f"{len(deterministic)} combinations are deterministic (explainer share 0 by construction). ")
    for component in components:
        key = f"share_{component}"
        pool = [r for r in (random_methods if component == "explainer" else rows)
                if not is_control(r) and key in r and math.isfinite(r[key])]
        if not pool:
            continue
        largest, smallest = max(pool, key=lambda r: r[key]), min(pool, key=lambda r: r[key])
        resolved = sum(1 for r in pool if side(r, key) == "above")
        reading += (f"{component.capitalize()} share: from {fmt(smallest, key)} ({_label(smallest)}) to "
                    f"{fmt(largest, key)} ({_label(largest)}), above 0 in {resolved} of {len(pool)}"
                    + (" random combinations" if component == "explainer" else "") + ". ")
    if "split" in components and "seed" in components:
        split_larger = [r for r in rows if not is_control(r) and "share_split" in r
                        and r["share_split_ci_low"] > r["share_seed_ci_high"]]
        seed_larger = [r for r in rows if not is_control(r) and "share_split" in r
                       and r["share_seed_ci_low"] > r["share_split_ci_high"]]
        reading += (f"The data split outweighs the optimiser seed (intervals separated) in {len(split_larger)} "
                    f"combinations and the seed outweighs the split in {len(seed_larger)}. ")
    contrasts = [r for r in rows if not is_control(r) and "spearman_main_minus_control" in r]
    if contrasts:
        lower = [r for r in contrasts if side(r, "spearman_main_minus_control") == "below"]
        higher = [r for r in contrasts if side(r, "spearman_main_minus_control") == "above"]
        widest = max(r["spearman_main_minus_control_ci_high"] - r["spearman_main_minus_control_ci_low"]
                     for r in contrasts)
        reading += (f"Directly: models on disjoint splits agree less (Spearman, main minus control, interval below 0) "
                    f"in {len(lower)} of {len(contrasts)} combinations and more in {len(higher)}; with "
                    f"{rows[0].get('n_control', 'few')} control models the intervals are wide (up to {widest:.2f}), so "
                    "a split effect smaller than that is not ruled out. ")
    random_rows = [r for r in rows if is_control(r)]
    if random_rows:
        r = random_rows[0]
        reading += (f"Check on the i.i.d. random maps, which no model influences: explainer share "
                    f"{fmt(r, 'share_explainer')} ({r['grouping']}).")
    return Section("Where the variance comes from: explainer, seed, split", reading,
                   figures=[(plot_variance_decomposition(summary, figures_dir / "variance_decomposition"),
                             "Share of across-model variance per component (main models); negative estimates are "
                             "drawn as 0 and listed in the table as estimated.")],
                   tables=[(table, "Method-of-moments variance components, 95 % design intervals over images and the "
                            "main and control models.")])


def grid_section(contrasts: list[dict]) -> Section:
    """Super-pixels against the grid matched to their mean segment size."""
    random_contrasts = [c for c in contrasts if is_control(c)]
    contrasts = [c for c in contrasts if not is_control(c)]
    if not contrasts:
        return Section("Super-pixels vs the matched grid", "No super-pixel grouping with a matched grid ran.")
    metrics = [("spearman", "Spearman", +1), ("ssim", "SSIM", +1), ("topk_intersection", "top-10 % overlap", +1),
               ("deletion_auc", "deletion AUC", -1), ("relevance_mass", "relevance mass", +1),
               ("bias", "bias", -1)]
    def table_row(c: dict) -> dict:
        return {"method": c["method"], "super-pixels": c["grouping"],
                "segment px": f"{c['segment_size']:.1f} vs {c['reference_segment_size']:.1f}",
                **{f"Δ {label}": fmt(c, f"{metric}_difference", 3) for metric, label, _ in metrics}}

    table = [table_row(c) for c in contrasts]
    parts = []
    for metric, label, direction in metrics:
        key = f"{metric}_difference"
        present = [c for c in contrasts if key in c]
        if not present:
            continue
        better = sum(1 for c in present if side(c, key) == ("above" if direction > 0 else "below"))
        worse = sum(1 for c in present if side(c, key) == ("below" if direction > 0 else "above"))
        parts.append(f"{label}: super-pixels better in {better}, worse in {worse}, not separated in "
                     f"{len(present) - better - worse} of {len(present)}")
    reading = ("Each super-pixel grouping against a grid whose cells have the same mean size (within 10 %), "
               "same models and images; a difference counts only when its 95 % interval excludes 0. "
               + "; ".join(parts) + ". Bias is the share of the mean pixel map that the projection discards "
               "(lower keeps more).")
    if random_contrasts:
        reading += (" The i.i.d. random map, for comparison: Δ Spearman " + ", ".join(
            f"{fmt(c, 'spearman_difference', 3)} ({c['grouping']})" for c in random_contrasts) + ".")
    table += [table_row(c) for c in random_contrasts]
    return Section("Super-pixels vs the size-matched grid", reading,
                   tables=[(table, "Super-pixel minus matched grid, every method, 95 % intervals (design intervals "
                            "for the pairwise metrics and the bias; over images for model 0's fidelity and "
                            "localisation).")])


def grouping_section(contrasts: list[dict], summary: list[dict], figures: list) -> Section:
    """Grouped against pixel maps of the same method."""
    rows = [c for c in contrasts if not is_control(c)]
    up = [c for c in rows if side(c, "spearman_difference") == "above"]
    down = [c for c in rows if side(c, "spearman_difference") == "below"]
    reading = (f"Grouping changed the cross-seed Spearman correlation against the pixel map of the same method: up "
               f"in {len(up)}, down in {len(down)}, not separated in {len(rows) - len(up) - len(down)} of "
               f"{len(rows)} method × grouping cases. ")
    if up:
        largest = max(up, key=lambda c: c["spearman_difference"])
        reading += f"Largest gain: {largest['method']} with {largest['grouping']} ({fmt(largest, 'spearman_difference')}). "
    if down:
        reading += "Worse with grouping: " + ", ".join(
            f"{c['method']} / {c['grouping']} ({fmt(c, 'spearman_difference')})" for c in down) + ". "
    random_rows = [r for r in _main(summary) if is_control(r)]
    if random_rows:
        reading += ("I.i.d. random maps, for comparison: " + ", ".join(
            f"{r['grouping']} Spearman {fmt(r, 'spearman')}, SSIM {fmt(r, 'ssim')}" for r in random_rows)
            + ". Read gains against the untrained null of the headline.")
    table = [{"method": c["method"], "grouping": c["grouping"], "Δ Spearman": fmt(c, "spearman_difference", 3),
              "Δ SSIM": fmt(c, "ssim_difference", 3), "Δ deletion AUC": fmt(c, "deletion_auc_difference", 3)}
             for c in rows]
    return Section("Cross-seed stability: pixel vs grouped", reading, figures=figures,
                   tables=[(table, "Grouped minus pixel map of the same method, main models, 95 % intervals.")])


def reduction_section(rows: list[dict], figures_dir: Path) -> Section:
    """The variance-reduction check, as predictions that can fail."""
    if not rows:
        return Section("Variance reduction vs segment size", "No pixel-level method ran, so nothing was projected.")
    real = [r for r in rows if not is_control(r)]
    below_independent = [r for r in real if r.get("measured_ci_high", math.inf) < r["mean_segment_size"]]
    predicted_ok = [r for r in real if side(r, "measured_over_predicted", 1.0) == "not separated"]
    above_prediction = [r for r in real if side(r, "measured_over_predicted", 1.0) == "above"]
    below_prediction = [r for r in real if side(r, "measured_over_predicted", 1.0) == "below"]
    worse = [r for r in real if side(r, "nsr_gain", 1.0) == "below"]
    better = [r for r in real if side(r, "nsr_gain", 1.0) == "above"]
    random_rows = [r for r in rows if is_control(r)]
    reading = (f"Projecting the pixel maps onto segments reduces their across-model variance by less than the "
               f"independent-pixel factor d/m in {len(below_independent)} of {len(real)} method × partition cases "
               "(interval below d/m): neighbouring pixels vary together. The reduction predicted from the spatial "
               "correlation of the maps' differences, assuming it is the same everywhere in the image, matches the "
               f"measured one (ratio interval covers 1) in {len(predicted_ok)} cases; the measured reduction is larger "
               f"than predicted in {len(above_prediction)} and smaller in {len(below_prediction)}"
               + (": there the variance is not spread evenly over the image, and the segments (grids included) "
                  "average away more of it than its image-wide correlation predicts. " if above_prediction
                  and not below_prediction else ". "))
    if random_rows:
        reading += ("For i.i.d. random maps measured and predicted reductions are "
                    + ", ".join(f"{fmt(r, 'measured', 1)} and {fmt(r, 'predicted', 1)} at d/m = "
                                f"{r['mean_segment_size']:.1f} ({r['partition']})" for r in random_rows[:2]) + ". ")
    if worse:
        reading += ("The grouped method as computed (grouping inside each sample) has a worse noise-to-signal ratio "
                    "than its pixel version for " + ", ".join(f"{r['method']} / {r['partition']} "
                                                              f"({fmt(r, 'nsr_gain')})" for r in worse) + "; ")
    defined = [r for r in real if math.isfinite(r.get("nsr_gain", float("nan")))]
    reading += (f"it is better for {len(better)} and not separated for {len(defined) - len(better) - len(worse)}"
                + (f"; for {len(real) - len(defined)} the models share too little signal (‖μ‖² not above 0) for the "
                   "ratio to be bounded" if len(defined) < len(real) else "") + ".")
    table = [{"method": r["method"], "partition": r["partition"], "d/m": round(r["mean_segment_size"], 1),
              "measured": fmt(r, "measured", 2), "predicted": fmt(r, "predicted", 2),
              "measured / predicted": fmt(r, "measured_over_predicted", 2), "bias": fmt(r, "bias", 3),
              "NSR gain": fmt(r, "nsr_gain", 2)} for r in rows]
    return Section("Variance reduction: measured against predictions", reading,
                   figures=[(plot_variance_reduction(rows, figures_dir / "variance_reduction"),
                             "Left: tr(Σ)/tr(PΣ) across models (unit-norm maps), filled: measured, hollow: predicted "
                             "from the spatial correlation; dashed: d/m. Right: bias against the noise-to-signal gain "
                             "of the grouped method (below 1: worse).")],
                   tables=[(table, "Main models, 95 % design intervals.")])


def sampling_reading(summary: list[dict]) -> str:
    noise = next((r for r in _main(summary) if r["method"] == "smoothgrad" and r["grouping"] == "pixel"), None)
    erased = next((r for r in _main(summary) if r["method"] == "suppression" and r["grouping"] == "pixel"), None)
    if not (noise and erased):
        return "SmoothGrad and suppression were not both in this study."
    key = "spearman_above_untrained" if "spearman_above_untrained" in noise else "spearman"
    separated = (erased[f"{key}_ci_low"] > noise[f"{key}_ci_high"] or noise[f"{key}_ci_low"] > erased[f"{key}_ci_high"])
    return (f"Suppression sampling vs Gaussian noise (SmoothGrad), pixel maps: cross-seed Spearman above the untrained "
            f"null {fmt(erased, key)} vs {fmt(noise, key)} ({'separated' if separated else 'not separated'}); raw "
            f"{fmt(erased, 'spearman')} vs {fmt(noise, 'spearman')}; retest ceiling {fmt(erased, 'spearman_retest')} vs "
            f"{fmt(noise, 'spearman_retest')}" + (f"; deletion AUC {fmt(erased, 'deletion_auc', 3)} vs "
                                                  f"{fmt(noise, 'deletion_auc', 3)}." if "deletion_auc" in noise
                                                  else "."))


def fidelity_reading(summary: list[dict]) -> str:
    """Stability above the null against fidelity, one point per method (pixel maps): the
    groupings of one method are not independent evidence."""
    rows = [r for r in _main(summary) if not is_control(r) and r["grouping"] == "pixel"
            and "spearman_above_untrained" in r and "deletion_auc" in r]
    if len(rows) < 4:
        return "Too few methods for a trade-off."

    test = spearmanr([r["spearman_above_untrained"] for r in rows], [r["deletion_auc"] for r in rows])
    verdict = ("stabler maps tend to be less faithful" if test.statistic > 0 and test.pvalue < 0.05 else
               "stabler maps tend to be more faithful" if test.statistic < 0 and test.pvalue < 0.05 else
               "no relation can be claimed at this number of methods")
    return (f"Across {len(rows)} methods (pixel maps, one point each), the rank correlation between cross-seed "
            f"Spearman above the untrained null and model 0's deletion AUC is {test.statistic:+.2f} "
            f"(p = {test.pvalue:.2f}): {verdict}; lower AUC = more faithful.")


def sanity_reading(summary: list[dict]) -> str:
    rows = [r for r in _main(summary) if "sanity_spearman" in r]
    if not rows:
        return "The sanity check did not run."
    worst = max(rows, key=lambda r: r["sanity_spearman"])
    best = min(rows, key=lambda r: r["sanity_spearman"])
    return (f"A method passes when its map of a randomly re-initialised copy of model 0 (explained with its own draws) "
            f"is unlike the trained one. The highest similarity to the randomised model is {_label(worst)} "
            f"(Spearman {fmt(worst, 'sanity_spearman')}), the lowest {_label(best)} ({fmt(best, 'sanity_spearman')}): "
            "a map that changes little when the weights are destroyed reflects the image (edges, or the "
            "segmentation) more than the model.")


def perturbation_section(rows: list[dict], summary: list[dict], samples: int, count: int) -> Section:
    """Perturbation presets next to the gradient methods, pixel maps, same statistics."""
    main = [r for r in _main(summary) if r["grouping"] == "pixel"]
    key = "spearman_above_untrained"
    presets = [r for r in _main(rows) if not is_control(r)]
    ranked = sorted(main, key=lambda r: -(r.get(key, r["spearman"])))
    table = [{"family": row_family(r), "method": r["method"], "n images": r["n_images"],
              "Spearman above untrained": fmt(r, key), "Spearman": fmt(r, "spearman"),
              "untrained": fmt(r, "spearman_untrained"), "retest": fmt(r, "spearman_retest"),
              "corrected": fmt(r, "spearman_corrected"), f"deletion AUC {DELETION}": fmt(r, "deletion_auc", 3),
              f"µFidelity {MU_FIDELITY}": fmt(r, "mu_fidelity"), "s / model": round(r["explain_seconds_per_model"], 2)}
             for r in ranked]
    if not presets:
        return Section("Perturbation methods across seeds", "No perturbation preset ran.")
    best = max(presets, key=lambda r: r.get(key, r["spearman"]))
    tied = [r for r in presets if r is not best and not best[f"{key}_ci_low"] > r[f"{key}_ci_high"]]
    reading = (draws_note(rows) + f" On {count} test images with {samples} samples for RISE, LIME and KernelSHAP, the "
               f"preset furthest above its untrained null is {best['method']} ({fmt(best, key)}; raw "
               f"{fmt(best, 'spearman')}, untrained {fmt(best, 'spearman_untrained')}, retest "
               f"{fmt(best, 'spearman_retest')})"
               + (", not separated from " + ", ".join(f"{r['method']} ({fmt(r, key)})" for r in tied) if tied else "")
               + ". ")
    noisy = [r for r in presets if r.get("random") and math.isfinite(r.get("spearman_corrected", float("nan")))
             and side(r, "spearman_corrected", 1.0) != "below"]
    if noisy:
        reading += ("Within their own sampling noise (corrected similarity not below 1): "
                    + ", ".join(r["method"] for r in noisy) + ". ")
    indistinct = [r for r in presets if side(r, key) == "not separated"]
    if indistinct:
        reading += "Not distinguishable from untrained networks: " + ", ".join(r["method"] for r in indistinct) + ". "
    fastest = min(presets, key=lambda r: r["explain_seconds_per_model"])
    slowest = max(presets, key=lambda r: r["explain_seconds_per_model"])
    reading += (f"Cost: {fastest['explain_seconds_per_model']:.1f} s ({fastest['method']}) to "
                f"{slowest['explain_seconds_per_model']:.1f} s ({slowest['method']}) per model.")
    return Section("Perturbation methods across seeds", reading, tables=[(table, "Pixel maps on the main models; "
                   "perturbation rows use the first n images test images; 95 % design intervals.")])


def mege_section(fold_rows: list[dict], summary: list[dict], n_samples: int, models: list[dict]) -> Section:
    """MeGe and ReCo by Fel et al.'s fold protocol, beside the held-out test-image variant."""
    test = {(r["method"], r["grouping"]): r for r in _main(summary)}
    rows = sorted([r for r in fold_rows if not is_control(r)], key=lambda r: -r["mege"])
    null = [r for r in fold_rows if is_control(r)]
    above = [r for r in rows if side(r, "mege_above_random") == "above"]
    accuracies = [m["test_acc"] for m in models]
    reading = (f"{len(models)} models, each trained on every fold but one of the first training images (test "
               f"accuracy {min(accuracies):.1%}–{max(accuracies):.1%}), explain {n_samples} training images; each "
               "pair is compared only on the images of the two folds it held out, where exactly one of the two "
               "trained on the image. Distances are √(1 − |ρ|) on the grey maps (|ρ| counts anti-correlated maps "
               "as alike; grey maps are magnitudes, so it rarely matters). ")
    if rows:
        best = rows[0]
        reading += f"Highest MeGe: {_label(best)}, {fmt(best, 'mege')}. "
    if null:
        reading += ("The i.i.d. random map scores " + ", ".join(f"{fmt(r, 'mege')} ({r['grouping']})" for r in null)
                    + f"; {len(above)} of {len(rows)} method × grouping rows lie above it (interval of the "
                    "difference above 0)" + (": " + ", ".join(_label(r) for r in above[:8]) +
                                             (" …" if len(above) > 8 else "") if above else "") + ". ")
    random_rows = [r for r in rows if r.get("mege_below_retest_ci_low") is not None
                   and math.isfinite(r.get("mege_below_retest_ci_low", float("nan")))]
    if random_rows:
        below = [r for r in random_rows if side(r, "mege_below_retest") == "above"]
        reading += (f"Each random explainer was run twice on every fold model (another seed): the MeGe of those "
                    f"test–retest distances is its ceiling. {len(below)} of {len(random_rows)} random-explainer "
                    "rows lie below their ceiling (interval of ceiling − MeGe above 0), so retraining adds "
                    "instability there beyond the explainer's own noise"
                    + (": " + ", ".join(_label(r) for r in below[:8]) + (" …" if len(below) > 8 else "")
                       if below else "") + ". ")
    reading += ("MeGe here has the random map as its only null; how much of a method's similarity untrained "
                "networks of the same architecture also show is the headline's question, not MeGe's. ")
    reading += ("ReCo is a maximum over thresholds and has no interval here; with few S≠ distances (one model "
                "right, the other wrong) it is noisy. The test-image columns are the variant on held-out test "
                "images (no model trained on them), from the main models.")
    table = [{"method": r["method"], "grouping": r["grouping"], "MeGe (folds)": fmt(r, "mege"),
              "above random map": fmt(r, "mege_above_random"), "ceiling (retest)": fmt(r, "mege_retest"),
              "below ceiling": fmt(r, "mege_below_retest"), "ReCo (folds)": fmt(r, "reco"),
              "|S=|": r["n_same"], "|S≠|": r["n_different"],
              "MeGe (test images)": fmt(test.get((r["method"], r["grouping"]), {}), "mege_test"),
              "ReCo (test images)": fmt(test.get((r["method"], r["grouping"]), {}), "reco_test")}
             for r in rows + null]
    return Section("MeGe and ReCo (Fel et al. fold protocol)", reading, tables=[(
        table, "MeGe = 1/(1 + mean S=) with its design interval (samples × fold models); ceiling: MeGe of "
               "the test–retest distances (1 for deterministic explainers); ReCo = max over γ of TPR + TNR − 1 "
               "separating S= from S≠.")])


# --------------------------------------------------------------------------------------
# The study's sections on the report page (stablesal.report.sections.common)
# --------------------------------------------------------------------------------------

def split_summary(results: dict) -> tuple[list[dict], list[dict], list[dict]]:
    """``(summary, gradient rows, perturbation rows)`` of the stability summary."""
    summary = results["stability_summary"]
    perturbation = set(results["perturbation_methods"])
    return (summary, [r for r in summary if r["method"] not in perturbation],
            [r for r in summary if r["method"] in perturbation])


@report_section("headline", order=30, stage="stability")
def _headline(results: dict, out: Path) -> Section:
    return headline_section(split_summary(results)[1])


@report_section("retest", order=40, stage="stability")
def _retest(results: dict, out: Path) -> Section:
    return retest_section(results["stability_summary"])


@report_section("decomposition", order=50, stage="stability")
def _decomposition(results: dict, out: Path) -> Section:
    return decomposition_section(results["stability_summary"], out / "figures")


@report_section("grouping", order=60, stage="stability")
def _grouping(results: dict, out: Path) -> Section:
    gradient_summary = split_summary(results)[1]
    model_sets = {r["model_set"] for r in gradient_summary}
    bars = [(plot_stability_bars(gradient_summary, out / "figures" / f"stability_{name}", model_set=name),
             f"{name} models: similarity of the maps of every pair of models, per method and grouping, 95 % design "
             "intervals; black ticks: the untrained-network null.") for name in ("main", "control")
            if name in model_sets]
    return grouping_section(results["grouping_contrasts"], gradient_summary, bars)


@report_section("grid", order=70, stage="stability")
def _grid(results: dict, out: Path) -> Section:
    return grid_section(results["grid_contrasts"])


@report_section("variance reduction", order=80, stage="stability")
def _reduction(results: dict, out: Path) -> Section:
    return reduction_section(results["variance_reduction"], out / "figures")


@report_section("mege", order=120, stage="folds")
def _mege(results: dict, out: Path) -> Section | None:
    folds = results["mege_folds"]
    if folds is None:
        return None
    return mege_section(folds["rows"], results["stability_summary"], folds["n_samples"],
                        [r for r in results["models"] if r["set"] == "fold"])


@report_section("perturbation", order=130, stage="perturbation")
def _perturbation(results: dict, out: Path) -> Section | None:
    summary, _, perturbation_summary = split_summary(results)
    if not perturbation_summary:
        return None
    return perturbation_section(perturbation_summary, summary, results["perturbation_settings"]["perturbation_samples"],
                                results["perturbation_n_images"])
