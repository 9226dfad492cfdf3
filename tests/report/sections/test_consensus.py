"""The consensus and planner readings are pure functions of result rows: checked on synthetic units;
and the consensus and planner sections built from the committed ``experiments/results/default.json``,
read with json (no model, no training), whose HTML holds the file's numbers formatted as the page
prints them (expected values are read from the file, so a regenerated file keeps these tests valid).
The maps' ``.npz`` files are not committed: the sections are built without the map figures they draw
from them (units without ``files``)."""

import copy
from pathlib import Path

import pytest

from stablesal.report.html import SECTIONS
from stablesal.report.sections.consensus import (
    calibration_reading, consensus_section, planner_reading, planner_section, power_reading, reachability_warning,
    reads, skipped_calibrations,
)

from tests.helpers.report_results import interval, page_text, section_list


def _unit(method, power_rank, power_two, can_discover=True, lone=True, fdr=0.045):
    tests = [{"test": "rank-sum", "power": power_rank, "power_low": power_rank - 0.1, "power_high": power_rank + 0.1,
              "on_object": 0.4, "on_object_low": 0.3, "on_object_high": 0.5, "n_models": 10, "n_reference": 0,
              "smallest_p": 1e-12, "lone_region_threshold": 0.05 / 64, "can_discover": True,
              "can_find_lone_region": True},
             {"test": "trained vs untrained", "power": power_two, "power_low": power_two - 0.1,
              "power_high": power_two + 0.1, "on_object": 0.5, "on_object_low": 0.4, "on_object_high": 0.6,
              "n_models": 3, "n_reference": 3, "smallest_p": 0.051 if not can_discover else 0.001,
              "lone_region_threshold": 0.05 / 64, "can_discover": can_discover, "can_find_lone_region": lone,
              "models_for_lone_region": 7, "permutations_for_lone_region": 1280}]
    calibration = [{"null": "permuted", "test": "rank-sum", "q": 0.05, "fdr": fdr, "fdr_low": fdr - 0.004,
                    "fdr_high": fdr + 0.004},
                   {"null": "pool", "test": "rank-sum", "q": 0.05, "fdr": 0.97, "fdr_low": 0.96, "fdr_high": 0.98}]
    return {"method": method, "grouping": "fastslic", "tests": tests, "calibration": calibration,
            "sentence": f"{method} with fastslic: 3 models for reliability 0.9", "validation": []}


def test_power_reading_names_the_best_unit_of_each_test_and_what_the_models_can_reach():
    units = [_unit("saliency", 0.7, 0.3), _unit("smoothgrad", 0.9, 0.2, can_discover=False, lone=False)]
    text = power_reading(units)
    assert ("rank-sum (agreement among the trained models, not evidence of learning): the largest share of object "
            "regions found is 0.90 [0.80, 1.00] (smoothgrad/fastslic)") in text
    assert ("trained vs untrained (learning beyond untrained): the largest share of object regions found is 0.30 "
            "[0.20, 0.40] (saliency/fastslic)") in text
    # the rank-sum test never leads: the test against the null comes first
    assert text.index("trained vs untrained (learning") < text.index("rank-sum (agreement")
    assert "it cannot find any region" in text and "about 7 of each would let it find a lone region" in text
    # without masks there is no power, but what the models can reach is still said
    for unit in units:
        for row in unit["tests"]:
            del row["power"]
    text = power_reading(units)
    assert not text.startswith("Power") and text.startswith("What these models can find")


def test_calibration_reading_states_ranges_and_the_untrained_share():
    text = calibration_reading([_unit("a", 0.5, 0.5, fdr=0.041), _unit("b", 0.5, 0.5, fdr=0.052)])
    assert "observed FDR 0.041–0.052 over 2 method × grouping units" in text
    assert "largest upper 95 % end 0.056, b/fastslic" in text and "2 of 2 have the upper end within q + 0.02" in text
    assert "finds regions in a share 0.97–0.97 of images" in text


def test_planner_reading_without_held_out_models_says_the_predictions_are_unchecked():
    assert "not checked here" in planner_reading([_unit("a", 0.5, 0.5)])
    unit = _unit("a", 0.5, 0.5)
    unit["validation"] = [{"method": "a", "grouping": "fastslic", "models": 4, "samples": 8, "pilot_samples": 32,
                           "predicted": 0.80, "observed": 0.86, "error": -0.06, "held_out": 16}]
    text = planner_reading([unit])
    assert "0 of 1 predictions are within ±0.05" in text and "largest error is -0.060" in text
    assert "1 of them are at another sample count than the pilot's" in text


