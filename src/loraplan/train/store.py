"""Writing a sweep store (the layout and the reader are in loraplan.calibrate.store; no Ray here).

The driver appends one row per finished trial to trials.jsonl (flushed and fsynced line by line, so
a killed driver loses at most the line it was writing, which a resumed sweep rewrites) and rewrites
trials.csv from it atomically. A key already in the store is never written again: that, with the
trainable's own look-up of its key, is what makes a resumed sweep record every trial exactly once.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from loraplan.calibrate.store import CSV_COLUMNS, MODEL_DIR, SPEC_FILE, TRIALS_CSV, TRIALS_JSONL, TrialRow, read_rows
from loraplan.errors import LoraplanError
from loraplan.formats.base import write_atomic


class StoreError(LoraplanError):
    """A store folder that cannot hold this sweep (another sweep's store, unwritable, a file)."""


def trial_key(method: str, rank: int, lr: float, seed: int) -> str:
    """Stable across runs and resumes: the same grid point always has the same key."""
    return f"{method}-r{rank}-lr{lr:.6g}-s{seed}"


class SweepStore:
    """One sweep's folder: its spec, its rows, Tune's experiments (one per round)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().absolute()  # Tune needs an absolute storage path
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path}: exists and is not a folder; give --store a folder")

    @property
    def jsonl(self) -> Path:
        return self.path / TRIALS_JSONL

    @property
    def spec_file(self) -> Path:
        return self.path / SPEC_FILE

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    def round_dir(self, number: int) -> Path:
        return self.path / f"round-{number}"

    def open(self, spec: dict[str, Any]) -> bool:
        """Create the store for `spec`, or check an existing one holds the same sweep; True if it existed."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot create the store ({exc.strerror})") from exc
        if self.spec_file.is_file():
            try:
                old = json.loads(self.spec_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise StoreError(f"{self.spec_file}: unreadable ({exc}); use another --store") from exc
            if old != _jsonable(spec):
                changed = sorted(k for k in set(old) | set(spec) if old.get(k) != _jsonable(spec).get(k))
                raise StoreError(f"{self.path} holds a different sweep (differs in {', '.join(changed)}); "
                                 "use another --store, or repeat the original command to resume it")
            return True
        write_atomic(self.spec_file, json.dumps(_jsonable(spec), indent=2, sort_keys=True) + "\n")
        self.jsonl.touch()
        return False

    def spec(self) -> dict[str, Any]:
        return json.loads(self.spec_file.read_text(encoding="utf-8"))

    def rows(self) -> list[TrialRow]:
        return read_rows(self.path) if self.jsonl.is_file() else []

    def keys(self) -> set[str]:
        return {row["key"] for row in self.rows()}

    def append(self, row: TrialRow) -> bool:
        """Add one row unless its key is already there; True when written."""
        if row["key"] in self.keys():
            return False
        line = json.dumps(_jsonable(row), allow_nan=True) + "\n"
        with self.jsonl.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self.export_csv()
        return True

    def export_csv(self) -> None:
        write_atomic(self.path / TRIALS_CSV, rows_csv(self.rows()))


def rows_csv(rows: Iterable[TrialRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in CSV_COLUMNS])  # type: ignore[misc]
    return out.getvalue()


def _jsonable(value: Any) -> Any:
    """Tuples as lists, so a spec read back from JSON compares equal to the one built in memory."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def keep_model_config(store: SweepStore, model: str, random_init: bool, layers: int | None, hidden: int | None,
                      tokenizer: str | None, trust_remote_code: bool = False) -> str | None:
    """Keep the trained model's config.json in the store (random-init: the shrunk one), so `calibrate`
    reads its facts; None when the reference itself is a catalogue id or a folder with a config."""
    if not (random_init or model.lower().endswith(".gguf")):
        return None
    target = store.model_dir / "config.json"
    if not target.is_file():
        try:
            config = _trained_config(model, random_init, layers, hidden, tokenizer, trust_remote_code)
        except (LoraplanError, OSError, ValueError) as exc:  # the sweep still runs; calibrate will say why
            from loraplan.output import err_console

            err_console.print(f"warning: the store keeps no model config ({exc}); `calibrate` needs the model's "
                              "facts", highlight=False)
            return None
        store.model_dir.mkdir(exist_ok=True)
        write_atomic(target, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return f"{MODEL_DIR}/config.json"


def _trained_config(model: str, random_init: bool, layers: int | None, hidden: int | None, tokenizer: str | None,
                    trust_remote_code: bool) -> dict[str, Any]:
    from loraplan.train.models import ModelRef, load_tokenizer_for, shrunk_config, vocab_size

    ref = ModelRef(model, random_init, layers, hidden, trust_remote_code)
    path = Path(model).expanduser()
    if ref.is_gguf:
        from loraplan.errors import require

        transformers: Any = require("transformers", "train", "reading a GGUF model")
        return transformers.AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name).to_dict()
    from loraplan.arch.sources import catalog, load_config_file

    entry = catalog().get(model.lower())
    source = entry.path if entry is not None else (path / "config.json" if path.is_dir() else path)
    bundle, _ = load_tokenizer_for(ref, tokenizer)
    return shrunk_config(load_config_file(source), layers, hidden, vocab_size(bundle))
