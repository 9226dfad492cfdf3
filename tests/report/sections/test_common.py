"""Tests of :mod:`stablesal.report.sections.common`: the report-wide sections built from the
committed ``experiments/results/default.json``, read with json (no model, no training), whose HTML
holds the file's numbers formatted as the page prints them (expected values are read from the file,
so a regenerated file keeps these tests valid); and the section registry on the quick report."""

import json
import shutil
from pathlib import Path

import pytest

import stablesal.report.sections.common  # noqa: F401  (registers the report-wide section builders)
from stablesal.report.html import SECTIONS

from tests.helpers.report_results import interval, page_text, section_list

COMMON = ["warnings", "setup", "left out", "sampling", "fidelity", "sanity", "factors", "inpainting", "examples", "timing"]


def test_the_tests_cover_every_section_of_the_module():
    module = "stablesal.report.sections.common"
    assert {name for name in SECTIONS if SECTIONS[name].__module__ == module} == set(COMMON)


@pytest.mark.parametrize("name", COMMON)
def test_every_section_builds_from_the_results_alone(name, default_results, tmp_path):
    """Each builder returns titled sections (Left out: none when nothing was left out; Warnings: none
    when the run warned about nothing, as the committed run did); every figure is either drawn under
    the report folder it is given or one the results name in that folder."""
    named = default_results["figures"]
    named = {tmp_path / path for path, _ in [named["dataset_examples"], named["removal_maps"], *named["example_panels"]]}
    sections = section_list(SECTIONS[name](default_results, tmp_path))
    assert sections or name in ("left out", "warnings")
    for section in sections:
        assert section.title
        for path, caption in section.figures:
            assert caption and (Path(path).exists() or Path(path) in named), path
        assert f"<h2>{section.title}</h2>" in page_text(section)


def test_setup_states_the_data_and_the_models_of_the_file(default_results, tmp_path):
    page = page_text(SECTIONS["setup"](default_results, tmp_path))
    dataset, models = default_results["dataset"], default_results["models"]
    main = [m for m in models if m["set"] == "main"]
    shown = main + [m for m in models if m["set"] == "control"]
    accuracies = [m["test_acc"] for m in shown]
    assert (f"{dataset['name']}: {dataset['train']} training and {dataset['test']} test images of shape "
            f"{tuple(dataset['image_shape'])}, {len(dataset['classes'])} classes. {len(main)} ") in page
    assert f"Test accuracy ranges from {min(accuracies):.1%} to {max(accuracies):.1%}" in page
    assert f"took {default_results['timings_s']['training']:.0f} s in total" in page
    for model in shown:  # the models table: one row per main and control model, its accuracy to 3 digits
        assert f"<td>{model['test_acc']:.3f}</td>" in page


def test_sanity_table_gives_the_randomisation_similarities_of_the_file(default_results, tmp_path):
    page = page_text(SECTIONS["sanity"](default_results, tmp_path))
    rows = [r for r in default_results["stability_summary"] if r["model_set"] == "main" and "sanity_spearman" in r]
    assert rows
    for row in rows:
        assert (f"<td>{row['method']}</td><td>{row['grouping']}</td><td>{interval(row, 'sanity_spearman')}</td>"
                f"<td>{interval(row, 'sanity_ssim')}</td><td>{interval(row, 'spearman')}</td>") in page


def test_timing_names_the_images_and_the_machine_of_the_file(default_results, tmp_path):
    page = page_text(SECTIONS["timing"](default_results, tmp_path))
    environment = default_results["environment"]
    assert (f"Explaining {default_results['n_images']} images took the times below per model on "
            f"{environment['processor']} ({environment['threads']} threads).") in page
    assert (tmp_path / "figures" / "timing.png").exists()


def test_factor_section_gives_the_effects_and_best_configurations_of_the_file(default_results, tmp_path):
    page = page_text(SECTIONS["factors"](default_results, tmp_path))
    factors = default_results["factor_study"]
    for design in factors["analysis"]["designs"].values():
        for effect in design["effects"]:
            assert f"<td>{effect['factor']}</td>" in page
            assert f"<td>{interval(effect, 'eta2_srg')}</td>" in page
    for configuration in sorted(factors["configurations"], key=lambda c: -c["srg"])[:8]:
        assert f"<td>{interval(configuration, 'srg', 3)}</td>" in page


