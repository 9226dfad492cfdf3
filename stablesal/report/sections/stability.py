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

import numpy as np
from scipy.stats import spearmanr

from ..html import Section, report_section
from ...explain.explainers import is_control, row_family
from ...core.intervals import coverage_note
from ...core.multiple_testing import holm
from ...core.settings import NULL_NAMES, NULL_SETS
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


FAMILY_ALPHA = 0.05  # family-wise error rate of every count across rows (Holm)


def holm_sides(rows: list[dict], key: str) -> list[str]:
    """Where each row's ``key`` lies with respect to 0 when the rows are counted together: "above"
    or "below" where Holm's adjusted p-value of ``key_p`` across ``rows`` is ≤ :data:`FAMILY_ALPHA`,
    else "not separated". Rows without ``key_p`` (a results file from before p-values were kept)
    fall back to their marginal interval (:func:`side`)."""
    if not rows or not all(f"{key}_p" in r for r in rows):
        return [side(r, key) for r in rows]
    adjusted = holm(np.array([r[f"{key}_p"] for r in rows], dtype=float))
    return ["not separated" if not p <= FAMILY_ALPHA else "above" if r[key] > 0 else "below"
            for r, p in zip(rows, adjusted)]


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


def null_key(rows: list[dict], metric: str = "spearman") -> str:
    """The key rows are ranked by: ``<metric>_above_<null>`` for the first null family every row
    has (random-label, then BN-calibrated, then untrained: :data:`~stablesal.core.settings.NULL_SETS`),
    else the raw ``metric``."""
    for null in NULL_SETS:
        if rows and all(f"{metric}_above_{null}" in r for r in rows):
            return f"{metric}_above_{null}"
    return metric


def nulls_of(rows: list[dict]) -> list[str]:
    """The null families every row has, in the order of :data:`~stablesal.core.settings.NULL_SETS`."""
    return [null for null in NULL_SETS if rows and all(f"spearman_above_{null}" in r for r in rows)]


def headline_ranking(summary: list[dict]) -> tuple[list[dict], str]:
    """The headline's order, the one ranking of methods (the page's headline and the terminal
    summary, :func:`stablesal.pipeline.run.terminal_summary`): the main-model rows of ``summary``
    but the random maps, best first by cross-seed Spearman above the first null family present
    (:func:`null_key`: random-label networks when they ran), or by raw Spearman when no null ran (a
    NaN ranks last; ties keep the summary's order). Returns the ranked rows and the key they are
    ranked by."""
    rows = [r for r in _main(summary) if not is_control(r)]
    key = null_key(rows)
    return sorted(rows, key=lambda r: -(r[key] if math.isfinite(r[key]) else -math.inf)), key


def headline_table(summary: list[dict]) -> list[dict]:
    """The headline's table, one row per method × grouping in :func:`headline_ranking`'s order,
    each value as the page prints it (with its interval): the agreement beyond every null present
    (random-label first), the ICC beyond the first, then the raw values."""
    ranked, key = headline_ranking(summary)
    nulls = nulls_of(ranked)
    random_rows = {r["grouping"]: r for r in _main(summary) if is_control(r)}
    table = []
    for rank, r in enumerate(ranked, 1):
        row = {"rank": rank, "method": r["method"], "grouping": r["grouping"], "draws": r.get("draws", "independent")}
        for null in nulls:
            row[f"Spearman above {NULL_NAMES[null]}"] = fmt(r, f"spearman_above_{null}")
        row["Spearman"] = fmt(r, "spearman")
        for null in nulls[:1]:
            row[f"{NULL_NAMES[null]} null"] = fmt(r, f"spearman_{null}")
            if f"icc_beyond_{null}" in r:
                row[f"ICC beyond {NULL_NAMES[null]}"] = fmt(r, f"icc_beyond_{null}")
        row.update({"ICC": fmt(r, "icc"), "random maps": fmt(random_rows.get(r["grouping"], {}), "spearman"),
                    "retest ceiling": fmt(r, "spearman_retest"), "corrected": fmt(r, "spearman_corrected"),
                    "SSIM": fmt(r, "ssim"),
                    f"deletion AUC {DELETION}": fmt(r, "deletion_auc", 3), f"µFidelity {MU_FIDELITY}": fmt(r, "mu_fidelity")})
        table.append(row)
    return table


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


