"""Tests of :mod:`stablesal.report.markdown` and ``analysis/results_page.py``: the documentation's
results page and the README's headline are the committed results, as the report page shows them."""

import importlib.util
import json
from pathlib import Path

from stablesal.report.html import Section
from stablesal.report.markdown import markdown_table, results_markdown, section_markdown

from tests.helpers.report_results import load_default_results

ROOT = Path(__file__).resolve().parents[2]


def _results_page_module():
    spec = importlib.util.spec_from_file_location("results_page", ROOT / "analysis" / "results_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_markdown_table_by_hand():
    rows = [{"method": "a|b", "value": 0.12345, "n": 3}, {"method": "c", "value": -1.0, "n": 4}]
    assert markdown_table(rows, "Two rows.") == (
        "| method | value | n |\n|---|---|---|\n| a\\|b | 0.123 | 3 |\n| c | -1.000 | 4 |\n\n*Two rows.*")
    assert markdown_table([]) == ""
    section = Section("Title", "A reading.", figures=[(Path("/x/figures/plot.pdf"), "A plot.")],
                      tables=[(rows[:1], "")])
    assert section_markdown(section, lambda path: f"../figures/{path.with_suffix('.png').name}") == (
        "## Title\n\nA reading.\n\n![A plot.](../figures/plot.png)\n\n*A plot.*\n\n"
        "| method | value | n |\n|---|---|---|\n| a\\|b | 0.123 | 3 |")


def test_the_committed_results_page_is_the_committed_results(tmp_path):
    """docs/results.md is what analysis/results_page.py makes from experiments/results/default.json
    now: a regenerated results file or a changed section without a regenerated page fails here.
    Making it writes nothing (the figures are linked, not drawn again)."""
    results = load_default_results()
    (tmp_path / "results.json").write_text(json.dumps(results))
    before = sorted(tmp_path.rglob("*"))
    page = results_markdown(results, tmp_path, source="experiments/results/default.json")
    assert sorted(tmp_path.rglob("*")) == before
    assert (ROOT / "docs" / "results.md").read_text() == page
    for title in ("## Setup", "## Headline"):
        assert title in page
    for link in [line.split("](")[1].split(")")[0] for line in page.splitlines() if line.startswith("![")]:
        assert (ROOT / "docs" / link).resolve().exists(), link  # every figure it links is committed


def test_the_readme_headline_is_the_committed_results():
    module = _results_page_module()
    results = json.loads((ROOT / "experiments" / "results" / "default.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert "<!-- results:headline -->" in readme
    assert module.with_headline(readme, results) == readme  # regenerated, it would not change
    assert module.headline_block(results) in readme
    assert module.with_headline("no block", results) == "no block"
