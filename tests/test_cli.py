"""The CLI surface: JSON keys, exit codes, one-line errors, no torch on the core commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loraplan.cli import _register, app

_register()
runner = CliRunner()


def run_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_lr_json_keys() -> None:
    payload = run_json("lr", "meta-llama/Llama-3.1-8B")
    assert {"lr", "family", "hidden_size", "rule"} <= payload.keys()
    assert payload["family"] == "llama" and payload["hidden_size"] == 4096


def test_params_json_keys_and_values() -> None:
    payload = run_json("params", "Qwen/Qwen3-30B-A3B", "--rank", "8")
    assert payload["per_rank"]["mlp_total"] == 14_450_688
    assert payload["total"] == 8 * (14_450_688 + 835_584 + 153_984)
    assert {"attn", "mlp", "experts", "unembed", "mlp_total"} <= payload["per_rank"].keys()
    assert payload["convention"] == "tinker" and payload["rank"] == 8


def test_params_targets_attention_only() -> None:
    payload = run_json("params", "Qwen/Qwen3-8B", "--targets", "attn", "--no-unembed")
    assert payload["per_rank_total"] == 958_464


def test_capacity_json() -> None:
    payload = run_json("capacity", "Qwen/Qwen3-8B", "--tokens", "500000000")
    assert payload["status"] == "UNDERCAPACITY"
    assert payload["min_rank"] == -(-500_000_000 // (1_769_472 + 958_464 + 156_032))
    assert payload["suggested_rank"] == 256


def test_models_lists_the_catalogue() -> None:
    payload = run_json("models")
    assert any(m["model"] == "deepseek-ai/DeepSeek-V3.1" for m in payload["models"])


@pytest.mark.parametrize("args", [["params", "no-such-model"], ["params", "Qwen/Qwen3-8B", "--convention", "x"],
                                  ["capacity", "Qwen/Qwen3-8B", "--tokens", "5", "--rule", "nope"]])
def test_bad_input_is_one_line_and_nonzero(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "loraplan", *args], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("args", [
    ["params", "deepseek-ai/DeepSeek-V3.1"],
    ["lr", "meta-llama/Llama-3.1-8B"],
    ["plan", "Qwen/Qwen3-30B-A3B", "--tokens", "1000000", "--examples", "5000"],
    ["check", "tests/golden/llama-3.1-8b.axolotl.yaml", "--tokens", "1000000"],
])
def test_core_commands_do_not_import_torch(args: list[str]) -> None:
    code = (f"import sys; from loraplan.cli import main; sys.argv=['loraplan', *{args!r}, '--json']\n"
            "import contextlib, io\ntry:\n with contextlib.redirect_stdout(io.StringIO()):\n  main()\n"
            "except SystemExit as exc:\n assert not exc.code, exc.code\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr


def test_plan_from_a_token_count_alone_renders() -> None:
    """`plan MODEL --tokens N` without --examples: the example count is unknown, shown as '?', not a crash."""
    proc = subprocess.run([sys.executable, "-m", "loraplan", "plan", "meta-llama/Llama-3.1-8B", "--tokens", "1000000"],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    assert "? examples, 1,000,000 trained tokens" in " ".join(proc.stdout.split())
