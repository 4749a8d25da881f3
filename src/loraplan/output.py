"""Rendering helpers shared by the commands: one JSON object on stdout, or a Rich table."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

console = Console()
err_console = Console(stderr=True)


def emit_json(payload: dict[str, Any]) -> None:
    """Exactly one JSON object on stdout, nothing else."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def _cell(cell: Any) -> str:
    return f"{cell:,}" if isinstance(cell, int) and not isinstance(cell, bool) else str(cell)


def table(title: str, columns: list[str], rows: list[list[Any]], drop_first: tuple[str, ...] = (),
          width: int | None = None) -> Group:
    """A titled table; the title is its own line so a narrow table does not wrap it.

    The first column is what people copy (a model id): it is never cut or wrapped. When the table is
    wider than the terminal, the columns named in `drop_first` go, in that order, until it fits.
    """
    cells = [[_cell(cell) for cell in row] for row in rows]
    keep = list(range(len(columns)))
    available = width if width is not None else console.width

    def needed() -> int:  # content + one space of padding each side + a border per column + the last border
        return sum(max([len(columns[i]), *(len(r[i]) for r in cells)]) + 3 for i in keep) + 1

    for name in drop_first:
        if needed() <= available:
            break
        keep.remove(columns.index(name))
    out = Table()
    for i in keep:
        out.add_column(columns[i], justify="left" if i == 0 else "right", no_wrap=i == 0, overflow="ignore"
                       if i == 0 else "fold", min_width=max(len(r[0]) for r in cells) if i == 0 and cells else None)
    for row in cells:
        out.add_row(*[Text(row[i]) for i in keep])  # text, not markup
    return Group(Text(title, style="italic"), out)