NULL_DESCRIPTIONS = {
    "random_label": "networks trained by the same recipe on the same images with their labels permuted (they learn "
                    "the images' statistics but no link from image to class)",
    "bn_calibrated": "untrained networks whose batch-norm statistics were re-estimated on training images (no "
                     "gradient step)",
    "untrained": "untrained networks of the same architecture, each with its own initialisation",
}


def _holm_count(ranking: dict | None, null: str) -> tuple[int, int] | None:
    """``(rows above the null at family-wise α, rows)`` from the ranking's Holm-adjusted p-values."""
    if not ranking or not ranking.get("rows") or f"above_{null}_holm" not in ranking["rows"][0]:
        return None
    rows = ranking["rows"]
    alpha = ranking["alpha"]
    return sum(1 for r in rows if r[f"above_{null}_holm"] <= alpha and r[f"above_{null}"] > 0), len(rows)


def headline_section(summary: list[dict], ranking: dict | None = None) -> Section:
    """Every method × grouping ranked by cross-seed Spearman above the random-label null (the first family present).
    ``ranking`` (:func:`stablesal.studies.stability.statistics.ranking_rows`) holds the paired
    differences and Holm-adjusted p-values the reading's orderings and counts come from; without it
    (a results file from before they were computed) the reading states no ordering."""
    rows = [r for r in _main(summary) if not is_control(r)]
    random_rows = {r["grouping"]: r for r in _main(summary) if is_control(r)}
    ranked, key = headline_ranking(summary)
    nulls = nulls_of(ranked)
    table = headline_table(summary)
    if not ranked:
        return Section("Headline: every method ranked", "No method ran.")
    best = ranked[0]
    reading = draws_note(summary) + " "
    if nulls:
        null = nulls[0]
        name = NULL_NAMES[null]
        reading += (f"Ranked by how far their cross-seed Spearman correlation rises above that of the {name} null "
                    f"({best.get(f'n_{null}', '?')} {NULL_DESCRIPTIONS[null]}), the first is {_label(best)}: "
                    f"{fmt(best, key)} above it (raw {fmt(best, 'spearman')}, {name} {fmt(best, f'spearman_{null}')}). ")
        paired = (ranking or {}).get("rows") or []
        if ranking and ranking.get("null") == null and paired and len(paired) > 1:
            alpha = ranking["alpha"]
            top = paired[0]
            unresolved = [r for r in paired[1:] if not r["behind_first_holm"] <= alpha]
            if (top["method"], top["grouping"]) != (best["method"], best["grouping"]):
                unresolved = paired[1:]  # the two orders disagree (a tie): claim nothing
            if unresolved:
                reading += (f"The first place is not resolved: the paired difference (same images and models) to "
                            f"{len(unresolved)} of the {len(paired) - 1} others is not above 0 at a family-wise "
                            f"{alpha:.0%} (Holm): " + ", ".join(
                                f"{_label(r)} {fmt(r, 'behind_first')} behind" for r in unresolved[:5])
                            + (", ..." if len(unresolved) > 5 else "") + ". ")
            else:
                reading += (f"The first place is resolved: its paired difference to every other combination is "
                            f"above 0 at a family-wise {alpha:.0%} (Holm). ")
        counts = [(n, _holm_count(ranking, n)) for n in nulls]
        counted = [(n, c) for n, c in counts if c is not None]
        if counted:
            reading += ("Above each null at a family-wise 5 % across the rows (Holm): " + "; ".join(
                f"{NULL_NAMES[n]} {c[0]} of {c[1]}" for n, c in counted) + ". ")
            if len(counted) > 1:
                every = [r for r in paired if all(r[f"above_{n}_holm"] <= ranking["alpha"] and r[f"above_{n}"] > 0
                                                  for n, _ in counted)]
                reading += (f"Above every null family at once: {len(every)} of {len(paired)}; only those are credited "
                            "to learning whatever the null. ")
        if f"icc_beyond_{null}" in best:
            reading += (f"In the generalizability coefficient (the ICC of one model's signed map, docs/methods.md §3) "
                        f"the first reaches {fmt(best, 'icc')} against {fmt(best, f'icc_{null}')} for the {name} "
                        f"networks: {fmt(best, f'icc_beyond_{null}')} of the agreement the null leaves is reached. ")
        raw_best = max(rows, key=lambda r: r["spearman"])
        if raw_best is not best:
            reading += (f"By raw Spearman alone the first would be {_label(raw_best)} ({fmt(raw_best, 'spearman')}), "
                        f"but its {name} null is {fmt(raw_best, f'spearman_{null}')}: that much agreement needs no "
                        "class evidence. ")
    else:
        reading += (f"No null family ran, so no agreement can be credited to learning. The most similar maps across "
                    f"retrained models are {_label(best)} (Spearman {fmt(best, 'spearman')}). ")
    reading += degenerate_note(summary)
    reading += coverage_note(best["n_models"]) + " "
    if random_rows:
        pixel_random = random_rows.get("pixel") or next(iter(random_rows.values()))
        reading += (f"I.i.d. random maps score Spearman {fmt(pixel_random, 'spearman')} ({pixel_random['grouping']}); "
                    "grouped random maps share their segments, so "
                    + ", ".join(f"{g}: {fmt(r, 'spearman')}" for g, r in random_rows.items() if g != "pixel") + ".")
    caption = ("Main models. Spearman and SSIM between the grey maps of every pair of retrained models, with 95 % "
               "design intervals over images and models (unconditional: they treat the retrained models as a sample, "
               "so they describe models retrained anew, not only these); 'above <null>': main minus the same between "
               "the null family's networks; 'ICC': mean Pearson correlation of the signed maps (the generalizability "
               "coefficient of one map), 'ICC beyond': (ICC − null ICC) / (1 − null ICC); 'retest ceiling': two runs "
               "of the explainer on the same model with different seeds (1 for deterministic methods); 'corrected': "
               "Spearman / ceiling (correction for attenuation); deletion AUC and µFidelity of model 0 (interval "
               "over images).")
    title = (f"Headline: agreement beyond the {NULL_NAMES[nulls[0]]} null" if nulls
             else "Headline: agreement across retrained models")
    return Section(title, reading, tables=[(table, caption)])


