"""Tests of :mod:`stablesal.report.render`: the page rebuilt from a report folder alone, and the
quick report's page in a real headless browser."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from stablesal.cli import main

from tests.helpers.chromium import FLAGS, _chromium


def _without_images(page: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "IMAGE", page)


def test_render_rebuilds_the_page_from_the_results_folder_alone(quick_report, tmp_path):
    """A copy of the report folder, with no model, cache or dataset anywhere near it, renders the
    same page: every reading, table and caption, and as many figures."""
    copy = tmp_path / "copy"
    shutil.copytree(quick_report, copy)
    original = (copy / "index.html").read_text()
    (copy / "index.html").unlink()
    for figure in ("stability_main", "timing", "factor_effects"):  # figures drawn from rows are redrawn
        (copy / "figures" / f"{figure}.png").unlink()
    assert main(["render", str(copy)]) == 0
    rebuilt = (copy / "index.html").read_text()
    assert _without_images(rebuilt) == _without_images(original)
    assert rebuilt.count("data:image/png;base64,") == original.count("data:image/png;base64,") > 10
    assert (copy / "figures" / "stability_main.png").exists()


def test_render_of_a_folder_without_results_names_it(tmp_path, capsys):
    assert main(["render", str(tmp_path)]) == 2
    assert "results.json does not exist" in capsys.readouterr().err


# Run in the page after its own scripts: sort a numeric column both ways, filter to nothing and back,
# move the model slider to the last model, switch a consensus overlay off; the outcome goes to an attribute.
EXERCISE = """<script>
window.addEventListener('load', function () { setTimeout(function () {
  var said = [];
  function visible(rows) { return [].filter.call(rows, function (r) { return !r.hidden; }); }
  function value(row, column) { return parseFloat(row.cells[column].textContent); }
  var table = [].find.call(document.querySelectorAll('table.data'), function (t) {
    return t.tBodies[0].rows.length >= 3 && !isNaN(parseFloat(t.tBodies[0].rows[0].cells[1].textContent)); });
  var heading = table.tHead.rows[0].cells[1], rows;
  heading.click();
  rows = [].slice.call(table.tBodies[0].rows);
  var up = rows.every(function (r, i) { return i === 0 || isNaN(value(r, 1)) || value(rows[i - 1], 1) <= value(r, 1); });
  heading.click();
  rows = [].slice.call(table.tBodies[0].rows);
  var down = rows.every(function (r, i) { return i === 0 || isNaN(value(r, 1)) || value(rows[i - 1], 1) >= value(r, 1); });
  said.push('sort=' + (up && down && heading.getAttribute('aria-sort') === 'descending'));
  var filter = document.querySelector('input.filter[data-table=' + table.id + ']');
  filter.value = 'no row holds this'; filter.dispatchEvent(new Event('input'));
  var none = visible(table.tBodies[0].rows).length === 0;
  filter.value = table.tBodies[0].rows[0].cells[0].textContent; filter.dispatchEvent(new Event('input'));
  said.push('filter=' + (none && visible(table.tBodies[0].rows).length >= 1));
  var slider = document.querySelector('input.model-slider');
  slider.value = slider.max; slider.dispatchEvent(new Event('input'));
  var cards = document.getElementById(slider.dataset.target).querySelectorAll('figure');
  said.push('slider=' + [].every.call(cards, function (card) {
    var shown = visible(card.querySelectorAll('img'));
    return shown.length === 1 && shown[0].dataset.frame === slider.max; }) + ':' + cards.length + 'x' + (+slider.max + 1));
  var toggle = document.querySelector('input.overlay-toggle');
  if (toggle) {
    toggle.click();
    var figure = document.getElementById(toggle.dataset.figure);
    said.push('toggle=' + (figure.querySelector('img.with-overlay').hidden && !figure.querySelector('img.without-overlay').hidden));
  } else { said.push('toggle=absent'); }
  said.push('csv=' + document.querySelectorAll('a.csv[href^="data:text/csv"]').length);
  said.push('figures=' + document.querySelectorAll('figure > img, figure > label + img').length);
  document.body.setAttribute('data-exercised', said.join(';'));
}, 0); });
</script>"""


def _dom(url: str, width: int, profile: Path) -> str:
    return subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},900",
                           "--virtual-time-budget=10000", "--dump-dom", url],
                          capture_output=True, text=True, timeout=180).stdout


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (make installs it where apt-get works)")
@pytest.mark.parametrize("width", [1280, 390])
def test_page_renders_and_its_interactions_work_in_chromium(quick_report, tmp_path, width):
    """At a desktop and a phone width: every image decodes, nothing is wider than the window, no
    resource is fetched, no script error, nothing blocked; sorting, filtering, the model slider and
    the overlay toggle do what they say; every figure and table offers its CSV."""
    page = quick_report / "index.html"
    dom = _dom(page.resolve().as_uri(), width, tmp_path / "profile")
    check = re.search(r'data-check="([^"]*)"', dom)
    assert check is not None, "the page's load handler did not run"
    assert check.group(1) == "images-broken=0;overflow=false;resources=0;errors=0;blocked=0"
    load_ms = int(re.search(r'data-load-ms="(-?\d+)"', dom).group(1))
    print(f"page weight {page.stat().st_size / 1e6:.2f} MB, loaded in {load_ms} ms at {width} px")
    exercised_page = tmp_path / "exercised.html"
    exercised_page.write_text(page.read_text().replace("</body>", EXERCISE + "</body>"))
    dom = _dom(exercised_page.resolve().as_uri(), width, tmp_path / "profile")
    said = dict(item.split("=", 1) for item in re.search(r'data-exercised="([^"]*)"', dom).group(1).split(";"))
    assert said["sort"] == "true" and said["filter"] == "true" and said["toggle"] == "true"
    assert said["slider"].startswith("true:")
    shown = page.read_text()
    tables = shown.count("<table class='data'")
    figures_with_numbers = shown.count("numbers (CSV)</a>")
    assert int(said["csv"]) == tables + figures_with_numbers and tables > 10
    # every figure of the page offers its numbers (the slider's cards are views of the example maps' CSV)
    assert figures_with_numbers == shown.count("<figure><img") + shown.count("<figure id='figure") > 10


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (make installs it where apt-get works)")
def test_page_prints_and_screenshots_in_chromium(quick_report, tmp_path):
    url = (quick_report / "index.html").resolve().as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    shot = tmp_path / "page.png"
    subprocess.run([_chromium(), *FLAGS, *profile, "--window-size=1280,2400", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000
    pdf = tmp_path / "page.pdf"
    subprocess.run([_chromium(), *FLAGS, *profile, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", url],
                   capture_output=True, timeout=120)
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 50_000


SORT_ORDERS = """<script>
window.addEventListener('load', function () { setTimeout(function () {
  var table = document.querySelector('table.data'), heading = table.tHead.rows[0].cells[1], orders = [];
  function order() { return [].map.call(table.tBodies[0].rows, function (r) { return r.cells[0].textContent; }).join(','); }
  heading.click(); orders.push(order());
  heading.click(); orders.push(order());
  document.body.setAttribute('data-orders', orders.join('|'));
}, 0); });
</script>"""


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (make installs it where apt-get works)")
def test_sorting_reads_signs_intervals_percentages_and_keeps_unknown_cells_last(tmp_path):
    """Cells as the page prints them: a leading "+" or Unicode minus, an interval after the value,
    a percentage, text, and the unknown "–", which stays last both ways."""
    from stablesal.report.html import Section, render_page

    cells = {"a": "0.50 [−0.11, 1.12]", "b": "+0.12", "c": "−0.30", "d": "–", "e": "12 %", "f": "beta",
             "g": "alpha", "h": "−0.05 [−0.20, 0.10]", "i": "1e-05"}
    rows = [{"row": name, "value": value} for name, value in cells.items()]
    page = tmp_path / "sort.html"
    page.write_text(render_page("sort", "", [Section("S", tables=[(rows, "")])]).replace("</body>", SORT_ORDERS + "</body>"))
    dom = _dom(page.resolve().as_uri(), 1280, tmp_path / "profile")
    ascending, descending = re.search(r'data-orders="([^"]*)"', dom).group(1).split("|")
    assert ascending == "c,h,i,b,a,e,g,f,d"
    assert descending == "f,g,e,a,b,i,h,c,d"
