"""The verdict section (the page's first): every statement recomputed from the ranking it reads."""

import copy

from stablesal.report.html import SECTIONS
from stablesal.report.sections.common import page_order
from stablesal.report.sections.verdict import SHOWN, resolved_rows, verdict_reading, verdict_table
from tests.helpers.report_results import page_text, section_list


def test_the_tests_cover_every_section_of_the_module():
    assert {name for name in SECTIONS if SECTIONS[name].__module__ == "stablesal.report.sections.verdict"} == {
        "verdict"}


def test_the_verdict_opens_the_page_and_reads_the_committed_ranking(default_results, tmp_path):
    order = page_order()
    assert order.index("verdict") < order.index("setup") < order.index("headline")
    (section,) = section_list(SECTIONS["verdict"](default_results, tmp_path))
    ranking = default_results["ranking"]
    alpha, rows = ranking["alpha"], ranking["rows"]
    resolved = [r for r in rows if r["excess_holm"] <= alpha and r["excess"] > 0]  # by hand
    assert resolved_rows(ranking) == resolved
    if not resolved:
        raw = sum(1 for r in rows if r["excess_ci_low"] > 0)
        positive = sum(1 for r in rows if r["excess"] > 0)
        assert section.reading.startswith("Which method to trust on these models: not established with K = 4 models.")
        assert f"{positive} of the {len(rows)} excesses are positive and {raw} raw 95 % intervals exclude 0" in section.reading
        # the weaker nulls' counts, recomputed
        for name, words in (("bn_calibrated", "BN-calibrated"), ("untrained", "untrained")):
            count = sum(1 for r in rows if r[f"above_{name}_holm"] <= alpha and r[f"above_{name}"] > 0)
            assert f"{count} of {len(rows)} above the {words} null" in section.reading
        # the planner's units, recomputed from the consensus stage
        units = default_results["consensus"]["units"]
        far = [u for u in units if "out of reach" in u["sentence"]]
        lows = [u["plan"]["models_low"] for u in far if u["plan"].get("models_low") is not None]
        assert (f"for {len(far)} of the {len(units)} planned units a reliable mean map beyond the null is out of reach "
                f"(more than 10 000 models); the bootstrap's lower ends are {min(lows)}–{max(lows)} models") in section.reading
        assert "on the units it planned (the consensus methods and groupings)" in section.reading
        assert f"{rows[0]['method']} / {rows[0]['grouping']} at " in section.reading
    assert (tmp_path / "figures" / "verdict_forest.png").exists() and (tmp_path / "figures" / "verdict_forest.pdf").exists()
    (table, _), = section.tables
    assert len(table) == min(SHOWN, len(rows)) and [r["method"] for r in table] == [r["method"] for r in rows[:SHOWN]]
    assert [cell["resolved"] for cell in table] == ["yes" if row in resolved else "no" for row in rows[:SHOWN]]
    assert "random_label" not in page_text(section)  # the null in words


def test_a_resolved_row_is_recommended_with_its_interval_and_holm_p(default_results, tmp_path):
    results = copy.deepcopy(default_results)
    first = results["ranking"]["rows"][0]
    first.update(excess=0.3, excess_ci_low=0.1, excess_ci_high=0.5, excess_holm=0.01)
    reading = verdict_reading(results)
    assert reading.startswith(f"Which method to trust on these models: {first['method']} / {first['grouping']}, whose")
    assert "+0.30 [+0.10, +0.50] above random-label networks (Holm p = 0.010)" in reading
    assert f"{len(resolved_rows(results['ranking']))} of {len(results['ranking']['rows'])} methods × groupings are resolved" in reading
    assert "Whether it is more stable than the other resolved rows is not tested here" in reading
    table = verdict_table(results)
    assert table[0]["resolved"] == "yes" and table[0]["Holm p"] == "0.010"


def test_no_ranking_no_verdict(default_results, tmp_path):
    assert SECTIONS["verdict"]({**default_results, "ranking": None}, tmp_path) is None
