"""`loraplan tokens` and `loraplan capacity --data`: JSON surface, agreement with the API, no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from loraplan.cli import _register, app
from loraplan.data import count_trained_tokens
from tests.fixtures.data.support import random_conversations, tokenizer_dir, write_jsonl

_register()
runner = CliRunner()
REQUIRED = {"examples", "total_tokens", "trained_tokens", "truncated_examples", "skipped", "estimated"}


def data_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "chats.jsonl", [{"messages": c} for c in random_conversations(10, seed=5)])


def invoke_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_tokens_json_has_the_promised_keys_and_the_api_numbers(tmp_path: Path) -> None:
    tok = str(tokenizer_dir("chatml", markers=True))
    path = data_file(tmp_path)
    payload = invoke_json("tokens", str(path), "--tokenizer", tok, "--max-length", "128")
    assert payload.keys() >= REQUIRED
    api = count_trained_tokens(path, tok, max_length=128)
    assert payload == json.loads(json.dumps(api.as_dict()))
    assert payload["estimated"] is False and payload["truncated_examples"] > 0


def test_tokens_table_and_sample_estimate(tmp_path: Path) -> None:
    tok = str(tokenizer_dir("chatml", markers=True))
    result = runner.invoke(app, ["tokens", str(data_file(tmp_path)), "-t", tok, "--sample", "4"])
    assert result.exit_code == 0, result.output
    assert "trained tokens" in result.stdout and "ESTIMATE from 4 of 10 records" in result.stdout


def test_tokens_without_tokenizer_is_a_labelled_estimate(tmp_path: Path) -> None:
    payload = invoke_json("tokens", str(data_file(tmp_path)))
    assert payload["estimated"] is True and payload["method"] == "bytes" and payload["estimate_error"] == 0.25
    assert payload["note"] == "no tokenizer given"


def test_capacity_counts_data_in_place_of_tokens(tmp_path: Path) -> None:
    tok = str(tokenizer_dir("chatml", markers=True))
    path = data_file(tmp_path)
    trained = count_trained_tokens(path, tok).trained_tokens
    by_data = invoke_json("capacity", "Qwen/Qwen3-8B", "--data", str(path), "--tokenizer", tok, "--rank", "1")
    by_tokens = invoke_json("capacity", "Qwen/Qwen3-8B", "--tokens", str(trained), "--rank", "1")
    assert by_data["tokens"] == trained and by_data["tokens_estimated"] is False
    assert {k: v for k, v in by_data.items() if k not in ("tokens_estimated", "token_count")} == by_tokens
    assert by_data["token_count"]["trained_tokens"] == trained


def test_capacity_needs_exactly_one_of_tokens_and_data(tmp_path: Path) -> None:
    for extra in ([], ["--tokens", "5", "--data", str(data_file(tmp_path))]):
        result = runner.invoke(app, ["capacity", "Qwen/Qwen3-8B", *extra])
        assert result.exit_code != 0
        assert "exactly one of --tokens N" in str(result.exception)


def test_capacity_falls_back_to_a_labelled_estimate_offline(tmp_path: Path) -> None:
    """The model's own tokenizer is not cached and the hub is off: bytes stand in, flagged as an estimate."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-m", "loraplan", "capacity", "Qwen/Qwen3-8B", "--data",
                           str(data_file(tmp_path)), "--json"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["tokens_estimated"] is True and payload["token_count"]["method"] == "bytes"
    assert "not in the local cache" in payload["token_count"]["note"]


def test_tokens_does_not_import_torch_or_transformers(tmp_path: Path) -> None:
    tok = str(tokenizer_dir("chatml", markers=True))
    code = ("import sys, contextlib, io; from loraplan.cli import main\n"
            f"sys.argv = ['loraplan', 'tokens', {str(data_file(tmp_path))!r}, '--tokenizer', {tok!r}, '--json']\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    main()\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
