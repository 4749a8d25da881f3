"""The sweep store without Ray: rows written once, CSV for spreadsheets, what `calibrate` takes from it.

Oracle: a store written here row by row (what a sweep's callback writes), read back with the csv module
and through `loraplan calibrate STORE` + `loraplan lr MODEL --calibration` (the CLI the user runs).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loraplan.calibrate.store import CSV_COLUMNS, read_store
from loraplan.calibrate.sweep import SweepError
from loraplan.cli import _register, app
from loraplan.train.store import StoreError, SweepStore, trial_key

_register()
runner = CliRunner()
MODEL = "meta-llama/Llama-3.2-3B"
SPEC = {"model": MODEL, "lrs": [1e-4, 3e-4, 1e-3, 3e-3], "ranks": [8]}


def row(lr: float, metric: float | None, method: str = "lora", rank: int = 8, status: str = "ok") -> dict:
    return {"key": trial_key(method, rank, lr, 0), "model": MODEL, "method": method, "lr": lr, "rank": rank,
            "seed": 0, "steps": 10, "metric": metric, "status": status, "wall_s": 1.0, "tokens_per_s": 100.0,
            "round": 0, "error": "" if status == "ok" else "boom", "losses": [2.0, 1.5], "eval_curve": [[0, 2.1]]}


@pytest.fixture
def store(tmp_path: Path) -> SweepStore:
    s = SweepStore(tmp_path / "store")
    assert s.open(SPEC) is False
    for r in (row(1e-4, 1.30), row(3e-4, 1.10), row(1e-3, 1.05), row(3e-3, math.inf),  # 3e-3 diverged
              row(1e-2, None, status="error"), row(1e-4, 1.0, method="full", rank=0)):
        assert s.append(r)
    return s


def test_a_key_is_written_once_and_the_csv_follows(store: SweepStore) -> None:
    assert store.append(row(1e-4, 9.9)) is False  # the same trial again (a resumed sweep) changes nothing
    lines = store.jsonl.read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[0])["metric"] == 1.30
    with (store.path / "trials.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == CSV_COLUMNS and len(table) == 6
    assert [r["status"] for r in table].count("error") == 1 and table[3]["metric"] == "inf"


def test_calibrate_takes_finished_finite_lora_rows_only(store: SweepStore) -> None:
    points = read_store(store.path)
    assert sorted(p.lr for p in points) == [1e-4, 3e-4, 1e-3] and {p.model for p in points} == {MODEL}


def test_calibrate_store_then_lr_answers_from_it(store: SweepStore, tmp_path: Path) -> None:
    cal = tmp_path / "cal.toml"
    result = runner.invoke(app, ["calibrate", str(store.path), "-o", str(cal)], env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 0, result.output
    answer = runner.invoke(app, ["lr", MODEL, "--calibration", str(cal), "--json"], env={"HF_HUB_OFFLINE": "1"})
    assert answer.exit_code == 0, answer.output
    payload = json.loads(answer.stdout)
    assert math.isclose(payload["lr"], 1e-3, rel_tol=1e-9)  # the best finite LoRA trial
    assert payload["lr_range"]["measured_low"] == 1e-4 and payload["lr_range"]["measured_high"] == 1e-3


def test_a_store_holding_another_sweep_is_refused(store: SweepStore) -> None:
    assert SweepStore(store.path).open(SPEC) is True  # the same sweep: resumable
    with pytest.raises(StoreError, match=r"holds a different sweep .*ranks"):
        SweepStore(store.path).open({**SPEC, "ranks": [16]})


def test_malformed_rows_name_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "trials.jsonl").write_text(json.dumps(row(1e-4, 1.0)) + "\n{not json\n")
    with pytest.raises(SweepError, match=r"trials.jsonl:2: invalid JSON"):
        read_store(folder)
    (folder / "trials.jsonl").write_text(json.dumps({"key": "x"}) + "\n")
    with pytest.raises(SweepError, match=r"trials.jsonl:1: a trial row needs model"):
        read_store(folder)
    result = runner.invoke(app, ["calibrate", str(tmp_path)])  # a folder that is not a store
    assert result.exit_code != 0 and "not a `loraplan sweep` store" in str(result.exception)
