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


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Group:
    """A titled table; the title is its own line so a narrow table does not wrap it."""
    out = Table()
    for i, col in enumerate(columns):
        out.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        out.add_row(*[Text(f"{cell:,}" if isinstance(cell, int) else str(cell)) for cell in row])  # text, not markup
    return Group(Text(title, style="italic"), out)
