"""`loraplan check` end to end: plan exports pass, exit codes, JSON/SARIF, --fix, and hostile input.

The readers are fuzzed with hypothesis: whatever YAML/JSON value (or text) arrives, reading and
checking either succeed or raise loraplan's own error (one clear message, exit 2), never anything else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from loraplan.arch import load_architecture
from loraplan.cli import _register, app
from loraplan.commands.plan_render import export_text
from loraplan.doctor import check_config, check_setup
from loraplan.errors import LoraplanError
from loraplan.formats import FORMATS
from loraplan.formats.detect import read_config
from loraplan.formats.keys import KEY_TABLES
from loraplan.plan import DataFacts, PlanRequest, make_plan
from loraplan.setup import LossMask, Method, Schedule

_register()
runner = CliRunner()
LLAMA = "meta-llama/Llama-3.1-8B"
EXAMPLES, TOKENS = 20_000, 10_000_000
MODELS = [LLAMA, "Qwen/Qwen3-30B-A3B", "deepseek-ai/DeepSeek-V3.1", "openai/gpt-oss-20b",
          "mistralai/Mistral-7B-v0.1"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point, so exit codes and stderr are the user's."""
    return subprocess.run([sys.executable, "-m", "loraplan", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _export(model: str, method: Method, name: str) -> str:
    arch = load_architecture(model)
    calibrated = arch.family in ("llama", "qwen") or method in (Method.RL, Method.DPO)
    facts = DataFacts(path="data/train.jsonl", examples=EXAMPLES, trained_tokens=TOKENS, loss_mask=LossMask.ASSISTANT)
    schedule = Schedule.COSINE if name == "torchtune" else Schedule.LINEAR
    plan = make_plan(arch, PlanRequest(method=method, data=facts, schedule=schedule,
                                       lr=None if calibrated else 3e-4))
    return export_text(plan.setup, name, arch)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("method", list(Method))
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_plan_export_passes_check(tmp_path: Path, model: str, method: Method, name: str) -> None:
    arch = load_architecture(model)
    try:
        text = _export(model, method, name)
    except LoraplanError as exc:  # the trainer cannot adapt this model's experts: the plan refuses to write it
        assert arch.is_moe and name in ("torchtune", "llamafactory"), exc
        assert "experts" in str(exc) and "--format peft" in str(exc)
        return
    path = tmp_path / f"config{FORMATS[name].SUFFIX}"
    path.write_text(text)
    detected = read_config(path)
    assert detected.format == name
    report = check_config(detected, model, tokens=TOKENS, examples=EXAMPLES)
    serious = [(f.id, f.title) for f in report.findings if f.severity.value != "info"]
    assert not serious
    assert report.exit_code == 0


def test_llamafactory_reaches_qwen_moe_experts_through_peft_conversion() -> None:
    text = _export("Qwen/Qwen3-30B-A3B", Method.SFT, "llamafactory")
    targets = next(line for line in text.splitlines() if line.startswith("lora_target:"))
    assert {"gate_proj", "up_proj", "down_proj", "q_proj"} <= set(targets.split(": ")[1].split(","))


# Exit codes and machine output -----------------------------------------------------------------------------------


ATTENTION_ONLY = f"""# attention-only LoRA with a full fine-tuning LR
base_model: {LLAMA}
adapter: lora
lora_r: 16
lora_alpha: 32  # keep
lora_target_modules:
  - q_proj
  - v_proj
learning_rate: 2e-5
micro_batch_size: 8
gradient_accumulation_steps: 32
num_epochs: 3
"""


def test_exit_codes_0_1_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(ATTENTION_ONLY)
    found = cli("check", str(bad))
    assert found.returncode == 1 and "attention-only" in found.stdout
    clean = tmp_path / "clean.json"
    clean.write_text(_export(LLAMA, Method.SFT, "peft"))
    assert cli("check", str(clean)).returncode == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text("base_model: x\nlora_r: [1, 2\n")
    unreadable = cli("check", str(broken))
    assert unreadable.returncode == 2 and "broken.yaml:" in unreadable.stderr
    assert "Traceback" not in unreadable.stderr


def test_json_lists_findings_with_evidence_fix_and_source(tmp_path: Path) -> None:
    path = tmp_path / "axolotl.yaml"
    path.write_text(ATTENTION_ONLY)
    result = runner.invoke(app, ["check", str(path), "--json"])
    payload = json.loads(result.stdout)
    assert result.exit_code == 1 and payload["exit_code"] == 1 and payload["format"] == "axolotl"
    assert {"attention-only", "lr-too-low", "batch-too-large"} <= {f["id"] for f in payload["findings"]}
    for finding in payload["findings"]:
        assert finding["evidence"] and finding["fix"] and finding["source"] and finding["check"] in range(1, 12)


def test_sarif_points_at_the_config_lines(tmp_path: Path) -> None:
    path = tmp_path / "axolotl.yaml"
    path.write_text(ATTENTION_ONLY)
    result = runner.invoke(app, ["check", str(path), "--sarif"])
    log = json.loads(result.stdout)
    assert log["version"] == "2.1.0"
    run = log["runs"][0]
    by_rule = {r["ruleId"]: r for r in run["results"]}
    rule_ids = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    assert all(rule_ids[r["ruleIndex"]] == r["ruleId"] for r in run["results"])
    lines = ATTENTION_ONLY.splitlines()
    region = by_rule["lr-too-low"]["locations"][0]["physicalLocation"]["region"]
    assert lines[region["startLine"] - 1].startswith("learning_rate:")
    assert by_rule["attention-only"]["level"] == "error" and by_rule["batch-too-large"]["level"] == "warning"


def test_fix_keeps_comments_and_order_and_the_fixed_file_passes(tmp_path: Path) -> None:
    path = tmp_path / "axolotl.yaml"
    path.write_text(ATTENTION_ONLY)
    out = tmp_path / "fixed.yaml"
    runner.invoke(app, ["check", str(path), "--fix", "-o", str(out)])
    fixed = out.read_text()
    assert fixed.startswith("# attention-only LoRA with a full fine-tuning LR\n")
    assert "lora_alpha: 32  # keep" in fixed
    keys = [line.split(":")[0] for line in fixed.splitlines() if line and line[0].isalpha()]
    assert keys == ["base_model", "adapter", "lora_r", "lora_alpha", "lora_target_modules", "learning_rate",
                    "micro_batch_size", "gradient_accumulation_steps", "num_epochs"]
    again = runner.invoke(app, ["check", str(out), "--json"])
    payload = json.loads(again.stdout)
    assert again.exit_code == 0 and payload["summary"]["error"] == 0 and payload["summary"]["warning"] == 0
    assert path.read_text() == ATTENTION_ONLY  # the original is untouched


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_fix_in_every_format_clears_the_errors(tmp_path: Path, name: str) -> None:
    """A planned setup made attention-only with a full fine-tuning LR -> --fix -> check passes again."""
    arch = load_architecture(LLAMA)
    facts = DataFacts(examples=EXAMPLES, trained_tokens=TOKENS)
    setup = make_plan(arch, PlanRequest(data=facts, schedule=Schedule.COSINE)).setup
    broken = setup.model_copy(update={
        "lora": setup.lora.model_copy(update={"target_modules": ("q_proj", "v_proj"), "unembed": False}),
        "optim": setup.optim.model_copy(update={"learning_rate": 2e-5})})
    path = tmp_path / f"config{FORMATS[name].SUFFIX}"
    path.write_text(FORMATS[name].write(broken))
    before = json.loads(runner.invoke(app, ["check", str(path), "--json"]).stdout)
    # PEFT files hold no LR; Tinker adapts every weight matrix whatever the targets say.
    expected = ({"attention-only"} if name != "tinker" else set()) | ({"lr-too-low"} if name != "peft" else set())
    assert {f["id"] for f in before["findings"] if f["severity"] == "error"} == expected
    out = tmp_path / f"fixed{FORMATS[name].SUFFIX}"
    result = runner.invoke(app, ["check", str(path), "--fix", "-o", str(out)])
    assert out.exists(), result.output
    after = json.loads(runner.invoke(app, ["check", str(out), "--json"]).stdout)
    assert after["summary"]["error"] == 0 and after["summary"]["warning"] == 0, after["findings"]


# Hostile input ------------------------------------------------------------------------------------------------


def test_yaml_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\nbase_model: x\n")
    result = cli("check", str(bomb))
    assert result.returncode == 2 and "alias bomb" in result.stderr and "Traceback" not in result.stderr


def test_a_1gb_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as fh:  # sparse: takes no disk
        fh.truncate(2**30)
    result = cli("check", str(huge))
    assert result.returncode == 2 and "too large" in result.stderr


@pytest.mark.parametrize("text", ["[[[[[[" * 30, "{" * 5000, "key: !!python/object:os.system ls\n",
                                  "\x00\x01binary", "- just\n- a list\n", "a: 1\n" * 3 + "a: 2\n"])
def test_odd_documents_are_one_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    result = cli("check", str(path))
    assert result.returncode == 2 and result.stderr.startswith("error:") and "Traceback" not in result.stderr


def test_missing_file_and_folder_exit_2(tmp_path: Path) -> None:
    assert cli("check", str(tmp_path / "nope.yaml")).returncode == 2
    assert cli("check", str(tmp_path)).returncode == 2


SCALARS = st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats(allow_nan=True) | st.text(max_size=20)
KEYS = sorted({spec.key for table in KEY_TABLES.values() for spec in table}
              | {"peft_type", "target_modules", "init_lora_weights", "use_peft", "adapter", "finetuning_type",
                 "lora_target", "lr_scheduler", "model", "optimizer", "loss", "tokenizer", "lora_target_linear"})
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=4),
                      max_leaves=12)
