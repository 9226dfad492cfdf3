"""Tests of :mod:`stablesal.report.sections.stability` on the committed
``experiments/results/default.json``, read with json (no model, no training): every section is built
by its registered builder, as the page builds it, and its HTML holds the file's numbers formatted as
the page prints them. Expected values are read from the file, so a regenerated file keeps these
tests valid."""

import math
from pathlib import Path

import pytest

import stablesal.report.sections.stability  # noqa: F401  (registers the study's section builders)
from stablesal.report.html import SECTIONS

from tests.helpers.report_results import interval, page_text, section_list

STABILITY = ["headline", "nulls", "retest", "decomposition", "grouping", "grid", "variance reduction", "mege",
             "perturbation"]


def main_rows(results: dict, family: str | None = None) -> list[dict]:
    """The main models' summary rows (of the gradient or perturbation methods when ``family`` says so)."""
    perturbation = set(results["perturbation_methods"])
    return [r for r in results["stability_summary"] if r["model_set"] == "main"
            and (family is None or (r["method"] in perturbation) == (family == "perturbation"))]


def test_the_tests_cover_every_section_of_the_module():
    module = "stablesal.report.sections.stability"
    assert {name for name in SECTIONS if SECTIONS[name].__module__ == module} == set(STABILITY)


@pytest.mark.parametrize("name", STABILITY)
def test_every_section_builds_from_the_results_alone(name, default_results, tmp_path):
    """Each builder returns a titled section with a reading; the figures it draws are written under
    the report folder it is given; the page holds its title."""
    sections = section_list(SECTIONS[name](default_results, tmp_path))
    assert sections
    for section in sections:
        assert section.title and section.reading
        for path, caption in section.figures:
            assert caption and Path(path).is_relative_to(tmp_path) and Path(path).exists()
        assert f"<h2>{section.title}</h2>" in page_text(section)


def test_headline_table_holds_every_main_method_with_the_numbers_of_the_file(default_results, tmp_path):
    page = page_text(SECTIONS["headline"](default_results, tmp_path))
    rows = [r for r in main_rows(default_results, "gradient") if r["method"] != "random"]
    assert rows and "<table class=" in page
    for row in rows:
        for key, digits in (("spearman_above_random_label", 2), ("spearman_above_bn_calibrated", 2),
                            ("spearman_above_untrained", 2), ("spearman", 2), ("spearman_random_label", 2),
                            ("icc_beyond_random_label", 2), ("icc", 2), ("spearman_retest", 2), ("ssim", 2),
                            ("deletion_auc", 3), ("mu_fidelity", 2)):
            assert f"<td>{interval(row, key, digits)}</td>" in page, (row["method"], row["grouping"], key)


def test_headline_ranks_first_the_method_furthest_above_the_random_label_null(default_results, tmp_path):
    """The order is the excess over the strictest null (random-label networks); the counts of rows
    above each null are Holm-controlled, read from the file's ranking."""
    page = page_text(SECTIONS["headline"](default_results, tmp_path))
    rows = [r for r in main_rows(default_results, "gradient") if r["method"] != "random"
            and math.isfinite(r["spearman_above_random_label"])]
    best = max(rows, key=lambda r: r["spearman_above_random_label"])
    assert f"<tr><td>1</td><td>{best['method']}</td><td>{best['grouping']}</td>" in page
    assert (f"the first is {best['method']} / {best['grouping']}: {interval(best, 'spearman_above_random_label')} "
            f"above it (raw {interval(best, 'spearman')}") in page
    ranking = default_results["ranking"]
    assert ranking["null"] == "random_label" and ranking["rows"][0]["method"] == best["method"]
    for null, name in (("random_label", "random-label"), ("bn_calibrated", "BN-calibrated"), ("untrained", "untrained")):
        above = [r for r in ranking["rows"] if r[f"above_{null}_holm"] <= 0.05 and r[f"above_{null}"] > 0]
        assert f"{name} {len(above)} of {len(ranking['rows'])}" in page
    unresolved = [r for r in ranking["rows"][1:] if r["behind_first_holm"] > 0.05]
    assert (f"not resolved: the paired difference (same images and models) to {len(unresolved)} of the "
            f"{len(ranking['rows']) - 1} others" in page) == bool(unresolved)


def test_nulls_section_gives_the_rank_correlation_across_nulls_of_the_file(default_results, tmp_path):
    page = page_text(SECTIONS["nulls"](default_results, tmp_path))
    for entry in default_results["null_rank_agreement"]:
        assert interval(entry, "rank_correlation") in page


def test_retest_table_gives_each_random_methods_ceiling_from_the_file(default_results, tmp_path):
    page = page_text(SECTIONS["retest"](default_results, tmp_path))
    rows = [r for r in main_rows(default_results) if r.get("random") and r["method"] != "random"]
    assert rows
    for row in rows:
        assert (f"<td>{row['method']}</td><td>{row['grouping']}</td><td>{interval(row, 'spearman_retest')}</td>"
                f"<td>{interval(row, 'spearman')}</td><td>{interval(row, 'spearman_corrected')}</td>") in page


def test_decomposition_gives_the_variance_shares_of_the_file(default_results, tmp_path):
    page = page_text(SECTIONS["decomposition"](default_results, tmp_path))
    rows = [r for r in main_rows(default_results) if "share_explainer" in r]
    assert rows
    for row in rows:
        for component in ("explainer", "seed", "split"):
            assert f"<td>{interval(row, f'share_{component}')}</td>" in page
        assert f"<td>{interval(row, 'variance_total', 3)}</td>" in page


