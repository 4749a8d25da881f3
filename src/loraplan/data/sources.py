"""Data sources: files, folders, globs and Hugging Face data sets, read lazily as raw records.

JSONL lines stay undecoded bytes until a record is needed, so `--sample` can draw from a
multi-GB file without parsing it. Every record carries where it came from (file:line, or
file row N), which every error message names. Nothing is ever written to the inputs.
"""

from __future__ import annotations

import csv
import glob
import gzip
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from loraplan.data.errors import DataSourceError, InvalidRecordError
from loraplan.errors import require

EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv",
              ".tsv": "tsv"}
COMPRESSIONS = (".gz", ".zst", ".zstd")


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


def parse(raw: RawRecord) -> Any:
    """The record's object; raise InvalidRecordError naming file and line for bad bytes or bad JSON."""
    if raw.problem is not None:
        raise InvalidRecordError(raw.where, raw.problem, raw.reason)
    if not isinstance(raw.payload, bytes):
        return raw.payload
    try:
        text = raw.payload.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise InvalidRecordError(raw.where, f"not UTF-8 (byte 0x{raw.payload[exc.start]:02x} at column "
                                 f"{exc.start + 1}); re-encode the file as UTF-8", "not UTF-8") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRecordError(raw.where, f"invalid JSON ({exc.msg} at column {exc.colno})", "invalid JSON") from exc


def file_kind(path: Path) -> tuple[str | None, str | None]:
    """(format, compression) from the file name, e.g. data.jsonl.zst -> ('jsonl', '.zst')."""
    name = path.name.lower()
    compression = next((c for c in COMPRESSIONS if name.endswith(c)), None)
    stem = name[: -len(compression)] if compression else name
    return next((kind for ext, kind in EXTENSIONS.items() if stem.endswith(ext)), None), compression


class DataSet:
    """Files read in order (or one hub data set); `done_bytes` / `total_bytes` drive the progress bar."""

    def __init__(self, refs: str | Path | Sequence[str | Path], split: str = "train", subset: str | None = None):
        refs = [refs] if isinstance(refs, str | Path) else list(refs)
        if not refs:
            raise DataSourceError("no data given: pass files, folders, globs or a hub data set name")
        self.split, self.subset = split, subset
        self.files: list[Path] = []
        self.hub: list[str] = []
        for ref in refs:
            self._resolve(str(ref))
        self.total_bytes: int | None = sum(f.stat().st_size for f in self.files) if not self.hub else None
        self.done_bytes = 0
        self.label = ", ".join(str(r) for r in refs)

    def _resolve(self, ref: str) -> None:
        path = Path(ref).expanduser()
        if path.is_dir() and not (path / "dataset_info.json").is_file():
            found = sorted(p for p in path.rglob("*") if p.is_file() and file_kind(p)[0]
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise DataSourceError(f"{path}: folder has no data files (.jsonl, .json, .parquet, .csv, .tsv, "
                                      "optionally .gz or .zst)")
            self.files += found
        elif path.is_dir() or (not path.exists() and not any(c in ref for c in "*?[") and _looks_like_hub(ref)):
            self.hub.append(ref)
        elif path.is_file():
            if file_kind(path)[0] is None:
                raise DataSourceError(f"{path}: unknown file type; expected .jsonl, .json, .parquet, .csv or .tsv "
                                      "(optionally .gz or .zst)")
            self.files.append(path)
        else:
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            matches = [m for m in matches if m.is_file() and file_kind(m)[0]]
            if not matches:
                raise DataSourceError(f"{ref}: no such file, folder or glob match")
            self.files += matches

    def __iter__(self) -> Iterator[RawRecord]:
        for path in self.files:
            yield from self._read_file(path)
        for name in self.hub:
            yield from self._read_hub(name)

    def _read_file(self, path: Path) -> Iterator[RawRecord]:
        kind, compression = file_kind(path)
        base = self.done_bytes
        try:
            raw = path.open("rb")
        except OSError as exc:
            raise DataSourceError(f"{path}: cannot open ({exc.strerror})") from exc
        with raw:
            stream = _decompress(raw, compression, path)
            if kind == "parquet":
                records = _parquet(path, lambda frac: setattr(self, "done_bytes", base + int(frac * _size(path))))
            else:
                position: Callable[[], None] = lambda: setattr(self, "done_bytes", base + raw.tell())  # noqa: E731
                reader = {"jsonl": _jsonl, "json": _json, "csv": _csv, "tsv": _tsv}[kind or "jsonl"]
                records = reader(path, stream, position)
            yield from records
        self.done_bytes = base + _size(path)

    def _read_hub(self, name: str) -> Iterator[RawRecord]:
        datasets: Any = require("datasets", "data", f"reading the hub data set {name}")
        label = f"{name}[{self.split}]"
        try:
            if Path(name).expanduser().is_dir():
                data = datasets.load_from_disk(str(Path(name).expanduser()))
                data = data[self.split] if hasattr(data, "keys") else data
            else:
                data = datasets.load_dataset(name, self.subset, split=self.split, streaming=True)
            rows = iter(data)
            first = next(rows, None)
        except (OSError, ValueError, KeyError, ConnectionError) as exc:
            raise DataSourceError(f"data set {label}: cannot load ({str(exc).splitlines()[0]})") from exc
        if first is None:
            yield RawRecord(None, label, "empty data set: no records", "empty file")
            return
        yield RawRecord(first, f"{label} row 0")
        for i, row in enumerate(rows, 1):
            yield RawRecord(row, f"{label} row {i}")


def _looks_like_hub(ref: str) -> bool:
    """org/name or name, without a file extension: what load_dataset accepts."""
    return ref.count("/") <= 1 and not ref.startswith((".", "/", "~")) and file_kind(Path(ref))[0] is None


def _size(path: Path) -> int:
    return path.stat().st_size


def _decompress(raw: IO[bytes], compression: str | None, path: Path) -> IO[bytes]:
    if compression == ".gz":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if compression in (".zst", ".zstd"):
        zstandard: Any = require("zstandard", "data", f"reading {path.name}")
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw))
    return raw


