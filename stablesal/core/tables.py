"""Plain-text tables for the terminal."""

from __future__ import annotations


def format_table(rows: list[dict], floats: str = "{:.3f}") -> str:
    """A plain-text table of dict rows with aligned columns."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0])
    cells = [[floats.format(v) if isinstance(v, float) else str(v) for v in (row[c] for c in columns)] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.rjust(w) for v, w in zip(values, widths))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])
