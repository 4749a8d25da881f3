"""File formats -> raw records, streamed in bounded memory whatever the file holds.

Compressed files are decompressed as they are read, never whole. Lines are split from 1 MiB reads
with a length cap, so a 2 GB single-line record costs one capped buffer, not 2 GB: it is
reported at its line as too large, its bytes dropped as they arrive, and reading goes on with the
next line. A `.json` document, which must be parsed whole, is read up to its own cap. A file that
cannot be decompressed (truncated, corrupt, a `.zst` that is not zstd) becomes one record-level
problem naming the file, so --skip-invalid goes on with the next file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from loraplan.data.errors import DataSourceError
from loraplan.data.limits import DataLimits
from loraplan.errors import require

READ_CHUNK = 2**20  # bytes read at a time
Position = Callable[[], None]


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as read: undecoded JSONL bytes or a parsed object; `problem` marks a reader-level fault."""

    payload: Any
    where: str
    problem: str | None = None
    reason: str = "malformed record"

    def __reduce__(self) -> tuple[type, tuple[Any, str, str | None, str]]:
        """Pickle as a plain tuple: records cross to worker processes by the million."""
        return RawRecord, (self.payload, self.where, self.problem, self.reason)


class _Unreadable(Exception):
    """Reading the (decompressed) stream failed: the message names what the decompressor said."""


def decompress(raw: IO[bytes], compression: str | None, path: Path) -> IO[bytes]:
    """A streaming reader of the file's content (gzip and zstd, multi-frame zstd included)."""
    if compression == ".gz":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if compression in (".zst", ".zstd"):
        zstandard: Any = require("zstandard", "data", f"reading {path.name}")
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True))
    return raw


def _read(stream: IO[bytes], size: int) -> bytes:
    """One bounded read; any decompressor or I/O failure becomes _Unreadable."""
    try:
        return stream.read(size)
    except Exception as exc:  # gzip: OSError/EOFError/zlib.error; zstandard: ZstdError; disks: OSError
        raise _Unreadable(str(exc) or type(exc).__name__) from exc


def bounded_lines(stream: IO[bytes], limit: int) -> Iterator[bytes | None]:
    """Each line with its newline; None for a line over `limit` bytes, whose bytes are dropped as they arrive.

    The stream is read READ_CHUNK bytes at a time and split here (readline would build a long line in
    8 KiB pieces); at most `limit` bytes of an unfinished line are kept.
    """
    parts: list[bytes] = []  # the unfinished line so far
    size = 0
    skipping = False  # inside a line already known to be too long
    while chunk := _read(stream, READ_CHUNK):
        lines = chunk.split(b"\n")
        tail = lines.pop()
        for i, line in enumerate(lines):
            if i == 0:
                if skipping:
                    skipping = False
                    yield None
                    continue
                if parts:
                    line = b"".join((*parts, line))
                    parts, size = [], 0
            yield line + b"\n" if len(line) - line.endswith(b"\r") <= limit else None
        if not skipping and tail:
            parts.append(tail)
            size += len(tail)
            if size > limit + 1:
                parts, size, skipping = [], 0, True
    if skipping:
        yield None
    elif parts:
        line = b"".join(parts)
        yield line if len(line) - line.endswith(b"\r") <= limit else None


def _too_large(path: Path, lineno: int, limits: DataLimits) -> RawRecord:
    return RawRecord(None, f"{path}:{lineno}", f"record longer than {limits.record_bytes:,} bytes (the "
                     "--max-record-bytes limit); raise the limit if it is real data", "record too large")


def _unreadable(path: Path, exc: _Unreadable) -> RawRecord:
    return RawRecord(None, str(path), f"cannot read or decompress the file ({exc}); is it truncated, or not "
                     "the format its extension says?", "corrupt file")


def _empty(path: Path) -> RawRecord:
    return RawRecord(None, str(path), "empty file: no records", "empty file")


def jsonl(path: Path, stream: IO[bytes], position: Position, limits: DataLimits) -> Iterator[RawRecord]:
    count = lineno = 0
    try:
        for lineno, line in enumerate(bounded_lines(stream, limits.record_bytes), 1):
            if lineno % 1024 == 0:
                position()
            if line is None:
                count += 1
                yield _too_large(path, lineno, limits)
            elif not line.isspace():
                count += 1
                yield RawRecord(line, f"{path}:{lineno}")
    except _Unreadable as exc:
        yield _unreadable(path, exc)
        return
    if count == 0:
        yield _empty(path)


