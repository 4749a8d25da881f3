"""Data sources: files, folders, globs and Hugging Face data sets, read lazily as raw records.

JSONL lines stay undecoded bytes until a record is needed, so `--sample` can draw from a
multi-GB file without parsing it. Every record carries where it came from (file:line, or
file row N), which every error message names. Nothing is ever written to the inputs; every
file is opened through loraplan.userfiles (regular files only), and folders and `**` globs are
walked following each symlinked folder at most once, so a symlink loop ends.
"""

from __future__ import annotations

import fnmatch
import json
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from loraplan.data.errors import DataSourceError, InvalidRecordError
from loraplan.data.limits import DEFAULT_LIMITS, DataLimits
from loraplan.data.readers import READERS, RawRecord, decompress, parquet
from loraplan.errors import require
from loraplan.userfiles import open_user_file

__all__ = ["COMPRESSIONS", "EXTENSIONS", "DataSet", "RawRecord", "expand_glob", "file_kind", "parse"]

EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv",
              ".tsv": "tsv"}
COMPRESSIONS = (".gz", ".zst", ".zstd")
_MAGIC = frozenset("*?[")


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
    except RecursionError as exc:
        raise InvalidRecordError(raw.where, "JSON nested too deeply to parse", "invalid JSON") from exc


def file_kind(path: Path) -> tuple[str | None, str | None]:
    """(format, compression) from the file name, e.g. data.jsonl.zst -> ('jsonl', '.zst')."""
    name = path.name.lower()
    compression = next((c for c in COMPRESSIONS if name.endswith(c)), None)
    stem = name[: -len(compression)] if compression else name
    return next((kind for ext, kind in EXTENSIONS.items() if stem.endswith(ext)), None), compression


def expand_glob(pattern: str) -> list[Path]:
    """Paths matching a glob (`**` is any number of folders), hidden names only when the pattern spells the dot.

    Unlike glob.glob, a symlinked folder is entered at most once per pattern position, so symlink loops
    and folders reachable by many links cost one visit each.
    """
    parts = Path(pattern).parts
    first = next((i for i, part in enumerate(parts) if _MAGIC & set(part)), len(parts))
    root = Path(*parts[:first]) if first else Path(".")
    found: dict[str, Path] = {}
    seen: set[tuple[int, int, int]] = set()

    def walk(folder: Path, at: int) -> None:
        if at == len(parts):
            found.setdefault(str(folder), folder)
            return
        try:
            info = folder.stat()
        except OSError:
            return
        if not stat.S_ISDIR(info.st_mode) or (info.st_dev, info.st_ino, at) in seen:
            return
        seen.add((info.st_dev, info.st_ino, at))
        part = parts[at]
        try:
            with os.scandir(folder) as entries:
                names = sorted(entry.name for entry in entries)
        except OSError:
            return
        if part == "**":
            walk(folder, at + 1)
            for name in names:
                if not name.startswith("."):
                    walk(folder / name, at)
            return
        for name in names:
            if fnmatch.fnmatchcase(name, part) and (not name.startswith(".") or part.startswith(".")):
                walk(folder / name, at + 1)

    if first == len(parts):
        return [root] if root.exists() else []
    walk(root, first)
    return sorted(found.values())


def _is_file(path: Path) -> bool:
    """A regular file (after symlinks); FIFOs and devices are not, so a folder walk leaves them out."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


class DataSet:
    """Files read in order (or one hub data set); `done_bytes` / `total_bytes` drive the progress bar."""

    def __init__(self, refs: str | Path | Sequence[str | Path], split: str = "train", subset: str | None = None,
                 limits: DataLimits = DEFAULT_LIMITS) -> None:
        refs = [refs] if isinstance(refs, str | Path) else list(refs)
        if not refs:
            raise DataSourceError("no data given: pass files, folders, globs or a hub data set name")
        self.split, self.subset, self.limits = split, subset, limits
        self.files: list[Path] = []
        self.hub: list[str] = []
        for ref in refs:
            try:
                self._resolve(str(ref))
            except OSError as exc:  # ENAMETOOLONG, EACCES, ... while looking the reference up
                raise DataSourceError(f"{str(ref)[:200]}: cannot look it up ({exc.strerror or exc})") from exc
        self.total_bytes: int | None = sum(_size(f) for f in self.files) if not self.hub else None
        self.done_bytes = 0
        self.label = ", ".join(str(r) for r in refs)

    def _resolve(self, ref: str) -> None:
        path = Path(ref).expanduser()
        if path.is_dir() and not (path / "dataset_info.json").is_file():
            found = [p for p in expand_glob(str(path / "**" / "*")) if file_kind(p)[0] and _is_file(p)]
            if not found:
                raise DataSourceError(f"{path}: folder has no data files (.jsonl, .json, .parquet, .csv, .tsv, "
                                      "optionally .gz or .zst)")
            self.files += found
        elif path.is_dir() or (not os.path.lexists(path) and not _MAGIC & set(ref) and _looks_like_hub(ref)):
            self.hub.append(ref)
        elif os.path.lexists(path):  # a file, or something that is not one: opening it says which
            if file_kind(path)[0] is None:
                raise DataSourceError(f"{path}: unknown file type; expected .jsonl, .json, .parquet, .csv or .tsv "
                                      "(optionally .gz or .zst)")
            self.files.append(path)
        else:
            matches = [m for m in expand_glob(str(path)) if file_kind(m)[0] and _is_file(m)]
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
        with open_user_file(path, what="data file") as raw:
            if kind == "parquet":
                if compression:
                    raise DataSourceError(f"{path}: Parquet compresses its own pages; give the .parquet file "
                                          "itself, not a compressed copy")
                records = parquet(path, raw, lambda frac: setattr(self, "done_bytes", base + int(frac * _size(path))))
            else:
                stream = decompress(raw, compression, path)
                position: Callable[[], None] = lambda: setattr(self, "done_bytes", base + raw.tell())  # noqa: E731
                records = READERS[kind or "jsonl"](path, stream, position, self.limits)
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
    try:
        return path.stat().st_size
    except OSError:
        return 0
