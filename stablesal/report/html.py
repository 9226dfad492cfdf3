"""A self-contained HTML page: figures embedded as base64 PNG, no network, one tiny self-check script."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from ..core.registry import Registry

STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1.2em; color: #1d1d1f; line-height: 1.5; }
h1 { font-size: 1.9em; margin-bottom: 0.1em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
p.lead { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; max-width: 100%; display: block; overflow-x: auto; }
th, td { padding: 4px 10px; text-align: right; border-bottom: 1px solid #eee; white-space: nowrap; }
th { background: #f4f4f6; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
summary { cursor: pointer; color: #4a78c2; margin: .3em 0; }
.reading { background: #f7f9fc; border-left: 4px solid #4a78c2; padding: .6em 1em; }
code { background: #f4f4f6; padding: 0 3px; }
@media print { body { max-width: none; margin: 0.5cm; } h2 { page-break-after: avoid; } figure { page-break-inside: avoid; } }
"""


@dataclass
class Section:
    """One section of the page: a title, a plain-language reading, figures and tables."""

    title: str
    reading: str = ""
    figures: list[tuple[Path, str]] = field(default_factory=list)  # (png path, caption)
    tables: list[tuple[list[dict], str]] = field(default_factory=list)  # (rows, caption)


# Every section of the report page: name → builder(results: dict, out: Path) → Section | [Section] | None,
# with metadata ``order`` (the page runs from low to high). See stablesal.report.sections.common.
SECTIONS = Registry("report section")


def report_section(name: str, *, order: float, stage: str | None = None):
    """Register a section builder under ``name`` at position ``order`` of the page; ``stage``: the
    pipeline stage whose results it shows (the page leaves it out when that stage did not run)."""
    return SECTIONS.register(name, order=order, stage=stage)


SHORT_TABLE = 12  # rows shown before a long table folds the rest away


def table_html(rows: list[dict], caption: str = "", digits: int = 3) -> str:
    """A table; one longer than :data:`SHORT_TABLE` rows shows its first rows and folds the whole
    table into a ``<details>`` element below them (rows keep their order: readings rank them)."""
    if not rows:
        return ""
    if len(rows) > SHORT_TABLE:
        return (_table(rows[:SHORT_TABLE], caption + f" First {SHORT_TABLE} of {len(rows)} rows.", digits)
                + f"<details><summary>all {len(rows)} rows</summary>{_table(rows, caption, digits)}</details>")
    return _table(rows, caption, digits)


def _table(rows: list[dict], caption: str, digits: int) -> str:
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)

    def cell(value) -> str:
        if value is None or (isinstance(value, float) and value != value):
            return "–"  # not known (a user's checkpoint has no seed or split) or not defined: never "None"/"nan"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return html.escape(str(value))

    body = "".join("<tr>" + "".join(f"<td>{cell(row.get(c, ''))}</td>" for c in columns) + "</tr>" for row in rows)
    cap = f"<caption style='caption-side:bottom;color:#555'>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image_html(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    alt = html.escape(caption[:120])
    return (f"<figure><img src='data:image/png;base64,{data}' alt='{alt}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render_page(title: str, lead: str, sections: list[Section]) -> str:
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p class='lead'>{html.escape(lead)}</p>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.reading:
            parts.append(f"<p class='reading'>{html.escape(section.reading)}</p>")
        # a figure first, then the short tables: the picture carries the section, the numbers back it
        for path, caption in section.figures:
            parts.append(image_html(path, caption))
        for rows, caption in section.tables:
            parts.append(table_html(rows, caption))
    # A self-check for headless browsers: every image decoded and nothing wider than the page.
    parts.append("<script>window.addEventListener('load',function(){var bad=[].filter.call(document.images,"
                 "function(i){return !(i.complete&&i.naturalWidth>0)}).length;var over=document.documentElement"
                 ".scrollWidth>window.innerWidth+1;document.body.setAttribute('data-check','images-broken='+bad+"
                 "';overflow='+over)});</script>")
    parts.append("</body></html>")
    return "\n".join(parts)
