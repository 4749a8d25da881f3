"""Counting with worker processes gives exactly the serial TokenCount: same numbers, skips and errors.

Chunks are shrunk to a few records so that even these small files are split across both workers
and merged back out of many pieces, which is where a parallel count could drift from the serial one.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from loraplan.cli import _register, app
from loraplan.data import InvalidRecordError, TokenCount, count_trained_tokens
from loraplan.data import parallel as parallel_mod
from tests.fixtures.data.support import random_conversations, tokenizer_dir, write_jsonl

FIXTURES = Path(__file__).parent / "fixtures" / "data"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel_mod, "CHUNK_RECORDS", 7)


@pytest.fixture(scope="module")
def tok() -> str:
    return str(tokenizer_dir("chatml", markers=True))


def both(data: Any, tok: str, **kwargs: Any) -> tuple[TokenCount, TokenCount]:
    return (count_trained_tokens(data, tok, workers=1, **kwargs),
            count_trained_tokens(data, tok, workers=2, **kwargs))


def chats_file(path: Path, count: int = 40, seed: int = 3) -> Path:
    return write_jsonl(path, [{"messages": c} for c in random_conversations(count, seed)])


def test_messages_with_generation_markers(tmp_path: Path, tok: str) -> None:
    serial, parallel = both(chats_file(tmp_path / "c.jsonl"), tok)
    assert parallel == serial
    assert serial.examples == 40 and serial.trained_tokens > 0 and serial.format == "messages"


def test_template_without_markers_and_last_turn_mask(tmp_path: Path) -> None:
    plain = str(tokenizer_dir("llama3", markers=False))
    serial, parallel = both(chats_file(tmp_path / "c.jsonl", seed=4), plain, mask="last")
    assert parallel == serial and serial.mask == "last_assistant"


def test_preference_sides(tmp_path: Path, tok: str) -> None:
    records = []
    for chat in random_conversations(30, seed=5, allow_empty=False):
        turns = [i for i, m in enumerate(chat) if m["role"] == "assistant"]
        cut = turns[-1]
        worse = {"role": "assistant", "content": chat[cut]["content"][::-1]}
        records.append({"prompt": chat[:cut], "chosen": [chat[cut]], "rejected": [worse]})
    serial, parallel = both(write_jsonl(tmp_path / "p.jsonl", records), tok)
    assert parallel == serial
    assert set(serial.sides) == {"chosen", "rejected"} and serial.sides["chosen"].examples == 30


def test_max_length_truncation(tmp_path: Path, tok: str) -> None:
    serial, parallel = both(chats_file(tmp_path / "c.jsonl"), tok, max_length=48)
    assert parallel == serial
    assert serial.truncated_examples > 0 and serial.truncated_trained_tokens > 0


BAD_LINES = [
    b'{"messages": [{"role": "user", "content": "hi"}\n',  # invalid JSON
    b"[1, 2]\n",  # not an object
    b'{"question": "q", "answer": "a"}\n',  # no known format
    b'{"messages": [{"role": "user", "content": "only a question"}]}\n',  # no assistant turn
    b'{"messages": [{"role": "narrator", "content": "x"}, {"role": "assistant", "content": "y"}]}\n',
    b'{"messages": [{"role": "user", "content": "caf\xe9"}, {"role": "assistant", "content": "y"}]}\n',
    b'{"text": "a different format"}\n',  # mixed formats
]


def malformed_file(path: Path, lead: int = 3) -> Path:
    """30 good chats with the bad lines among them: `lead` of them first, the others after every 5th chat."""
    lines = BAD_LINES[:lead]
    rest = iter(BAD_LINES[lead:])
    for i, chat in enumerate(random_conversations(30, seed=6), 1):
        lines.append(json.dumps({"messages": chat}).encode() + b"\n")
        if i % 5 == 0:
            lines.append(next(rest, b""))
    path.write_bytes(b"".join(lines))
    return path


def test_skip_invalid_gives_the_same_skips_and_reasons(tmp_path: Path, tok: str) -> None:
    serial, parallel = both(malformed_file(tmp_path / "m.jsonl"), tok, skip_invalid=True)
    assert parallel == serial
    assert serial.skipped == len(BAD_LINES) and len(serial.skip_reasons) >= 6
    assert serial.skip_examples[0].startswith(f"{tmp_path / 'm.jsonl'}:1: invalid JSON")


def test_auto_detection_after_records_that_cannot_be_detected(tmp_path: Path, tok: str) -> None:
    sharegpt = [json.loads(line) for line in (FIXTURES / "sharegpt.jsonl").read_text().splitlines() if line]
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"not json\n" + b'{"foo": 1}\n' + b"".join(json.dumps(r).encode() + b"\n" for r in sharegpt * 9))
    serial, parallel = both(path, tok, skip_invalid=True)
    assert parallel == serial and serial.format == "sharegpt" and serial.skipped == 2


def test_several_files_folders_and_compression(tmp_path: Path, tok: str) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    chats_file(folder / "a.jsonl", 12, seed=7)
    chats_file(folder / "b.jsonl", 9, seed=8)
    with gzip.open(folder / "c.jsonl.gz", "wt", encoding="utf-8") as out:
        out.writelines(json.dumps({"messages": c}) + "\n" for c in random_conversations(11, seed=9))
    other = chats_file(tmp_path / "e.jsonl", 5, seed=10)
    serial, parallel = both([folder, other], tok, max_length=64)
    assert parallel == serial and serial.examples == 37


@pytest.mark.parametrize("lead", [0, 1])
def test_an_invalid_record_stops_with_the_serial_error(tmp_path: Path, tok: str, lead: int) -> None:
    path = malformed_file(tmp_path / "m.jsonl", lead)
    errors = []
    for workers in (1, 2):
        with pytest.raises(InvalidRecordError) as info:
            count_trained_tokens(path, tok, workers=workers)
        errors.append(info.value)
    serial, parallel = errors
    assert str(parallel) == str(serial) and parallel.reason == serial.reason
    assert str(serial).startswith(f"{path}:{1 if lead else 6}: ")


def test_cli_workers_option(tmp_path: Path, tok: str) -> None:
    _register()
    path = str(chats_file(tmp_path / "c.jsonl", 20))
    outputs = []
    for workers in ("1", "2"):
        result = CliRunner().invoke(app, ["tokens", path, "-t", tok, "--workers", workers, "--json"])
        assert result.exit_code == 0, result.output
        outputs.append(json.loads(result.stdout))
    assert outputs[0] == outputs[1] and outputs[0]["examples"] == 20
    result = CliRunner().invoke(app, ["tokens", path, "-t", tok, "--workers", "0"])
    assert result.exit_code != 0


def test_a_script_without_main_guard_gets_an_error_not_a_hang(tmp_path: Path, tok: str) -> None:
    """Spawned workers re-run such a script and die on start-up; the parent must say so and stop."""
    script = tmp_path / "unguarded.py"
    data = chats_file(tmp_path / "c.jsonl", 8)
    script.write_text(f"from loraplan.data import count_trained_tokens\n"
                      f"count_trained_tokens({str(data)!r}, {tok!r}, workers=2)\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "a counting worker process died" in proc.stderr and "--workers 1" in proc.stderr
