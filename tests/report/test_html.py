"""The page's parts: tables with every row, a filter and their CSV; figures with their numbers; the
overlay toggle; the model slider; the content policy that forbids every request."""

import base64
import csv
import io
import re

from stablesal.report.html import Section, Slider, image_html, render_page, table_html


def _rows_in(fragment: str) -> int:
    return len(re.findall(r"<tbody>.*?</tbody>", fragment, flags=re.S)[0].split("<tr>")) - 1


def _csv_of(fragment: str, name: str) -> str:
    encoded = re.search(rf"download='{re.escape(name)}' href='data:text/csv;charset=utf-8;base64,([^']+)'", fragment)
    return base64.b64decode(encoded.group(1)).decode()


def test_tables_hold_every_row_with_a_filter_and_their_csv():
    """Every row is in the one table (a long one scrolls in its box), with a filter box naming that
    table, and a CSV link whose rows are the values as stored, not as rounded for the page."""
    rows = [{"method": f"m{i}", "value": i / 7} for i in range(30)]
    page = table_html(rows, "caption")
    assert _rows_in(page) == 30 and "<details>" not in page and "class='table-wrap'" in page
    table = re.search(r"<table class='data' id='(\w+)'>", page).group(1)
    assert f"data-table='{table}'" in page and f"id='{table}-count'>30 rows<" in page
    written = list(csv.DictReader(io.StringIO(_csv_of(page, f"{table}.csv"))))
    assert [r["method"] for r in written] == [r["method"] for r in rows]
    assert float(written[3]["value"]) == 3 / 7 and "0.429" in page  # full precision in the CSV, 3 digits shown


def test_cells_are_escaped_and_rounded():
    rows = [{"method": "<b>x</b>", "value": 0.12345}] * 5
    page = table_html(rows)
    assert _rows_in(page) == 5
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "0.123" in page and "0.1234" not in page


def test_a_figures_numbers_are_linked_under_it_and_large_ones_are_a_file(tmp_path, monkeypatch):
    """save_figure writes the rows a figure draws beside its PNG; the page embeds them as a CSV link,
    or links the file when it is larger than the page should carry."""
    from stablesal.report import html as page_module
    from stablesal.report.figures import plt, save_figure

    fig, axis = plt.subplots()
    axis.plot([0, 1], [2, 3])
    path = save_figure(fig, tmp_path / "figures" / "line", data=[{"x": 0, "y": 2.5}, {"x": 1, "y": 3.25}])
    assert (tmp_path / "figures" / "line.csv").read_text().splitlines() == ["x,y", "0,2.5", "1,3.25"]
    figure = image_html(path, "a line")
    assert list(csv.DictReader(io.StringIO(_csv_of(figure, "line.csv")))) == [{"x": "0", "y": "2.5"},
                                                                              {"x": "1", "y": "3.25"}]
    monkeypatch.setattr(page_module, "CSV_INLINE_BYTES", 5)
    assert "href='figures/line.csv'" in image_html(path, "a line")
    fig, _ = plt.subplots()
    assert "CSV" not in image_html(save_figure(fig, tmp_path / "figures" / "empty"), "no numbers")


def test_a_toggled_figure_carries_both_images_and_a_checkbox(tmp_path):
    from PIL import Image

    with_overlay, without = tmp_path / "a.png", tmp_path / "a_plain.png"
    Image.new("RGB", (4, 4), "red").save(with_overlay)
    Image.new("RGB", (4, 4), "blue").save(without)
    page = render_page("t", "", [Section("S", figures=[(with_overlay, "fig")],
                                         toggles={with_overlay: (without, "outline the regions")})])
    figure = re.search(r"<figure id='(\w+)'>", page).group(1)
    assert f"class='overlay-toggle' data-figure='{figure}' checked" in page
    assert page.count("class='with-overlay'") == 1 and page.count("class='without-overlay'") == 1
    assert "outline the regions" in page


def test_a_slider_has_one_frame_per_model_and_shows_the_first():
    page = render_page("t", "", [Section("S", sliders=[Slider("model:", [("saliency", [b"a", b"b", b"c"]),
                                                                          ("smoothgrad", [b"d", b"e", b"f"])])])])
    assert "type='range' class='model-slider'" in page and "max='2'" in page
    assert page.count("data-frame='0'") == 2 and page.count("data-frame='2'") == 2
    assert len(re.findall(r"data-frame='0'[^>]*alt='[^']*'>", page)) == 2  # the first frame is shown
    assert len(re.findall(r"data-frame='1'[^>]*hidden>", page)) == 2


def test_the_page_forbids_every_request_and_counts_errors_from_the_start():
    page = render_page("t", "lead", [])
    policy = re.search(r"Content-Security-Policy' content=\"([^\"]+)\"", page).group(1)
    assert policy.startswith("default-src 'none'") and "img-src data:" in policy
    assert page.index("Content-Security-Policy") < page.index("window.__errors=0") < page.index("<body>")


def test_sections_lead_with_their_figure(tmp_path):
    from PIL import Image

    image = tmp_path / "f.png"
    Image.new("RGB", (4, 4)).save(image)
    page = render_page("t", "lead", [Section("S", "reading", figures=[(image, "fig")], tables=[([{"a": 1}], "tab")])])
    assert page.index("<figure>") < page.index("<table ")


def test_unknown_and_undefined_cells_read_as_a_dash():
    """Issue #30: a user's checkpoint has no seed, split or training time, and the model table
    printed "None"; an undefined number printed "nan"."""
    rows = [{"model": 0, "seed": None, "test_acc": 0.9312, "seconds": float("nan"), "split": 0}]
    page = table_html(rows)
    assert "None" not in page and "nan" not in page
    assert "<td>0</td><td>–</td><td>0.931</td><td>–</td><td>0</td>" in page


def test_links_only_writes_no_figure_and_gives_the_same_path(tmp_path):
    from stablesal.report.figures import links_only, plt, save_figure

    with links_only():
        fig, ax = plt.subplots()
        path = save_figure(fig, tmp_path / "figures" / "line", data=[{"x": 0}])
    assert path == tmp_path / "figures" / "line.png" and not (tmp_path / "figures").exists()
    fig, ax = plt.subplots()
    assert save_figure(fig, tmp_path / "figures" / "line").exists()  # outside it, written again
