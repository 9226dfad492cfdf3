"""Tests of :mod:`stablesal.report.sections.common`.

The quick report end to end, and its page in a real headless browser."""

import json
import shutil


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
    assert titles[:2] == ["Setup", "Accuracy"] and titles.count("Accuracy") == 1
    assert "Accuracy" not in [section.title for section in report_sections(results, copy)]
