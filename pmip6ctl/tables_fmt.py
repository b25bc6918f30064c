"""Aligned plain-text tables for the CLI."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Sequence

# --raw: numbers as they are (12345, not 12,345), for scripts that parse tables.
raw_numbers: ContextVar[bool] = ContextVar("raw_numbers", default=False)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return repr(value) if raw_numbers.get() else f"{value:.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if raw_numbers.get() else f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)


def render_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]], empty: str = "(none)") -> str:
    """columns: (key, heading). Numbers right-aligned, text left-aligned."""
    if not rows:
        return empty
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    numeric = [all(isinstance(row.get(key), (int, float)) and not isinstance(row.get(key), bool)
                   for row in rows if row.get(key) is not None) for key, _ in columns]
    widths = [max(len(heading), *(len(c[i]) for c in cells)) for i, (_, heading) in enumerate(columns)]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line([h.upper() for _, h in columns])]
    out += [line(c) for c in cells]
    return "\n".join(out)