@pytest.fixture
def consensus(default_results):
    """The file's consensus stage, its units without the maps' files (not committed)."""
    stage = copy.deepcopy(default_results["consensus"])
    for unit in stage["units"]:
        unit.pop("files", None)
    return stage


def test_the_tests_cover_every_section_of_the_module():
    assert {name for name in SECTIONS if SECTIONS[name].__module__ == "stablesal.report.sections.consensus"} == {
        "consensus"}


def test_the_registered_builder_gives_the_consensus_and_planner_sections(default_results, consensus, tmp_path):
    sections = section_list(SECTIONS["consensus"]({**default_results, "consensus": consensus}, tmp_path))
    assert [section.title for section in sections] == [consensus_section(consensus, tmp_path).title,
                                                       planner_section(consensus, tmp_path).title]
    assert all(section.reading for section in sections)
    page = page_text(sections)
    assert all(f"<h2>{section.title}</h2>" in page for section in sections)


def test_consensus_tables_give_every_test_and_calibration_row_of_the_file(consensus, tmp_path):
    page = page_text(consensus_section(consensus, tmp_path))
    assert consensus["units"]
    assert f"found with Benjamini–Hochberg at q = {consensus['settings']['q']:g} over each image's regions" in page
    for unit in consensus["units"]:
        for row in unit["tests"]:
            assert (f"<td>{unit['method']}</td><td>{unit['grouping']}</td><td>{row['test']}</td>"
                    f"<td>{row['n_models']}</td><td>{row['n_reference'] or ''}</td>"
                    f"<td>{interval(row, 'significant', low='_low', high='_high')}</td>"
                    f"<td>{interval(row, 'area', low='_low', high='_high')}</td>") in page
            assert f"<td>{row['smallest_p']:.2g}</td>" in page
        for row in unit["calibration"]:
            assert (f"<td>{row['null']}</td><td>{row['test']}</td><td>{row['n_studies']}</td>"
                    f"<td>{interval(row, 'fdr', 3, low='_low', high='_high')}</td>") in page


def test_planner_gives_the_recommendation_and_variance_terms_of_the_file(consensus, tmp_path):
    section = planner_section(consensus, tmp_path)
    page = page_text(section)
    assert f"From a pilot of {consensus['settings']['pilot_models']} models" in page
    for unit in consensus["units"]:
        models = unit["recommendation"]["models"]
        components = unit["components"]
        assert (f"<td>{unit['method']}</td><td>{unit['grouping']}</td>"
                f"<td>{models if models is not None else '—'}</td>") in page
        assert (f"<td>{components['V_mu']:.4f}</td><td>{components['E_m']:.4f}</td>"
                f"<td>{components['E_s']:.4f}</td>") in page
        for row in unit["validation"]:
            assert f"<td>{row['predicted']:.3f}</td><td>{row['observed']:.3f}</td><td>{row['error']:+.3f}</td>" in page
    assert [Path(path) for path, _ in section.figures] == [tmp_path / "figures" / "planner_reliability.png"]
    assert (tmp_path / "figures" / "planner_reliability.png").exists()


# ------------------------------ issue #28: a generic reference, agreement vs learning, skipped calibrations,
# what the design can reach, and the planner's named quantity and refusals


def _random_label_unit(method="saliency", can_discover=True, lone=False):
    """A unit of the stage after issue #28: the reference is the random-label family."""
    unit = _unit(method, 0.5, 0.4, can_discover=can_discover, lone=lone)
    unit["reference"] = "random_label"
    rank_sum, two_sample = unit["tests"]
    rank_sum["reads"] = "agreement"
    two_sample.update(test="trained vs random_label", reads="learning beyond random_label", reference="random_label",
                      n_models=4, n_reference=4, smallest_p=1 / 70 if can_discover else 0.1, q=0.05,
                      reference_for_lone_region=18)
    if not can_discover:
        two_sample["reference_for_discovery"] = 3
    unit["calibration"].append({"null": "permuted", "test": "trained vs random_label", "q": 0.05, "fdr": 0.0,
                                "fdr_low": 0.0, "fdr_high": 0.0, "n_studies": 200})
    unit["calibration_skipped"] = [{"null": "pool", "test": "rank-sum", "reference": "random_label", "pool": 4,
                                    "reason": "the random_label pool holds 4 models, not more than the 4 each study "
                                              "draws"}]
    unit["calibration"] = [dict(row, n_studies=200) for row in unit["calibration"] if row["null"] != "pool"]
    return unit


def test_rows_read_as_agreement_or_as_learning_beyond_their_reference():
    assert reads({"test": "rank-sum"}) == "agreement"
    assert reads({"test": "trained vs untrained"}) == "learning beyond untrained"   # rows before the null families
    assert reads({"test": "trained vs random_label", "reads": "learning beyond random_label"}) == \
        "learning beyond random_label"


