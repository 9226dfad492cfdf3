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
    calibration_reading, consensus_section, planner_reading, planner_section, power_reading,
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
    assert "rank-sum: the largest share of object regions found is 0.90 [0.80, 1.00] (smoothgrad/fastslic)" in text
    assert "trained vs untrained: the largest share of object regions found is 0.30 [0.20, 0.40] (saliency/fastslic)" \
        in text
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