def json_document(path: Path, stream: IO[bytes], position: Position, limits: DataLimits) -> Iterator[RawRecord]:
    """A JSON list of records (or an object holding one list); JSON Lines saved as .json also work."""
    cap = limits.document_bytes
    parts: list[bytes] = []
    size = 0
    try:
        while size <= cap and (part := _read(stream, READ_CHUNK)):
            parts.append(part)
            size += len(part)
    except _Unreadable as exc:
        yield _unreadable(path, exc)
        return
    if size > cap:
        yield RawRecord(None, str(path), f"a .json document over {cap:,} bytes is parsed whole, so it is refused "
                        "(4 x --max-record-bytes); convert it to JSON Lines (one record a line) to stream it, or "
                        "raise --max-record-bytes", "document too large")
        return
    data = b"".join(parts)
    del parts
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        yield RawRecord(None, f"{path}:{line}", f"not UTF-8 (byte 0x{data[exc.start]:02x}); re-encode the file "
                        "as UTF-8", "not UTF-8")
        return
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            yield from jsonl(path, io.BytesIO(data), position, limits)
            return
        yield RawRecord(None, f"{path}:{exc.lineno}", f"invalid JSON ({exc.msg} at column {exc.colno})",
                        "invalid JSON")
        return
    except RecursionError:
        yield RawRecord(None, str(path), "JSON nested too deeply to parse", "invalid JSON")
        return
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        value = lists[0] if len(lists) == 1 and len(value) == 1 else [value]
    if not isinstance(value, list) or not value:
        yield _empty(path)
        return
    for i, item in enumerate(value):
        yield RawRecord(item, f"{path} item {i}")


def delimited(path: Path, stream: IO[bytes], position: Position, limits: DataLimits,
              delimiter: str = ",") -> Iterator[RawRecord]:
    """CSV/TSV rows; a line over the limit or not UTF-8 is reported at its line and reading goes on."""
    problems: list[RawRecord] = []
    lineno = 0

    def lines() -> Iterator[str]:
        nonlocal lineno
        for line in bounded_lines(stream, limits.record_bytes):
            lineno += 1
            if line is None:
                problems.append(_too_large(path, lineno, limits))
                yield "\n"
                continue
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(RawRecord(None, f"{path}:{lineno}", f"not UTF-8 (byte 0x{line[exc.start]:02x}); "
                                          "re-encode the file as UTF-8", "not UTF-8"))
                yield "\n"

    # csv's field limit is process-wide (131,072 by default); a record may be as long as the record limit
    csv.field_size_limit(max(csv.field_size_limit(), limits.record_bytes))
    reader = csv.DictReader(lines(), delimiter=delimiter)
    count = 0
    try:
        for row in reader:
            yield from problems
            count += len(problems) + 1
            problems.clear()
            if count % 1024 == 0:
                position()
            clean = {k: _csv_value(k, v) for k, v in row.items() if k is not None and v not in (None, "")}
            yield RawRecord(clean, f"{path}:{reader.line_num}")
    except _Unreadable as exc:
        yield from problems
        yield _unreadable(path, exc)
        return
    except csv.Error as exc:
        yield from problems
        yield RawRecord(None, f"{path}:{reader.line_num}", f"malformed CSV ({exc})", "malformed CSV")
        return
    yield from problems
    if count + len(problems) == 0:
        yield _empty(path)


def tsv(path: Path, stream: IO[bytes], position: Position, limits: DataLimits) -> Iterator[RawRecord]:
    return delimited(path, stream, position, limits, "\t")


def _csv_value(key: str, value: str) -> Any:
    """CSV cells are strings; weights are numbers."""
    return int(value) if key == "weight" and value.strip() in ("0", "1") else value


def parquet(path: Path, raw: IO[bytes], progress: Callable[[float], None]) -> Iterator[RawRecord]:
    """Parquet rows, read from the already opened (guarded) file in batches of 1,024."""
    pq: Any = require("pyarrow.parquet", "data", f"reading {path.name}")
    try:
        table = pq.ParquetFile(raw)
        total = table.metadata.num_rows
    except Exception as exc:  # pyarrow raises ArrowInvalid (a ValueError) or OSError
        raise DataSourceError(f"{path}: not a readable Parquet file ({exc})") from exc
    if total == 0:
        yield _empty(path)
        return
    row = 0
    batches = table.iter_batches(batch_size=1024)
    while True:
        try:
            batch = next(batches, None)
            items = [] if batch is None else batch.to_pylist()
        except Exception as exc:  # a corrupt page: the rows read so far stand
            yield RawRecord(None, f"{path} row {row}", f"cannot read the Parquet file from here on ({exc})",
                            "corrupt file")
            return
        if batch is None:
            return
        for item in items:
            yield RawRecord(item, f"{path} row {row}")
            row += 1
        progress(row / total)


READERS = {"jsonl": jsonl, "json": json_document, "csv": delimited, "tsv": tsv}
