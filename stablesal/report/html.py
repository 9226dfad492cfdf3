"""A self-contained HTML page: figures embedded as base64 PNG, no network, one tiny self-check script."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from ..core.registry import Registry
from ..core.tables import csv_text

STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1.2em; color: #1d1d1f; line-height: 1.5; overflow-wrap: anywhere; }
h1 { font-size: 1.9em; margin-bottom: 0.1em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
p.lead { color: #555; margin-top: 0; }
.table-wrap { max-width: 100%; max-height: 32em; overflow: auto; margin: .3em 0 1em; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 0.92em; }
th, td { padding: 4px 10px; text-align: right; border-bottom: 1px solid #eee; white-space: nowrap; overflow-wrap: normal; }
th { background: #f4f4f6; position: sticky; top: 0; cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: " ▲"; } th[aria-sort=descending]::after { content: " ▼"; }
td:first-child, th:first-child { text-align: left; }
caption { caption-side: bottom; color: #555; text-align: left; padding: .3em; white-space: normal; }
.tools { display: flex; flex-wrap: wrap; gap: .3em 1em; align-items: center; font-size: .85em; color: #555; }
.tools input[type=search] { font: inherit; padding: 2px 6px; max-width: 14em; }
a.csv { font-size: .85em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
.cards { display: flex; flex-wrap: wrap; gap: .6em; }
.cards figure { margin: 0; width: 8.5em; } .cards img { width: 100%; image-rendering: pixelated; }
.cards figcaption { font-size: .75em; }
summary { cursor: pointer; color: #4a78c2; margin: .3em 0; }
.reading { background: #f7f9fc; border-left: 4px solid #4a78c2; padding: .6em 1em; }
code { background: #f4f4f6; padding: 0 3px; }
@media print { body { max-width: none; margin: 0.5cm; } h2 { page-break-after: avoid; } figure { page-break-inside: avoid; }
               .table-wrap { max-height: none; overflow: visible; } .tools, a.csv, input { display: none; } }
"""

# Nothing on the page may come from the network: images are data: URIs, style and script inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

# Counts script errors and blocked requests from the first line on, for the load check below.
EARLY_SCRIPT = ("window.__errors=0;window.__blocked=0;window.addEventListener('error',function(){window.__errors++});"
                "document.addEventListener('securitypolicyviolation',function(){window.__blocked++});")

# The page's interactions, plain JS with no library: sortable and filterable tables, the model
# slider over the example maps, the overlay toggle of the consensus figures.
INTERACTIONS = r"""
(function () {
  // A cell's sort key: [0, number] for a cell that starts with a number ("0.50 [−0.11, 1.12]", "+0.12",
  // "−3 %", "1e-05"), [1, text] for other text, [2] for an unknown cell ("–" or empty), which sorts last.
  function key(text) {
    text = text.trim().replace(/\u2212/g, '-');
    if (text === '' || text === '\u2013') return [2, 0];
    var match = text.match(/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?/i);
    return match ? [0, parseFloat(match[0])] : [1, text];
  }
  function compare(a, b) {
    if (a[0] !== b[0]) return a[0] - b[0];
    if (a[0] === 0) return a[1] - b[1];
    return a[0] === 1 ? a[1].localeCompare(b[1]) : 0;
  }
  [].forEach.call(document.querySelectorAll('table.data'), function (table) {
    var heads = table.tHead.rows[0].cells;
    [].forEach.call(heads, function (th, column) {
      th.tabIndex = 0;
      th.setAttribute('aria-sort', 'none');
      function sort() {
        var ascending = th.getAttribute('aria-sort') !== 'ascending';
        [].forEach.call(heads, function (h) { h.setAttribute('aria-sort', 'none'); });
        th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = [].map.call(body.rows, function (row, index) {
          return {row: row, key: key(row.cells[column].textContent), index: index};
        });
        rows.sort(function (a, b) {
          // unknown cells stay last both ways; equal keys keep their order (a stable sort)
          var order = compare(a.key, b.key);
          if (a.key[0] !== 2 && b.key[0] !== 2 && !ascending) order = -order;
          return order || a.index - b.index;
        });
        rows.forEach(function (entry) { body.appendChild(entry.row); });
      }
      th.addEventListener('click', sort);
      th.addEventListener('keydown', function (event) { if (event.key === 'Enter') sort(); });
    });
  });
  [].forEach.call(document.querySelectorAll('input.filter'), function (input) {
    var table = document.getElementById(input.dataset.table), count = document.getElementById(input.dataset.table + '-count');
    input.addEventListener('input', function () {
      var query = input.value.toLowerCase(), rows = table.tBodies[0].rows, shown = 0;
      [].forEach.call(rows, function (row) {
        row.hidden = row.textContent.toLowerCase().indexOf(query) < 0;
        if (!row.hidden) shown++;
      });
      count.textContent = shown + ' of ' + rows.length + ' rows';
    });
  });
  [].forEach.call(document.querySelectorAll('input.model-slider'), function (slider) {
    var cards = document.getElementById(slider.dataset.target), label = document.getElementById(slider.dataset.target + '-label');
    function show() {
      [].forEach.call(cards.querySelectorAll('img[data-frame]'), function (img) { img.hidden = img.dataset.frame !== slider.value; });
      label.textContent = 'model ' + slider.value;
    }
    slider.addEventListener('input', show);
    show();
  });
  [].forEach.call(document.querySelectorAll('input.overlay-toggle'), function (box) {
    var figure = document.getElementById(box.dataset.figure);
    function show() {
      figure.querySelector('img.with-overlay').hidden = !box.checked;
      figure.querySelector('img.without-overlay').hidden = box.checked;
    }
    box.addEventListener('change', show);
    show();
  });
})();
"""

