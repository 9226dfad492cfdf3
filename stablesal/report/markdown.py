"""The report's sections as Markdown: the results page of the documentation (``docs/results.md``),
built from a committed ``results.json`` by the same section builders as the HTML page, so the page
and the docs cannot say different things (``analysis/results_page.py`` writes it; a test checks
the committed page against the file it was made from)."""

from __future__ import annotations

from pathlib import Path

from .figures import links_only
from .html import Section
from .sections.common import report_sections


def _cell(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"  # as on the page
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict], caption: str = "") -> str:
    """A Markdown table of ``rows`` (columns of the first row; floats to 3 digits), its caption below."""
    if not rows:
        return ""
    columns = list(rows[0])
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + (f"\n\n*{caption.strip()}*" if caption else "")


def section_markdown(section: Section, figure_link) -> str:
    """One section: its title, reading, figures (``figure_link(path)`` → the link target) and tables."""
    parts = [f"## {section.title}"]
    if section.reading:
        parts.append(section.reading)
    for path, caption in section.figures:
        parts.append(f"![{caption}]({figure_link(Path(path))})\n\n*{caption}*")
    for rows, caption in section.tables:
        table = markdown_table(rows, caption)
        if table:
            parts.append(table)
    return "\n\n".join(parts)


def results_markdown(results: dict, report_dir: Path | str, figures: str = "../figures", source: str = "") -> str:
    """Every section of the page for ``results`` (a parsed ``results.json``) in Markdown.
    ``report_dir``: the folder ``results.json`` is in, where sections find the files they show
    beside it (the consensus maps); nothing is written there. Figures are linked as
    ``<figures>/<file name>``, the folder the built-in run copies its figures to, not drawn again.
    ``source``: the results file named in the heading."""
    with links_only():
        sections = report_sections(results, Path(report_dir))
    heading = ["# Results of the default report", ""]
    if source:
        heading += [f"Generated from `{source}` (stablesal {results['environment']['stablesal']}, code "
                    f"{results['environment'].get('code_version', '')}) by `python analysis/results_page.py`; every "
                    "reading is computed from the numbers beside it, as on the report page.", ""]
    body = [section_markdown(section, lambda path: f"{figures}/{path.with_suffix('.png').name}")
            for section in sections]
    return "\n".join(heading) + "\n" + "\n\n".join(body) + "\n"
