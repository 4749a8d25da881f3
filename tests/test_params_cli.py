"""`loraplan params` run as a user runs it: what each convention counts for typed names and groups."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from loraplan.cli import _register, app

_register()
runner = CliRunner()


def params_json(*args: str) -> dict:
    result = runner.invoke(app, ["params", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_peft_names_alone_leave_lm_head_out() -> None:
    # PEFT's print for LoraConfig(r=8, target_modules=["q_proj"]) on Llama-3.2-1B: 524,288.
    payload = params_json("meta-llama/Llama-3.2-1B", "-r", "8", "--convention", "peft", "--targets", "q_proj")
    assert payload["total"] == 524_288 and payload["unembed"] is False


def test_explicit_unembed_adds_lm_head_to_all_linear() -> None:
    plain = params_json("meta-llama/Llama-3.2-1B", "--convention", "peft", "--targets", "all-linear")
    with_head = params_json("meta-llama/Llama-3.2-1B", "--convention", "peft", "--targets", "all-linear", "--unembed")
    assert plain["unembed"] is False and with_head["unembed"] is True
    assert with_head["per_rank_total"] - plain["per_rank_total"] == 2048 + 128_256


@pytest.mark.parametrize("convention", ["tinker", "peft"])
def test_groups_keep_the_unembedding_by_default(convention: str) -> None:
    payload = params_json("Qwen/Qwen3-8B", "--convention", convention, "--targets", "attn")
    assert payload["unembed"] is True and payload["per_rank"]["unembed"] == 4096 + 151_936


def test_peft_moe_count_needs_no_torch() -> None:
    """The torch-free path reads PEFT's conversion table from the snapshot when the versions match."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; from loraplan.arch import load_architecture; from loraplan.arch.conventions import budget\n"
            "budget(load_architecture('Qwen/Qwen3-30B-A3B'), 'peft', 'all-linear')\n"
            "print('torch' in sys.modules)")
    src = Path(__file__).resolve().parent.parent / "src"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         env={**__import__("os").environ, "PYTHONPATH": str(src)})
    assert out.stdout.strip() == "False"
