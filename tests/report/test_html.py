"""The page's tables: short tables whole, long ones folded after their first rows, cells escaped."""

import re

from stablesal.report.html import SHORT_TABLE, Section, render_page, table_html


def _rows_in(fragment: str) -> int:
    return len(re.findall(r"<tbody>.*?</tbody>", fragment, flags=re.S)[0].split("<tr>")) - 1


def test_long_tables_show_their_first_rows_and_fold_the_rest():
    rows = [{"method": f"m{i}", "value": i / 10} for i in range(SHORT_TABLE + 8)]
    page = table_html(rows, "caption")
    shown, folded = page.split("<details>")
    assert _rows_in(shown) == SHORT_TABLE and _rows_in(folded) == SHORT_TABLE + 8
    assert f"First {SHORT_TABLE} of {SHORT_TABLE + 8} rows." in shown
    assert f"<summary>all {SHORT_TABLE + 8} rows</summary>" in folded


def test_short_tables_are_whole_and_cells_escaped():
    rows = [{"method": "<b>x</b>", "value": 0.12345}] * SHORT_TABLE
    page = table_html(rows)
    assert "<details>" not in page and _rows_in(page) == SHORT_TABLE
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "0.123" in page and "0.1234" not in page


def test_sections_lead_with_their_figure(tmp_path):
    from PIL import Image

    image = tmp_path / "f.png"
    Image.new("RGB", (4, 4)).save(image)
    page = render_page("t", "lead", [Section("S", "reading", figures=[(image, "fig")], tables=[([{"a": 1}], "tab")])])
    assert page.index("<figure>") < page.index("<table>")


def test_unknown_and_undefined_cells_read_as_a_dash():
    """Issue #30: a user's checkpoint has no seed, split or training time, and the model table
    printed "None"; an undefined number printed "nan"."""
    rows = [{"model": 0, "seed": None, "test_acc": 0.9312, "seconds": float("nan"), "split": 0}]
    page = table_html(rows)
    assert "None" not in page and "nan" not in page
    assert "<td>0</td><td>–</td><td>0.931</td><td>–</td><td>0</td>" in page
