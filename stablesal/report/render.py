"""The report page from a report folder: ``index.html`` rebuilt from ``results.json`` and the
figures drawn when the report ran; no model, dataset or cache is read (``stablesal render``)."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.storage import atomic_write_text
from .html import render_page
from .sections.common import report_sections


def render_report(out: Path | str) -> Path:
    """Rebuild ``index.html`` of a report folder from its ``results.json`` and the figures that
    needed models (drawn when the report ran); no model, dataset or cache is read. Returns the page."""
    out = Path(out)
    results_path = out / "results.json"
    if not results_path.exists():
        raise FileNotFoundError(f"{results_path} does not exist: render needs a report folder made by "
                                "`stablesal report`")
    results = json.loads(results_path.read_text())
    environment = results["environment"]
    page = render_page(
        f"stablesal stability report: {results['config']['report']['name']}",
        f"stablesal {environment['stablesal']} · torch {environment['torch']} · {environment['machine']} · "
        f"{environment['threads']} threads · {results['timings_s']['total']:.0f} s",
        report_sections(results, out),  # every registered section, a pure function of the results
    )
    atomic_write_text(out / "index.html", page)
    return out / "index.html"