# A self-check for headless browsers, just after the load event has ended (so Navigation Timing's
# loadEventEnd is set): every image decoded, nothing wider than the page, no resource fetched, no
# script error, nothing blocked by the content policy.
LOAD_CHECK = ("window.addEventListener('load',function(){setTimeout(function(){"
              "var bad=[].filter.call(document.images,function(i){"
              "return i.getAttribute('src')&&!(i.complete&&i.naturalWidth>0)}).length;"
              "var over=document.documentElement.scrollWidth>window.innerWidth+1;"
              "var fetched=performance.getEntriesByType('resource').length;"
              "var nav=performance.getEntriesByType('navigation')[0];"
              "document.body.setAttribute('data-check','images-broken='+bad+';overflow='+over+';resources='+fetched+"
              "';errors='+window.__errors+';blocked='+window.__blocked);"
              "document.body.setAttribute('data-load-ms',nav?Math.round(nav.loadEventEnd):-1)},0)});")


@dataclass
class Slider:
    """Views of one quantity per model, shown one model at a time under a slider (the page's model
    slider over the example maps): ``cards`` are ``(title, [PNG bytes of model 0, model 1, ...])``."""

    label: str
    cards: list[tuple[str, list[bytes]]]


@dataclass
class Section:
    """One section of the page: a title, a plain-language reading, figures and tables.

    ``toggles`` maps a figure's path to ``(the same figure without its overlay, the checkbox's
    label)``: the page shows a checkbox that switches between the two (Markdown shows the first);
    ``sliders`` are shown after the figures."""

    title: str
    reading: str = ""
    figures: list[tuple[Path, str]] = field(default_factory=list)  # (png path, caption)
    tables: list[tuple[list[dict], str]] = field(default_factory=list)  # (rows, caption)
    toggles: dict = field(default_factory=dict)  # png path -> (png path without the overlay, label)
    sliders: list[Slider] = field(default_factory=list)


# Every section of the report page: name → builder(results: dict, out: Path) → Section | [Section] | None,
# with metadata ``order`` (the page runs from low to high). See stablesal.report.sections.common.
SECTIONS = Registry("report section")


def report_section(name: str, *, order: float, stage: str | None = None):
    """Register a section builder under ``name`` at position ``order`` of the page; ``stage``: the
    pipeline stage whose results it shows (the page leaves it out when that stage did not run)."""
    return SECTIONS.register(name, order=order, stage=stage)


CSV_INLINE_BYTES = 256 * 1024  # a figure's CSV up to this size is embedded in the page; larger ones are linked


