"""The committed results of the default report (``experiments/results/default.json``) and the HTML
of report sections built from them, for the section tests: no model, no training."""

import html
import json
import math
from pathlib import Path

from stablesal.report.html import Section, render_page

DEFAULT_JSON = Path(__file__).resolve().parents[2] / "experiments" / "results" / "default.json"


def load_default_results() -> dict:
    """``experiments/results/default.json``, read with json alone."""
    return json.loads(DEFAULT_JSON.read_text())


def section_list(built) -> list[Section]:
    """A builder's return value (a Section, several, or None) as a list."""
    return [] if built is None else [built] if isinstance(built, Section) else list(built)


def page_text(sections) -> str:
    """The page :func:`~stablesal.report.html.render_page` writes for these sections, HTML entities
    unescaped. A figure is embedded where its file exists: a section built from results.json alone
    names the report folder's own figures (example maps, dataset examples), which are not committed."""
    kept = [Section(s.title, s.reading, [(p, c) for p, c in s.figures if Path(p).exists()], s.tables)
            for s in section_list(sections)]
    return html.unescape(render_page("sections", "", kept))


def interval(row: dict, key: str, digits: int = 2, low: str = "_ci_low", high: str = "_ci_high") -> str:
    """The value ``row[key]`` and its interval as the page prints them: ``"0.42 [0.30, 0.55]"``,
    the value alone without a finite interval, ``"–"`` without a finite value."""
    value = row.get(key)
    if value is None or not math.isfinite(value):
        return "–"
    bounds = row.get(f"{key}{low}"), row.get(f"{key}{high}")
    if any(b is None or not math.isfinite(b) for b in bounds):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{bounds[0]:.{digits}f}, {bounds[1]:.{digits}f}]"