def test_grid_contrasts_give_the_segment_sizes_and_differences_of_the_file(default_results, tmp_path):
    page = page_text(SECTIONS["grid"](default_results, tmp_path))
    contrasts = [c for c in default_results["grid_contrasts"] if c["method"] != "random"]
    assert contrasts
    for contrast in contrasts:
        assert (f"<td>{contrast['method']}</td><td>{contrast['grouping']}</td>"
                f"<td>{contrast['segment_size']:.1f} vs {contrast['reference_segment_size']:.1f}</td>"
                f"<td>{interval(contrast, 'spearman_difference', 3)}</td>") in page


def test_variance_reduction_counts_the_cases_of_the_file(default_results, tmp_path):
    page = page_text(SECTIONS["variance reduction"](default_results, tmp_path))
    real = [r for r in default_results["variance_reduction"] if r["method"] != "random"]
    below = [r for r in real if r.get("measured_ci_high", math.inf) < r["mean_segment_size"]]
    assert real
    assert f"independent-pixel factor d/m in {len(below)} of {len(real)} method × partition cases" in page


def test_mege_table_gives_each_fold_row_of_the_file(default_results, tmp_path):
    page = page_text(SECTIONS["mege"](default_results, tmp_path))
    folds = default_results["mege_folds"]
    for row in folds["rows"]:
        assert (f"<td>{row['method']}</td><td>{row['grouping']}</td><td>{interval(row, 'mege')}</td>") in page
        assert f"<td>{interval(row, 'reco')}</td><td>{row['n_same']}</td><td>{row['n_different']}</td>" in page
    models = [m for m in default_results["models"] if m["set"] == "fold"]
    accuracies = [m["test_acc"] for m in models]
    assert (f"{len(models)} models, each trained on every fold but one of the first training images (test "
            f"accuracy {min(accuracies):.1%}–{max(accuracies):.1%}), explain {folds['n_samples']} training "
            "images") in page


def test_perturbation_table_gives_every_preset_of_the_file(default_results, tmp_path):
    page = page_text(SECTIONS["perturbation"](default_results, tmp_path))
    rows = main_rows(default_results, "perturbation")
    assert rows
    for row in rows:
        assert (f"<td>{row['family']}</td><td>{row['method']}</td><td>{row['n_images']}</td>"
                f"<td>{interval(row, 'spearman_above_random_label')}</td><td>{interval(row, 'spearman')}</td>"
                f"<td>{interval(row, 'spearman_random_label')}</td>") in page


def test_the_noise_to_signal_sentence_reads_whether_or_not_a_method_is_worse(default_results, tmp_path):
    """Without a worse method the sentence starts on its own (it once began "it is better for" after a
    full stop); with one it continues the list of the worse."""
    from stablesal.report.sections.stability import reduction_section

    rows = default_results["variance_reduction"]
    for row in rows:  # none worse: every gain's interval above 1, or not separated
        if row.get("nsr_gain_ci_high") is not None and row["nsr_gain_ci_high"] < 1:
            row["nsr_gain_ci_high"] = 1.5
    reading = reduction_section(rows, tmp_path).reading
    assert ". it is better" not in reading and "better noise-to-signal ratio than its pixel version for" in reading
    worse = dict(rows[0], method="saliency", nsr_gain=0.5, nsr_gain_ci_low=0.4, nsr_gain_ci_high=0.6)
    reading = reduction_section([worse] + rows[1:], tmp_path).reading
    assert "has a worse noise-to-signal ratio than its pixel version for saliency" in reading
    assert "; it is better for" in reading


def test_a_corrected_similarity_above_1_is_explained(default_results):
    """The correction for attenuation divides two noisy estimates and can pass 1: the page says how
    to read it, and names the rows, exactly when a value or an upper end is above 1."""
    import copy

    from stablesal.report.sections.stability import retest_section

    summary = copy.deepcopy(default_results["stability_summary"])
    random_rows = [r for r in summary if r["model_set"] == "main" and r.get("random")
                   and r.get("spearman_corrected") is not None and r["spearman_corrected"] == r["spearman_corrected"]]
    for row in random_rows:
        row["spearman_corrected_ci_high"] = min(row.get("spearman_corrected_ci_high", 0.5), 0.99)
        row["spearman_corrected"] = min(row["spearman_corrected"], 0.9)
    assert "above 1 (" not in retest_section(summary).reading
    random_rows[0]["spearman_corrected_ci_high"] = 1.12
    reading = retest_section(summary).reading
    assert "1 corrected value or interval reaches above 1 (" in reading
    assert f"{random_rows[0]['method']} / {random_rows[0]['grouping']}" in reading.split("reaches above 1 (")[1]
    assert "read a value above 1 as at the ceiling" in reading


def test_the_perturbation_budget_is_n_samples_and_older_files_keep_theirs():
    from stablesal.report.sections.stability import perturbation_budget

    assert perturbation_budget({"n_samples": 300}) == 300
    # written before the one budget name: n_samples was the gradient methods' count (unused there)
    assert perturbation_budget({"n_samples": 32, "perturbation_samples": 300}) == 300
