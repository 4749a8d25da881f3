"""`loraplan calibrate` and the calibrated `lr`: JSON surface, errors, and issue 6's acceptance test."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loraplan.cli import _register, app
from loraplan.rules.lr import BASE_LR, LORA_MULTIPLIER

_register()
runner = CliRunner()
TABLE = Path(__file__).resolve().parent.parent / "data" / "tinker_cookbook_sft_sweep.md"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LORAPLAN_CALIBRATION", raising=False)


def error_of(args: list[str]) -> str:
    """The one-line message `main()` would print (CliRunner hands back the exception itself)."""
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, (ValueError, SystemExit)), result.exception
    return result.output + str(result.exception or "")


def run_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def full_evaluation() -> dict:
    result = runner.invoke(app, ["calibrate", str(TABLE), "--evaluate", "--json"], env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_calibrate_evaluate_json(full_evaluation: dict) -> None:
    e = full_evaluation
    assert len(e["models"]) == 35 and e["logo"]["models"] == 35
    assert e["published"]["models"] == 25 and round(100 * e["published"]["mean_regret"], 2) == 0.57
    assert e["best_constant"]["lr"] == 3e-4 and round(100 * e["best_constant"]["mean_regret"], 2) == 0.29
    assert e["logo"]["mean_regret"] < e["best_constant"]["mean_regret"] < e["published"]["mean_regret"]
    # nested: the shape is chosen again inside each fold; every fold picks the same one here
    nested = e["nested_logo"]
    assert nested["shapes_chosen"] == [e["rule_shape"]] and nested["models"] == 35
    assert math.isclose(nested["mean_regret"], e["logo"]["mean_regret"], rel_tol=1e-12)
    assert nested["mean_regret"] <= 0.0015 and nested["max_regret"] <= 0.0075
    row = next(r for r in e["models"] if r["model"] == "openai/gpt-oss-120b")
    assert row["published_lr"] is None and row["published_regret"] is None


def test_calibrate_writes_a_loadable_file(tmp_path: Path) -> None:
    out = tmp_path / "cal.toml"
    result = runner.invoke(app, ["calibrate", str(TABLE), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "leave-one-group-out" in result.output and out.is_file()
    payload = run_json("lr", "moonshotai/Kimi-K2.5", "--calibration", str(out))
    assert payload["answered_by"] == "kimi rule fitted on 3 kimi models"


def test_acceptance_leave_one_model_out(tmp_path: Path, full_evaluation: dict) -> None:
    """Issue 6: a sweep without one model's rows -> calibrate -> lr THAT_MODEL --calibration FILE gives
    the leave-one-out LR (its group is the model alone, so LOGO held out exactly those rows)."""
    model = "meta-llama/Llama-3.2-3B"
    row = next(r for r in full_evaluation["models"] if r["model"] == model)
    assert row["group"] == model and sum(r["group"] == model for r in full_evaluation["models"]) == 1
    sections = re.split(r"(?m)^(?=## )", TABLE.read_text(encoding="utf-8"))
    reduced = tmp_path / "without.md"
    reduced.write_text("".join(s for s in sections if not s.startswith(f"## {model}\n")), encoding="utf-8")
    cal = tmp_path / "cal.toml"
    written = run_json("calibrate", str(reduced), "-o", str(cal))
    assert written["rule_shape"] == full_evaluation["rule_shape"]
    payload = run_json("lr", model, "--calibration", str(cal))
    assert math.isclose(payload["lr"], row["fitted_lr"], rel_tol=1e-12)
    assert payload["answered_by"] == "llama rule fitted on 5 llama models"


def test_lr_rule_tinker_is_the_published_formula() -> None:
    payload = run_json("lr", "meta-llama/Llama-3.1-8B", "--rule", "tinker")
    assert math.isclose(payload["lr"], BASE_LR * LORA_MULTIPLIER * (2000 / 4096) ** 0.781, rel_tol=1e-15)
    message = error_of(["lr", "mistralai/Mistral-7B-v0.3", "--rule", "tinker"])
    assert "covers llama, qwen only, not `mistral`" in message
    # Every option the message suggests is one `lr` has (oracle: the command's own click parameters).
    import typer.main

    command = typer.main.get_command(app).commands["lr"]  # type: ignore[attr-defined]
    known = {opt for param in command.params for opt in param.opts}
    suggested = set(re.findall(r"--[a-z-]+", message))
    assert suggested and suggested <= known, suggested - known


def test_lr_default_answers_every_family() -> None:
    fitted = run_json("lr", "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16")
    assert fitted["answered_by"] == "nemotron rule fitted on 3 nemotron models" and fitted["facts_only"]
    other = run_json("lr", "mistralai/Mistral-7B-v0.3")
    assert other["answered_by"].startswith("cross-family rule: extrapolated")


def test_lr_transfer() -> None:
    payload = run_json("lr", "meta-llama/Llama-3.1-70B", "--transfer-from", "meta-llama/Llama-3.1-8B",
                       "--transfer-lr", "3e-4")
    from loraplan.arch.sources import load_architecture

    small, big = (load_architecture(m).total_params for m in ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-70B"))
    assert math.isclose(payload["lr"], 3e-4 * math.sqrt(small / big), rel_tol=1e-12)
    assert "go together" in error_of(["lr", "meta-llama/Llama-3.1-70B", "--transfer-lr", "3e-4"])


@pytest.mark.parametrize(("args", "message"), [
    (["calibrate", "missing.md"], "cannot open the sweep table"),
    (["lr", "meta-llama/Llama-3.1-8B", "--rule", "best"], "--rule must be calibrated or tinker"),
    (["params", "Qwen/Qwen3.5-9B"], "facts-only catalogue entry"),
])
def test_one_line_errors(args: list[str], message: str) -> None:
    text = error_of(args)
    assert message in text and "Traceback" not in text, text


def test_cli_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    bad = tmp_path / "bad.csv"
    bad.write_text("model,lr,rank,metric\norg/m,x,1,0.5\n")
    done = subprocess.run([sys.executable, "-m", "loraplan", "calibrate", str(bad)], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{bad}:2: `lr` must be a number" in done.stderr