def test_a_registered_section_joins_the_page_in_its_place(quick_report, tmp_path):
    """Adding a section is one registered builder: it is placed by its order, from results alone."""
    from stablesal.report.html import SECTIONS, Section, report_section
    from stablesal.report.sections.common import report_sections

    results = json.loads((quick_report / "results.json").read_text())
    copy = tmp_path / "copy"  # sections draw figures into the report folder: work on a copy
    shutil.copytree(quick_report, copy)

    @report_section("accuracy for test", order=15)  # between Setup (10) and Left out / Headline
    def accuracy(results, out):
        rows = [r for r in results["models"] if r["set"] == "main"]
        return Section("Accuracy", f"mean test accuracy {sum(r['test_acc'] for r in rows) / len(rows):.3f}")

    try:
        titles = [section.title for section in report_sections(results, copy)]
    finally:
        SECTIONS.unregister("accuracy for test")
    assert titles[0].startswith("Verdict") and titles[1:3] == ["Setup", "Accuracy"]  # the verdict opens the page
    assert titles.count("Accuracy") == 1
    assert "Accuracy" not in [section.title for section in report_sections(results, copy)]


def test_the_page_has_one_order_and_a_shared_place_is_refused():
    """Every section has its own place (``stablesal list sections`` prints the page's order), and a
    section registered at a taken place is refused when the page is built, naming the place."""
    from stablesal.report.html import SECTIONS, Section, report_section
    from stablesal.report.sections.common import page_order

    order = page_order()
    assert order[:3] == ["warnings", "verdict", "setup"] and len(order) == len(set(order)) == len(SECTIONS)
    places = [SECTIONS.info(name, "order") for name in order]
    assert places == sorted(places)
    with pytest.raises(TypeError):
        report_section("positional for test", 12)
    taken = SECTIONS.info("headline", "order")
    report_section("same place for test", order=taken)(lambda results, out: Section("x", "y"))
    try:
        with pytest.raises(ValueError, match=rf"share a place on the page \(order \[{taken}\]\)"):
            page_order()
    finally:
        SECTIONS.unregister("same place for test")


def test_warnings_open_the_page_and_are_left_out_when_there_are_none(default_results, tmp_path):
    assert SECTIONS["warnings"](default_results, tmp_path) is None  # the committed run warned about nothing
    assert SECTIONS["warnings"](dict(default_results, warnings=[]), tmp_path) is None
    said = ["2 models: the between-model intervals need at least 3 (each is a delete-one-model jackknife); the "
            "report shows point estimates without intervals", "something else."]
    section = SECTIONS["warnings"](dict(default_results, warnings=said), tmp_path)
    assert section.title == "Warnings" and section.reading == f"Warning: {said[0]}. Warning: something else."
    assert min(SECTIONS, key=lambda name: SECTIONS.info(name, "order")) == "warnings"  # first on the page


def test_sections_of_results_without_row_families_read_the_same(quick_report, tmp_path):
    """A results.json written before rows carried their ``family`` renders the same sections: the
    random-map control is then found by its registered name."""
    from stablesal.report.sections.common import report_sections

    def without_family(value):
        if isinstance(value, dict):
            return {k: without_family(v) for k, v in value.items() if k != "family"}
        return [without_family(v) for v in value] if isinstance(value, list) else value

    results = json.loads((quick_report / "results.json").read_text())
    old = without_family(results)
    assert '"family"' in json.dumps(results) and '"family"' not in json.dumps(old)
    copy = tmp_path / "copy"  # sections draw figures into the report folder: work on a copy
    shutil.copytree(quick_report, copy)
    now, before = report_sections(results, copy), report_sections(old, copy)
    assert [(s.title, s.reading, s.tables) for s in before] == [(s.title, s.reading, s.tables) for s in now]
    assert any("random map" in s.reading for s in now)  # the control was found and read


def test_fidelity_left_out_says_why_and_how_to_ask_for_it(default_results, tmp_path):
    """Issue #31: fidelity is opt-in above 64 px. Results whose rows carry no fidelity (as a 224-px
    run's) get no fidelity section and one line in "Left out" with the reason and the key to set."""
    assert SECTIONS["fidelity"](default_results, tmp_path) is not None  # the built-in run has it
    assert not any("fidelity" in s.reading for s in section_list(SECTIONS["left out"](default_results, tmp_path)))
    for row in default_results["stability_summary"]:
        for key in [k for k in row if k.startswith(("deletion_auc", "insertion_auc", "mu_fidelity"))]:
            del row[key]
    default_results["dataset"]["image_shape"] = [3, 224, 224]
    assert SECTIONS["fidelity"](default_results, tmp_path) is None
    note = page_text(section_list(SECTIONS["left out"](default_results, tmp_path))[0])
    assert ("Model 0's fidelity (deletion and insertion AUC, µFidelity) and the stability-vs-fidelity section: left "
            "out, the images are 224 px a side and [gradient] fidelity = \"auto\" computes them up to 64 px") in note
    assert "set [gradient] fidelity = \"on\" to compute them" in note
    default_results["config"]["gradient"]["fidelity"] = "off"
    assert "left out, [gradient] fidelity is \"off\"" in page_text(
        section_list(SECTIONS["left out"](default_results, tmp_path))[0])
    for name in COMMON:  # every other section still builds
        section_list(SECTIONS[name](default_results, tmp_path))
