"""validate on the tiny model: the rank check tells fixed alpha from alpha = 2r, the LR bracket finds an LR 30x too
low, the report is self-contained and never half-written, bad options are one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loraplan.cli import _register, app
from tests.train.conftest import CHAT, TOKENIZER

_register()
runner = CliRunner()
SHAPE = ["--random-init", "--layers", "2", "--hidden", "64", "--data", str(CHAT), "--tokenizer", str(TOKENIZER),
         "--batch-size", "4", "--seq-len", "96", "--device", "cpu"]


def peft_config(folder: Path, rank: int, alpha: float) -> Path:
    """A PEFT adapter_config.json, the way PEFT saves one (CONFIG runs as written)."""
    path = folder / "adapter_config.json"
    path.write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "meta-llama/Llama-3.2-1B", "r": rank,
                                "lora_alpha": alpha, "target_modules": "all-linear", "lora_dropout": 0.0,
                                "task_type": "CAUSAL_LM"}))
    return path


def validate_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["validate", *args, *SHAPE, "--json"])
    assert result.exit_code in (0, 1), (result.exception, result.output)
    return result.exit_code, json.loads(result.stdout)


def by_id(payload: dict) -> dict[str, dict]:
    return {c["id"]: c for c in payload["checks"]}


def test_fixed_alpha_passes_rank_invariance_and_writes_a_self_contained_report(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    code, payload = validate_json(str(peft_config(tmp_path, 8, 32)), "--lr", "2e-3", "--steps", "20",
                                  "--checks", "rank,health", "--report", str(report))
    checks = by_id(payload)
    assert checks["rank-invariance"]["verdict"] == "pass", checks["rank-invariance"]
    assert checks["rank-invariance"]["measured"]["ranks"] == [2, 8, 32]
    assert checks["adapter-health"]["verdict"] == "pass"
    assert code == 0
    for check in payload["checks"]:
        assert {"id", "verdict", "measured", "threshold", "cause", "fix"} <= check.keys()
    html = report.read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 1 and "rank-invariance" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html  # nothing fetched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "report.html"]


def test_alpha_following_rank_fails_rank_invariance_naming_alpha(tmp_path: Path) -> None:
    code, payload = validate_json(str(peft_config(tmp_path, 8, 16)), "--lr", "2e-3", "--steps", "20", "--checks",
                                  "rank", "--alpha-rule", "follows-rank")
    check = by_id(payload)["rank-invariance"]
    assert code == 1 and check["verdict"] == "fail", check
    assert check["measured"]["largest_gap"] > 0.2
    assert check["cause"].startswith("likely: alpha that follows rank")
    assert "keep alpha fixed" in check["fix"]
    alphas = {t["rank"]: t["alpha"] for t in payload["trials"]}
    assert alphas == {2: 4.0, 8: 16.0, 32: 64.0}


def test_lr_bracket_flags_an_lr_30x_too_low(tmp_path: Path) -> None:
    code, payload = validate_json(str(peft_config(tmp_path, 8, 32)), "--lr", "6.7e-5", "--steps", "20",
                                  "--checks", "lr")
    check = by_id(payload)["lr-bracket"]
    assert code == 1 and check["verdict"] == "fail", check
    factor = check["measured"]["factor_to_best"]
    assert 10 < factor < 100, check  # the tiny model's optimum is near 2e-3 (flat from 1e-3 to 1e-2)
    assert "too low" in check["cause"] and check["fix"].startswith("raise the learning rate about")
    assert payload["lr_fit"]["best_lr"] == check["measured"]["best_lr"]


def test_a_killed_write_leaves_no_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from loraplan.train import report as report_module

    validation = {"checks": [], "trials": [], "lr_fit": None, "exit_code": 0, "seconds": 1.0,
                  "setup": {"lora": {"rank": 8, "alpha": 32.0}, "optim": {"learning_rate": 1e-3, "max_steps": 1,
                                                                         "micro_batch_size": 1}, "data": {}}}
    monkeypatch.setattr(report_module, "_loss_plot", lambda v: b"png")

    def killed(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        report_module.write_report(tmp_path / "report.html", validation, "tiny")
    assert list(tmp_path.iterdir()) == []


def test_a_killed_validate_leaves_no_report(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    report = tmp_path / "report.html"
    proc = subprocess.Popen([sys.executable, "-m", "loraplan", "validate", str(peft_config(tmp_path, 8, 32)),
                             "--lr", "2e-3", "--steps", "200", *SHAPE, "--report", str(report)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(6)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not report.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(("args", "message"), [
    (["--checks", "rank,speed"], "--checks: unknown speed"),
    (["--alpha-rule", "double"], "--alpha-rule must be one of fixed, follows-rank"),
    (["--steps", "0"], "--steps must be at least 1"),
])
def test_bad_options_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    from loraplan.errors import LoraplanError

    result = runner.invoke(app, ["validate", str(peft_config(tmp_path, 8, 32)), "--lr", "1e-3", *SHAPE, *args])
    assert isinstance(result.exception, LoraplanError) and message in str(result.exception), result.output


def test_lora_vs_full_runs_full_fine_tuning_at_a_tenth_of_the_lr(tmp_path: Path) -> None:
    code, payload = validate_json(str(peft_config(tmp_path, 8, 32)), "--lr", "2e-3", "--steps", "10",
                                  "--checks", "full")
    check = by_id(payload)["lora-vs-full"]
    full = [t for t in payload["trials"] if t["full_finetune"]]
    assert len(full) == 1 and full[0]["lr"] == pytest.approx(2e-4)
    assert full[0]["record"]["trainable_params"] == full[0]["record"]["total_params"]
    lora, reference = check["measured"]["lora_final_loss"], check["measured"]["full_final_loss"]
    assert check["measured"]["relative_gap"] == pytest.approx((lora - reference) / reference)
    assert check["verdict"] in ("pass", "warn", "fail") and code == (1 if check["verdict"] == "fail" else 0)