def nulls_section(summary: list[dict], agreement: list[dict], ranking: dict | None) -> Section | None:
    """How the ranking and the verdicts move across null families: the rank correlation of the
    methods × groupings ordered by their excess over each pair of nulls (with its design interval),
    and the rows credited by one null but not by another (Holm across rows)."""
    rows = [r for r in _main(summary) if not is_control(r)]
    nulls = nulls_of(rows)
    if len(nulls) < 2:
        return None
    reading = ("Each null family removes agreement that needs no class evidence: the architecture and the input "
               "(untrained), the data's statistics (BN-calibrated), and everything training does without a link "
               "from image to class (random-label). Which of them agrees most is measured, not assumed: it can "
               "differ by method. ")
    for entry in agreement:
        reading += (f"Ranked by the excess over the {NULL_NAMES[entry['null']]} null and over the "
                    f"{NULL_NAMES[entry['other']]} null, the {entry['n_rows']} combinations correlate at "
                    f"{fmt(entry, 'rank_correlation')} (Spearman, design interval). ")
    paired = (ranking or {}).get("rows") or []
    if paired and f"above_{nulls[0]}_holm" in paired[0]:
        alpha = ranking["alpha"]
        strict = nulls[0]
        for weak in nulls[1:]:
            if f"above_{weak}_holm" not in paired[0]:
                continue
            def above(row, null):
                return row[f"above_{null}_holm"] <= alpha and row[f"above_{null}"] > 0
            for first, second in ((weak, strict), (strict, weak)):
                credited = [r for r in paired if above(r, first) and not above(r, second)]
                reading += (f"Above the {NULL_NAMES[first]} null but not above the {NULL_NAMES[second]} null (Holm, "
                            f"family-wise {alpha:.0%}): {len(credited)} of {len(paired)}"
                            + (" (" + ", ".join(_label(r) for r in credited[:6])
                               + (", ..." if len(credited) > 6 else "") + ")" if credited else "") + ". ")
    table = [{"method": r["method"], "grouping": r["grouping"],
              **{f"Spearman above {NULL_NAMES[n]}": fmt(r, f"spearman_above_{n}") for n in nulls},
              **{f"ICC beyond {NULL_NAMES[n]}": fmt(r, f"icc_beyond_{n}") for n in nulls if f"icc_beyond_{n}" in r},
              **{f"{NULL_NAMES[n]} Spearman": fmt(r, f"spearman_{n}") for n in nulls}}
             for r in headline_ranking(summary)[0]]
    return Section("How the verdict moves across null families", reading,
                   tables=[(table, "Main models against each null family, 95 % design intervals; rows in the "
                            "headline's order.")])


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
    beyond_one = [r for r in corrected if r["spearman_corrected"] > 1 or r.get("spearman_corrected_ci_high", 0) > 1]
    if beyond_one:
        reading += (f" {len(beyond_one)} corrected value{'s' if len(beyond_one) > 1 else ''} or interval"
                    f"{'s reach' if len(beyond_one) > 1 else ' reaches'} above 1 ({', '.join(_label(r) for r in beyond_one[:3])}"
                    f"{', …' if len(beyond_one) > 3 else ''}): the correction divides two noisy estimates, so it can "
                    "exceed 1 although the agreement it corrects cannot; read a value above 1 as at the ceiling, and "
                    "the part of an interval above 1 as no information beyond that.")
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
        resolved = holm_sides(pool, key).count("above")
        reading += (f"{component.capitalize()} share: from {fmt(smallest, key)} ({_label(smallest)}) to "
                    f"{fmt(largest, key)} ({_label(largest)}), above 0 in {resolved} of {len(pool)}"
                    + (" random combinations" if component == "explainer" else "") + " (Holm across them). ")
    if "split" in components and "seed" in components:
        both = [r for r in rows if not is_control(r) and "share_split_minus_seed" in r]
        sides = holm_sides(both, "share_split_minus_seed")
        reading += (f"The data split outweighs the optimiser seed (paired difference of the shares, resolved at a "
                    f"family-wise 5 % across the rows, Holm) in {sides.count('above')} of {len(both)} combinations "
                    f"and the seed outweighs the split in {sides.count('below')}. ")
    contrasts = [r for r in rows if not is_control(r) and "spearman_main_minus_control" in r]
    if contrasts:
        sides = holm_sides(contrasts, "spearman_main_minus_control")
        lower = [r for r, where in zip(contrasts, sides) if where == "below"]
        higher = [r for r, where in zip(contrasts, sides) if where == "above"]
        widest = max(r["spearman_main_minus_control_ci_high"] - r["spearman_main_minus_control_ci_low"]
                     for r in contrasts)
        reading += (f"Directly: models on disjoint splits agree less (Spearman, main minus control, below 0 at a "
                    f"family-wise 5 %, Holm) "
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
        sides = holm_sides(present, key)
        better = sides.count("above" if direction > 0 else "below")
        worse = sides.count("below" if direction > 0 else "above")
        parts.append(f"{label}: super-pixels better in {better}, worse in {worse}, not separated in "
                     f"{len(present) - better - worse} of {len(present)}")
    reading = ("Each super-pixel grouping against a grid whose cells have the same mean size (within 10 %), "
               "same models and images; a difference counts only when it is resolved at a family-wise 5 % across the "
               "rows of its metric (Holm). "
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
    sides = holm_sides(rows, "spearman_difference")
    up = [c for c, where in zip(rows, sides) if where == "above"]
    down = [c for c, where in zip(rows, sides) if where == "below"]
    reading = (f"Grouping changed the cross-seed Spearman correlation against the pixel map of the same method "
               f"(resolved at a family-wise 5 % across the rows, Holm): up in {len(up)}, down in {len(down)}, not "
               f"separated in {len(rows) - len(up) - len(down)} of {len(rows)} method × grouping cases. ")
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
            + ". Read gains against the nulls of the headline.")
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
    reading += ("it is better for" if worse else "The grouped method as computed (grouping inside each sample) has a "
                "better noise-to-signal ratio than its pixel version for")
    reading += (f" {len(better)} and is not separated from it for {len(defined) - len(better) - len(worse)}"
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


def sampling_reading(summary: list[dict], ranking: dict | None = None) -> str:
    """Suppression-based sampling against Gaussian noise (SmoothGrad), pixel maps: both rows' values
    and, from ``ranking["contrasts"]``, the paired difference of their agreement beyond the null
    (same images and models), the only basis on which the reading orders them."""
    noise = next((r for r in _main(summary) if r["method"] == "smoothgrad" and r["grouping"] == "pixel"), None)
    erased = next((r for r in _main(summary) if r["method"] == "suppression" and r["grouping"] == "pixel"), None)
    if not (noise and erased):
        return "SmoothGrad and suppression were not both in this study."
    key = null_key([noise, erased])
    null = key.split("_above_", 1)[1] if "_above_" in key else None
    contrast = next((c for c in (ranking or {}).get("contrasts") or []
                     if (c["method"], c["reference"], c["grouping"]) == ("suppression", "smoothgrad", "pixel")), None)
    if contrast is None:
        verdict = "no paired difference in this results file, so no ordering is claimed"
    else:
        where = side(contrast, "difference")
        verdict = (f"paired difference {fmt(contrast, 'difference')}: "
                   + ("suppression is more stable" if where == "above" else
                      "SmoothGrad is more stable" if where == "below" else "not resolved"))
    return (f"Suppression sampling vs Gaussian noise (SmoothGrad), pixel maps: cross-seed Spearman "
            + (f"above the {NULL_NAMES[null]} null " if null else "") + f"{fmt(erased, key)} vs {fmt(noise, key)} "
            f"({verdict}); raw {fmt(erased, 'spearman')} vs {fmt(noise, 'spearman')}; retest ceiling "
            f"{fmt(erased, 'spearman_retest')} vs {fmt(noise, 'spearman_retest')}"
            + (f"; deletion AUC {fmt(erased, 'deletion_auc', 3)} vs {fmt(noise, 'deletion_auc', 3)}."
               if "deletion_auc" in noise else "."))


def fidelity_reading(summary: list[dict]) -> str:
    """Stability above the null against fidelity, one point per method (pixel maps): the
    groupings of one method are not independent evidence."""
    rows = [r for r in _main(summary) if not is_control(r) and r["grouping"] == "pixel" and "deletion_auc" in r]
    key = null_key(rows)
    rows = [r for r in rows if key != "spearman"]
    if len(rows) < 4:
        return "Too few methods for a trade-off."
    null = NULL_NAMES[key.split("_above_", 1)[1]]
    test = spearmanr([r[key] for r in rows], [r["deletion_auc"] for r in rows])
    verdict = ("stabler maps tend to be less faithful" if test.statistic > 0 and test.pvalue < 0.05 else
               "stabler maps tend to be more faithful" if test.statistic < 0 and test.pvalue < 0.05 else
               "no relation can be claimed at this number of methods")
    return (f"Across {len(rows)} methods (pixel maps, one point each), the rank correlation between cross-seed "
            f"Spearman above the {null} null and model 0's deletion AUC is {test.statistic:+.2f} "
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


def perturbation_section(rows: list[dict], summary: list[dict], samples: int, count: int,
                         ranking: dict | None = None) -> Section:
    """Perturbation presets next to the gradient methods, pixel maps, same statistics; an ordering
    of the presets only from the paired differences of ``ranking`` (Holm across the comparisons)."""
    main = [r for r in _main(summary) if r["grouping"] == "pixel"]
    presets = [r for r in _main(rows) if not is_control(r)]
    key = null_key(main)
    null = key.split("_above_", 1)[1] if "_above_" in key else None
    name = NULL_NAMES[null] if null else ""
    ranked = sorted(main, key=lambda r: -(r.get(key, r["spearman"])))
    table = [{"family": row_family(r), "method": r["method"], "n images": r["n_images"],
              **({f"Spearman above {name}": fmt(r, key)} if null else {}), "Spearman": fmt(r, "spearman"),
              **({name: fmt(r, f"spearman_{null}")} if null else {}), "retest": fmt(r, "spearman_retest"),
              "corrected": fmt(r, "spearman_corrected"), f"deletion AUC {DELETION}": fmt(r, "deletion_auc", 3),
              f"µFidelity {MU_FIDELITY}": fmt(r, "mu_fidelity"), "s / model": round(r["explain_seconds_per_model"], 2)}
             for r in ranked]
    if not presets:
        return Section("Perturbation methods across seeds", "No perturbation preset ran.")
    best = max(presets, key=lambda r: r.get(key, r["spearman"]))
    reading = (draws_note(rows) + f" On {count} test images with {samples} samples for RISE, LIME and KernelSHAP, the "
               f"preset with the highest estimate " + (f"above its {name} null" if null else "of cross-seed Spearman")
               + f" is {best['method']} ({fmt(best, key)}; raw {fmt(best, 'spearman')}"
               + (f", {name} {fmt(best, f'spearman_{null}')}" if null else "")
               + f", retest {fmt(best, 'spearman_retest')}). ")
    paired = (ranking or {}).get("rows") or []
    if paired and len(paired) > 1 and "behind_first_holm" in paired[1]:
        alpha = ranking["alpha"]
        unresolved = [r for r in paired[1:] if not r["behind_first_holm"] <= alpha]
        reading += ("Its lead is resolved against every other preset (paired differences, Holm). "
                    if not unresolved else
                    "Its lead is not resolved (paired difference, same images and models, Holm at family-wise "
                    f"{alpha:.0%}) against " + ", ".join(f"{r['method']} ({fmt(r, 'behind_first')} behind)"
                                                         for r in unresolved) + ". ")
    else:
        reading += "No ordering of the presets is claimed (no paired differences in this results file). "
    noisy = [r for r in presets if r.get("random") and math.isfinite(r.get("spearman_corrected", float("nan")))
             and side(r, "spearman_corrected", 1.0) != "below"]
    if noisy:
        reading += ("Within their own sampling noise (corrected similarity not below 1): "
                    + ", ".join(r["method"] for r in noisy) + ". ")
    indistinct = [r for r in presets if null and side(r, key) == "not separated"]
    if indistinct:
        reading += (f"Not distinguishable from the {name} networks: " + ", ".join(r["method"] for r in indistinct)
                    + ". ")
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
    return headline_section(split_summary(results)[1], results.get("ranking"))


@report_section("nulls", order=35, stage="stability")
def _nulls(results: dict, out: Path) -> Section | None:
    return nulls_section(split_summary(results)[1], results.get("null_rank_agreement") or [], results.get("ranking"))


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
             "intervals; black ticks: the random-label null (the first family present).") for name in ("main", "control")
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
    return perturbation_section(perturbation_summary, summary, perturbation_budget(results["perturbation_settings"]),
                                results["perturbation_n_images"], results.get("perturbation_ranking"))


def perturbation_budget(settings: dict) -> int:
    """The presets' samples per map in a results file's ``perturbation_settings``: ``n_samples``;
    files written before the study had one budget name kept it as ``perturbation_samples`` (their
    ``n_samples`` was the gradient methods' count, unused by that study)."""
    return int(settings.get("perturbation_samples", settings["n_samples"]))
