"""Tables as text: aligned for the terminal, CSV for files."""

from __future__ import annotations

import csv
import io


def format_table(rows: list[dict], floats: str = "{:.3f}") -> str:
    """A plain-text table of dict rows with aligned columns."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0])
    cells = [[floats.format(v) if isinstance(v, float) else str(v) for v in (row[c] for c in columns)] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.rjust(w) for v, w in zip(values, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def csv_text(rows: list[dict]) -> str:
    """``rows`` as CSV text: the columns are the union of the rows' keys, in order of first appearance
    (a missing cell is empty)."""
    buffer = io.StringIO()
    fields = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(buffer, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