class _Ids:
    """Element ids unique within one page (tables, slider boxes, toggled figures)."""

    def __init__(self):
        self.count = 0

    def __call__(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"


def _csv_link(data: bytes, name: str, label: str = "CSV") -> str:
    encoded = base64.b64encode(data).decode()
    return (f"<a class='csv' download='{html.escape(name)}' href='data:text/csv;charset=utf-8;base64,{encoded}'>"
            f"{html.escape(label)}</a>")


def table_html(rows: list[dict], caption: str = "", digits: int = 3, ids: _Ids | None = None) -> str:
    """A table with every row, in a box that scrolls past about 20 rows; click a column's header to
    sort by it (unknown cells last), type in the filter to keep matching rows, download the rows as
    CSV (the values as stored, not rounded). Rows start in the order given: readings rank them."""
    if not rows:
        return ""
    ids = ids or _Ids()
    name = ids("table")
    tools = (f"<div class='tools'><input type='search' class='filter' data-table='{name}' placeholder='filter rows' "
             f"aria-label='filter the rows of this table'><span id='{name}-count'>{len(rows)} rows</span>"
             f"{_csv_link(csv_text(rows).encode(), name + '.csv', 'download CSV')}</div>")
    return tools + f"<div class='table-wrap'>{_table(rows, caption, digits, name)}</div>"


def _table(rows: list[dict], caption: str, digits: int, name: str) -> str:
    columns = list(rows[0])
    head = "".join(f"<th scope='col'>{html.escape(str(c))}</th>" for c in columns)

    def cell(value) -> str:
        if value is None or (isinstance(value, float) and value != value):
            return "–"  # not known (a user's checkpoint has no seed or split) or not defined: never "None"/"nan"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return html.escape(str(value))

    body = "".join("<tr>" + "".join(f"<td>{cell(row.get(c, ''))}</td>" for c in columns) + "</tr>" for row in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table class='data' id='{name}'>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def figure_csv_html(path: Path) -> str:
    """The link to a figure's numbers (``<stem>.csv`` beside its PNG, written by
    :func:`stablesal.report.figures.save_figure`): embedded up to :data:`CSV_INLINE_BYTES`, else a
    link to the file in the report folder; empty when the figure has none."""
    numbers = Path(path).with_suffix(".csv")
    if not numbers.is_file():
        return ""
    if numbers.stat().st_size <= CSV_INLINE_BYTES:
        return " " + _csv_link(numbers.read_bytes(), numbers.name, "the figure's numbers (CSV)")
    return f" <a class='csv' href='{html.escape(numbers.parent.name + '/' + numbers.name)}'>the figure's numbers (CSV)</a>"


def image_html(path: Path, caption: str, without_overlay: tuple[Path, str] | None = None,
               ids: _Ids | None = None) -> str:
    """A figure, its caption and its numbers; with ``without_overlay`` ``(png, label)``, a checkbox
    switches between the figure and the same figure without its overlay."""
    alt = html.escape(caption[:120])
    if without_overlay is None:
        images = f"<img src='{_png(path)}' alt='{alt}'>"
        toggle, attributes = "", ""
    else:
        name = (ids or _Ids())("figure")
        images = (f"<img class='with-overlay' src='{_png(path)}' alt='{alt}'>"
                  f"<img class='without-overlay' src='{_png(without_overlay[0])}' alt='{alt} (no overlay)' hidden>")
        toggle = (f"<label class='tools'><input type='checkbox' class='overlay-toggle' data-figure='{name}' checked> "
                  f"{html.escape(without_overlay[1])}</label>")
        attributes = f" id='{name}'"
    return (f"<figure{attributes}>{toggle}{images}<figcaption>{html.escape(caption)}{figure_csv_html(path)}"
            "</figcaption></figure>")


def slider_html(slider: Slider, ids: _Ids | None = None) -> str:
    """A range input over the models and one card per entry showing that model's view."""
    models = max((len(frames) for _, frames in slider.cards), default=0)
    if not models:
        return ""
    name = (ids or _Ids())("slider")
    cards = "".join(
        f"<figure><figcaption>{html.escape(title)}</figcaption>"
        + "".join(f"<img data-frame='{k}' src='data:image/png;base64,{base64.b64encode(png).decode()}' "
                  f"alt='{html.escape(title)}, model {k}'{'' if k == 0 else ' hidden'}>" for k, png in enumerate(frames))
        + "</figure>" for title, frames in slider.cards)
    return (f"<div class='tools'><label for='{name}-input'>{html.escape(slider.label)}</label>"
            f"<input type='range' class='model-slider' id='{name}-input' min='0' max='{models - 1}' value='0' "
            f"step='1' data-target='{name}'><span id='{name}-label'>model 0</span></div>"
            f"<div class='cards' id='{name}'>{cards}</div>")


def render_page(title: str, lead: str, sections: list[Section]) -> str:
    ids = _Ids()
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
             f"<script>{EARLY_SCRIPT}</script>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p class='lead'>{html.escape(lead)}</p>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.reading:
            parts.append(f"<p class='reading'>{html.escape(section.reading)}</p>")
        # a figure first, then the short tables: the picture carries the section, the numbers back it
        for path, caption in section.figures:
            parts.append(image_html(path, caption, section.toggles.get(path), ids))
        for slider in section.sliders:
            parts.append(slider_html(slider, ids))
        for rows, caption in section.tables:
            parts.append(table_html(rows, caption, ids=ids))
    parts.append(f"<script>{INTERACTIONS}</script>")
    parts.append(f"<script>{LOAD_CHECK}</script>")
    parts.append("</body></html>")
    return "\n".join(parts)
