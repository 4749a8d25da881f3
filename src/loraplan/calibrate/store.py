"""loraplan's own sweep store, read without Ray: one folder per sweep.

    STORE/
      sweep.json       what was asked (model, grid, steps, options): a resumed sweep must match it
      trials.jsonl     one finished trial per line (TrialRow), each trial key once; the source of truth
      trials.csv       the same rows' scalar columns (CSV_COLUMNS), for spreadsheets
      model/           config.json of the model the trials trained (random-init and GGUF models), so
                       `calibrate` reads its facts and `lr STORE/model` answers for it
      round-0/ ...     Ray Tune's experiment state, one experiment per search round (resume reads it)

`calibrate STORE` reads trials.jsonl as it reads the tinker-cookbook table: finished LoRA trials
with a finite held-out loss become (model, lr, rank, metric) points. Full fine-tuning rows, failed
trials and diverged ones (non-finite loss) are kept in the store and left out of the fit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from loraplan.calibrate.sweep import MAX_SWEEP_BYTES, SweepError, SweepPoint

TRIALS_JSONL = "trials.jsonl"
TRIALS_CSV = "trials.csv"
SPEC_FILE = "sweep.json"
MODEL_DIR = "model"
CSV_COLUMNS = ("model", "method", "lr", "rank", "seed", "steps", "metric", "status", "wall_s", "tokens_per_s",
               "round", "key", "error")


class TrialRow(TypedDict):
    """One trial of a sweep, as trials.jsonl holds it.

    key: `method-rRANK-lrLR-sSEED`, unique in the store (a resumed sweep never writes a key twice).
    model: what was trained, in words (ModelRef.describe()); model_config: path of its config.json
        relative to the store, when the store keeps one.
    method: `lora` or `full` (full fine-tuning; rank 0).
    metric: final held-out loss (None when the trial failed; inf/nan when it diverged).
    status: `ok` or `error` (error: the message, first line).
    wall_s: trial wall time; tokens_per_s: training throughput the engine measured.
    losses: training loss per step; eval_curve: [step, held-out loss] pairs.
    """

    key: str
    model: str
    method: str
    lr: float
    rank: int
    seed: int
    steps: int
    metric: float | None
    status: str
    wall_s: float
    tokens_per_s: float | None
    round: int
    error: str
    losses: list[float]
    eval_curve: list[list[float]]
    model_config: NotRequired[str]


def is_store(path: str | Path) -> bool:
    folder = Path(path)
    return folder.is_dir() and (folder / TRIALS_JSONL).is_file()


def _number(value: Any) -> float | None:
    """JSON numbers; the strings 'NaN'/'Infinity' json writes for diverged runs come back as floats."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_rows(path: str | Path) -> list[TrialRow]:
    """Every row of STORE/trials.jsonl; a malformed line raises SweepError naming file:line."""
    file = Path(path) / TRIALS_JSONL
    try:
        if file.stat().st_size > MAX_SWEEP_BYTES:
            raise SweepError(f"{file}: larger than {MAX_SWEEP_BYTES // 2**20} MiB; not a sweep store")
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise SweepError(f"{file}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise SweepError(f"{file}: not UTF-8 text") from exc
    rows: list[TrialRow] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{file}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SweepError(f"{where}: invalid JSON ({exc.msg})") from exc
        missing = [c for c in ("key", "model", "method", "lr", "rank", "metric", "status") if c not in row] if (
            isinstance(row, dict)) else ["every field"]
        if missing:
            raise SweepError(f"{where}: a trial row needs {', '.join(missing)}")
        rows.append(row)
    return rows


def facts_reference(store: Path, row: TrialRow) -> str:
    """What `calibrate` looks the model's facts up by: the store's model/ folder, else the reference itself."""
    config = row.get("model_config")
    if config:
        return str((store / config).absolute().parent)
    return row["model"]


def read_store(path: str | Path) -> list[SweepPoint]:
    """Finished LoRA trials with a finite held-out loss, as sweep points."""
    store = Path(path)
    points = []
    for number, row in enumerate(read_rows(store), start=1):
        metric = _number(row["metric"])
        if row["method"] != "lora" or row["status"] != "ok" or metric is None or not math.isfinite(metric):
            continue
        where = f"{store / TRIALS_JSONL}:{number}"
        lr, rank = _number(row["lr"]), _number(row["rank"])
        if lr is None or lr <= 0 or rank is None or rank < 1 or metric <= 0:
            raise SweepError(f"{where}: lr, rank and metric must be positive numbers")
        points.append(SweepPoint(facts_reference(store, row), lr, int(rank), metric, where))
    if not points:
        raise SweepError(f"{store}: no finished LoRA trial with a finite held-out loss in {TRIALS_JSONL}")
    return points