def test_the_warning_says_no_region_is_reachable_and_how_many_reference_models_fix_it():
    units = [_random_label_unit(can_discover=False), _random_label_unit("smoothgrad")]
    text = reachability_warning(units)
    assert text.startswith("Warning: with this design no region can be found in 1 of 2 units")
    assert "with 4 trained and 4 random_label models the trained vs random_label test's smallest p-value is 0.1" in text
    assert ("Beside these 4 trained models, 3 random_label models would make a region reachable and 18 random_label "
            "models would make a lone region reachable") in text
    assert "Untrained and random-label references cost no labels" in text
    # every unit able to find a lone region: no warning
    for unit in units:
        unit["tests"][1].update(can_discover=True, can_find_lone_region=True)
    assert reachability_warning(units) == ""


def test_the_warning_computes_the_reference_count_for_rows_written_before_it():
    """An old row (no reference_for_*): the count comes from the permutation count in the settings.
    K = 4 and q/R = 0.05/64: 1/C(4 + R, 4) ≤ 0.05/64 needs C ≥ 1280 (≤ 10⁴ relabellings: the exact test):
    C(15, 4) = 1365, C(14, 4) = 1001, so R = 11."""
    unit = _unit("saliency", 0.5, 0.4, can_discover=True, lone=False)
    unit["tests"][1].update(n_models=4, n_reference=4, smallest_p=1 / 70)
    text = reachability_warning([unit], n_permutations=10_000)
    assert "no lone consistent region can be found in 1 of 1 units" in text
    assert "Beside these 4 trained models, 11 untrained models would make a lone region reachable" in text


def test_skipped_calibrations_are_said_with_their_reason_and_old_degenerate_pools_are_caught():
    unit = _random_label_unit()
    assert skipped_calibrations(unit) == unit["calibration_skipped"]
    text = calibration_reading([unit])
    assert "not run in 1 of 1 units (pool, rank-sum): the random_label pool holds 4 models" in text
    # an old unit whose pool calibration drew 4 of a pool of 4: one study repeated, not a rate
    old = _unit("a", 0.5, 0.5)
    old["calibration"][1].update(pool=4, n_models=4, n_reference=0, n_studies=200, fdr=0.667)
    assert "one study repeated 200 times" in skipped_calibrations(old)[0]["reason"]
    assert "finds regions in a share" not in calibration_reading([old])


def test_the_rank_sum_test_never_headlines_the_consensus_page(tmp_path):
    consensus = {"units": [_random_label_unit(can_discover=False)], "settings": {"q": 0.05, "n_permutations": 10_000},
                 "n_images": 24}
    for unit in consensus["units"]:
        unit.update(n_models=4, n_images=24)
    page = page_text(consensus_section(consensus, tmp_path))
    assert page.index("Warning: with this design no region can be found") < page.index("Agreement (rank-sum")
    assert page.index("Learning beyond the null (trained vs random-label)") < page.index("Agreement (rank-sum")
    assert "<td>trained vs random_label</td>" in page and "<td>learning beyond random-label</td>" in page
    prose = page[:page.index("<table")]
    assert "random_label" not in prose and "random-label models" in prose  # identifiers stay in the tables
    assert page.index("<td>trained vs random_label</td>") < page.index("<td>rank-sum</td>")
    assert "Calibrations not run, and why." in page


def test_the_default_file_still_renders_and_warns_about_its_design(consensus, tmp_path):
    """The committed file predates the null families: its 4 vs 4 design cannot find a lone region,
    and its pool calibrations drew 4 of 4 networks; the page says both."""
    page = page_text(consensus_section(consensus, tmp_path))
    two_sample = [row for unit in consensus["units"] for row in unit["tests"] if row["test"] != "rank-sum"]
    if any(not row["can_find_lone_region"] for row in two_sample):
        assert "Warning: with this design" in page and "would make a lone region reachable" in page
    pools = [row for unit in consensus["units"] for row in unit["calibration"] if row["null"] == "pool"]
    if any(row["pool"] <= row["n_models"] + row.get("n_reference", 0) for row in pools):
        assert "one study repeated" in page


def test_the_planner_names_its_quantity_and_says_which_units_get_no_plan(tmp_path):
    unit = _unit("a", 0.5, 0.5)
    unit["sentence"] = "a with fastslic: no plan, because the mean map's shared component is not above the null"
    unit["plan"] = {"null": "random_label", "refused": "because ...", "models_low": None, "models_high": None}
    assert "No plan for 1 of 1 units: their shared component is not above the random_label null (a/fastslic)" in \
        planner_reading([unit])
