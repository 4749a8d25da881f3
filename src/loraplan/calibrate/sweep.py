"""Sweep readers: (model, lr, rank, metric) rows from the files people actually have.

Layouts:
- tinker-cookbook `sft_sweep.md`: a `## org/model` heading, then a table whose header has
  `LR`, `LoRA Rank` and `Test NLL` columns (other columns are ignored);
- CSV with a header naming `model, lr, rank, metric` (extra columns ignored);
- JSONL, one object per line with the same keys;
- a folder written by `loraplan sweep` (loraplan.calibrate.store): its trials.jsonl.

Every malformed row raises SweepError naming file:line, so a bad file costs one message.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loraplan.errors import InputFileError, LoraplanError
from loraplan.userfiles import read_user_text

MAX_SWEEP_BYTES = 50 * 1024 * 1024  # sweep tables are kilobytes; refuse anything huge
REQUIRED_COLUMNS = ("model", "lr", "rank", "metric")


class SweepError(LoraplanError):
    """A sweep file that cannot be read as (model, lr, rank, metric) rows."""


@dataclass(frozen=True)
class SweepPoint:
    """One finished run.

    model: the model id as the sweep names it (looked up in the catalogue later).
    lr: peak learning rate of the run.
    rank: LoRA rank.
    metric: the score to minimise (test NLL in the tinker-cookbook table).
    where: `file:line` the row came from, for messages.
    """

    model: str
    lr: float
    rank: int
    metric: float
    where: str


@dataclass(frozen=True)
class Sweep:
    """All runs of one or more sweep files, in file order."""

    points: tuple[SweepPoint, ...]
    sources: tuple[str, ...]

    def models(self) -> list[str]:
        """Model ids in first-seen order."""
        return list(dict.fromkeys(p.model for p in self.points))

    def for_model(self, model: str) -> list[SweepPoint]:
        return [p for p in self.points if p.model == model]


def _positive(value: Any, name: str, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SweepError(f"{where}: `{name}` must be a number, got {value!r}") from exc
    if not math.isfinite(number) or number <= 0:
        raise SweepError(f"{where}: `{name}` must be a positive finite number, got {value!r}")
    return number


def _rank(value: Any, where: str) -> int:
    number = _positive(value, "rank", where)
    if number != int(number):
        raise SweepError(f"{where}: `rank` must be a whole number, got {value!r}")
    return int(number)


def _point(model: Any, lr: Any, rank: Any, metric: Any, where: str) -> SweepPoint:
    if not isinstance(model, str) or not model.strip():
        raise SweepError(f"{where}: `model` must be a non-empty model id, got {model!r}")
    return SweepPoint(model.strip(), _positive(lr, "lr", where), _rank(rank, where),
                      _positive(metric, "metric", where), where)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def read_markdown(text: str, name: str) -> list[SweepPoint]:
    """The tinker-cookbook layout: `## org/model` then a `| LR | LoRA Rank | Test NLL |` table."""
    points: list[SweepPoint] = []
    model: str | None = None
    columns: dict[str, int] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{name}:{number}"
        stripped = line.strip()
        if stripped.startswith("## "):
            heading = stripped[3:].strip()
            model = heading if heading.count("/") == 1 and " " not in heading else None
            columns = None
            continue
        if not stripped.startswith("|"):
            columns = None if not stripped else columns
            continue
        cells = _cells(stripped)
        lowered = [c.lower() for c in cells]
        if "lr" in lowered and "lora rank" in lowered and "test nll" in lowered:
            if model is None:
                raise SweepError(f"{where}: results table outside a `## org/model` section")
            columns = {"lr": lowered.index("lr"), "rank": lowered.index("lora rank"),
                       "metric": lowered.index("test nll")}
            continue
        if columns is None or model is None or all(set(c) <= set(":-") for c in cells):
            continue
        if len(cells) <= max(columns.values()):
            raise SweepError(f"{where}: expected at least {max(columns.values()) + 1} columns, got {len(cells)}")
        points.append(_point(model, cells[columns["lr"]], cells[columns["rank"]], cells[columns["metric"]], where))
    if not points:
        raise SweepError(f"{name}: no `| LR | LoRA Rank | Test NLL |` table under a `## org/model` heading")
    return points


def read_csv(text: str, name: str) -> list[SweepPoint]:
    """CSV with a header row naming model, lr, rank, metric."""
    reader = csv.reader(io.StringIO(text))
    try:
        return _csv_rows(reader, name)
    except csv.Error as exc:  # a field over csv's size limit, an unclosed quote at the end
        raise SweepError(f"{name}:{reader.line_num}: unreadable CSV ({exc})") from exc


def _csv_rows(reader: Any, name: str) -> list[SweepPoint]:
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration as exc:
        raise SweepError(f"{name}: empty CSV") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise SweepError(f"{name}:1: CSV header lacks {', '.join(missing)} (need {', '.join(REQUIRED_COLUMNS)})")
    index = {c: header.index(c) for c in REQUIRED_COLUMNS}
    points: list[SweepPoint] = []
    for row in reader:
        where = f"{name}:{reader.line_num}"
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise SweepError(f"{where}: expected {len(header)} fields, got {len(row)}")
        points.append(_point(*(row[index[c]] for c in REQUIRED_COLUMNS), where))
    return points


def read_jsonl(text: str, name: str) -> list[SweepPoint]:
    """One JSON object per line with model, lr, rank, metric."""
    points: list[SweepPoint] = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{name}:{number}"
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SweepError(f"{where}: invalid JSON ({exc.msg})") from exc
        except (RecursionError, ValueError) as exc:  # nesting past the recursion limit; a 4300-digit number
            why = "nested too deeply" if isinstance(exc, RecursionError) else "a number too long to read"
            raise SweepError(f"{where}: invalid JSON ({why})") from exc
        if not isinstance(record, dict):
            raise SweepError(f"{where}: each line must be a JSON object")
        missing = [c for c in REQUIRED_COLUMNS if c not in record]
        if missing:
            raise SweepError(f"{where}: missing {', '.join(missing)}")
        points.append(_point(*(record[c] for c in REQUIRED_COLUMNS), where))
    return points


READERS = {".md": read_markdown, ".markdown": read_markdown, ".csv": read_csv, ".jsonl": read_jsonl}


def read_sweep_file(path: str | Path) -> list[SweepPoint]:
    """One file, its layout chosen by suffix."""
    file = Path(path)
    from loraplan.calibrate.store import is_store, read_store

    if is_store(file):
        return read_store(file)
    if file.is_dir():
        raise SweepError(f"{file}: is a folder but not a `loraplan sweep` store (no trials.jsonl); "
                         "give a sweep file or a store")
    reader = READERS.get(file.suffix.lower())
    if reader is None and not file.exists():
        raise SweepError(f"{file}: no such file or folder")
    if reader is None:
        raise SweepError(f"{file}: unknown sweep layout; use .md (tinker-cookbook sft_sweep), .csv or .jsonl")
    try:
        text = read_user_text(file, what="sweep table", max_bytes=MAX_SWEEP_BYTES)
    except InputFileError as exc:
        raise SweepError(str(exc)) from exc
    points = reader(text, str(file))
    if not points:
        raise SweepError(f"{file}: no sweep rows")
    return points


def read_sweeps(paths: Iterable[str | Path]) -> Sweep:
    """Every file's rows together (several files may add models or runs)."""
    names = [str(p) for p in paths]
    if not names:
        raise SweepError("give at least one sweep file")
    points = [point for name in names for point in read_sweep_file(name)]
    return Sweep(tuple(points), tuple(names))