def _jsonl(path: Path, stream: IO[bytes], position: Callable[[], None]) -> Iterator[RawRecord]:
    count = 0
    try:
        for lineno, line in enumerate(stream, 1):
            if lineno % 1024 == 0:
                position()
            if line and not line.isspace():
                count += 1
                yield RawRecord(line, f"{path}:{lineno}")
    except (OSError, EOFError) as exc:  # a truncated or corrupt .gz / .zst
        yield RawRecord(None, str(path), f"cannot decompress ({exc})", "corrupt file")
        return
    if count == 0:
        yield RawRecord(None, str(path), "empty file: no records", "empty file")


def _json(path: Path, stream: IO[bytes], position: Callable[[], None]) -> Iterator[RawRecord]:
    """A JSON list of records (or an object holding one list); JSON Lines saved as .json also work."""
    data = stream.read()
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
            yield from _jsonl(path, io.BytesIO(data), position)
            return
        yield RawRecord(None, f"{path}:{exc.lineno}", f"invalid JSON ({exc.msg} at column {exc.colno})",
                        "invalid JSON")
        return
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        value = lists[0] if len(lists) == 1 and len(value) == 1 else [value]
    if not isinstance(value, list) or not value:
        yield RawRecord(None, str(path), "empty file: no records", "empty file")
        return
    for i, item in enumerate(value):
        yield RawRecord(item, f"{path} item {i}")


def _csv(path: Path, stream: IO[bytes], position: Callable[[], None], delimiter: str = ",") -> Iterator[RawRecord]:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    reader = csv.DictReader(text, delimiter=delimiter)
    count = 0
    try:
        for row in reader:
            count += 1
            if count % 1024 == 0:
                position()
            clean = {k: _csv_value(k, v) for k, v in row.items() if k is not None and v not in (None, "")}
            yield RawRecord(clean, f"{path}:{reader.line_num}")
    except UnicodeDecodeError as exc:
        yield RawRecord(None, f"{path}:{reader.line_num + 1}", f"not UTF-8 (byte 0x{exc.object[exc.start]:02x}); "
                        "re-encode the file as UTF-8", "not UTF-8")
        return
    except csv.Error as exc:
        yield RawRecord(None, f"{path}:{reader.line_num}", f"malformed CSV ({exc})", "malformed CSV")
        return
    if count == 0:
        yield RawRecord(None, str(path), "empty file: no records", "empty file")


def _tsv(path: Path, stream: IO[bytes], position: Callable[[], None]) -> Iterator[RawRecord]:
    return _csv(path, stream, position, "\t")


def _csv_value(key: str, value: str) -> Any:
    """CSV cells are strings; weights are numbers."""
    return int(value) if key == "weight" and value.strip() in ("0", "1") else value


def _parquet(path: Path, progress: Callable[[float], None]) -> Iterator[RawRecord]:
    pq: Any = require("pyarrow.parquet", "data", f"reading {path.name}")
    try:
        parquet = pq.ParquetFile(str(path))
    except Exception as exc:  # pyarrow raises ArrowInvalid (a ValueError) or OSError
        raise DataSourceError(f"{path}: not a readable Parquet file ({exc})") from exc
    total = parquet.metadata.num_rows
    if total == 0:
        yield RawRecord(None, str(path), "empty file: no records", "empty file")
        return
    row = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for item in batch.to_pylist():
            yield RawRecord(item, f"{path} row {row}")
            row += 1
        progress(row / total)