CONFIGS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=10)
_LLAMA_ARCH = load_architecture(LLAMA)


def _read_and_check(name: str, text: str) -> None:
    try:
        setup = FORMATS[name].read(text, "fuzz")
        check_setup(setup, name, _LLAMA_ARCH, tokens=1000, examples=10)
    except LoraplanError:
        pass


@pytest.mark.parametrize("name", sorted(FORMATS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=CONFIGS)
def test_readers_and_checks_survive_any_mapping(name: str, config: dict[str, Any]) -> None:
    if name in ("unsloth", "tinker"):
        text = " ".join(f"{k}={json.dumps(v)}" for k, v in config.items())
    else:
        text = json.dumps(config, allow_nan=True)
    _read_and_check(name, text)


@pytest.mark.parametrize("name", sorted(FORMATS))
@settings(max_examples=40, deadline=None)
@given(value=VALUES)
def test_readers_survive_any_document(name: str, value: Any) -> None:
    _read_and_check(name, json.dumps(value, allow_nan=True))


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=300))
def test_detection_survives_any_text(text: str) -> None:
    from loraplan.formats.detect import detect_format

    try:
        name = detect_format(text, "config")
        _read_and_check(name, text)
    except LoraplanError:
        pass


@pytest.mark.parametrize(("key", "meant"), [
    ("lerning_rate", "learning_rate"), ("lora_alhpa", "lora_alpha"), ("Learning_Rate", "learning_rate"),
    ("micro_batchsize", "micro_batch_size")])
def test_a_misspelled_setting_is_refused_with_the_likely_key(tmp_path: Path, key: str, meant: str) -> None:
    path = tmp_path / "axolotl.yaml"
    path.write_text(ATTENTION_ONLY.replace("learning_rate:", f"{key}:") if "rate" in meant.lower()
                    else ATTENTION_ONLY.replace(meant + ":", key + ":"))
    result = cli("check", str(path))
    assert result.returncode == 2 and f"did you mean `{meant}`" in result.stderr
    assert "axolotl.yaml:" in result.stderr


def test_real_keys_the_reader_does_not_model_are_not_typos(tmp_path: Path) -> None:
    extra = ("eval_batch_size: 4\nwarmup_ratio: 0.03\nsave_steps: 100\neval_steps: 50\nlogging_steps: 1\n"
             "lora_fan_in_fan_out: false\nsample_packing: true\nval_set_size: 0.05\nbf16: auto\n")
    path = tmp_path / "axolotl.yaml"
    path.write_text(ATTENTION_ONLY + extra)
    assert cli("check", str(path)).returncode == 1  # read fine; the findings are the config's own
