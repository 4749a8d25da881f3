"""Numbers that agree: one effective batch shown, explained, exported and used for steps and LR; `lr` and
`plan` give the same LR for the same batch; rsLoRA's LR follows its scale; numbers printed as people write them.

Oracles: the formats' own readers (what a trainer would read back), `loraplan lr --json` for the LR, the
doctor (`check`) on the export, and arithmetic done here by hand.
"""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from loraplan.arch import load_architecture
from loraplan.cli import _register, app
from loraplan.commands.plan_render import export_text
from loraplan.doctor import check_config
from loraplan.formats import FORMATS
from loraplan.plan import DataFacts, PlanRequest, make_plan
from loraplan.rules.batch import split_batch
from loraplan.rules.numbers import fmt_number
from loraplan.setup import LossMask, Schedule

_register()
runner = CliRunner()
LLAMA = "meta-llama/Llama-3.1-8B"
EXAMPLES, TOKENS = 20_000, 10_000_000


def run_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(("value", "text"), [(3.1559445058993953e-4, "3.16e-4"), (2e-5, "2e-5"), (0.05, "0.05"),
                                             (128.0, "128"), (1e-4, "1e-4"), (6.3e-4, "6.3e-4"), (0.001, "0.001")])
def test_numbers_print_as_people_write_them(value: float, text: str) -> None:
    assert fmt_number(value) == text


@pytest.mark.parametrize(("batch", "micro", "devices"), [(64, 4, 1), (100, 4, 1), (50, 4, 1), (100, 4, 3),
                                                         (7, 4, 2), (128, 8, 8), (101, 4, 1), (2, 4, 4)])
def test_split_batch_is_exact_or_says_which_batch(batch: int, micro: int, devices: int) -> None:
    split = split_batch(batch, micro, devices)
    assert split.effective == split.micro_batch_size * split.accumulation * split.devices
    assert split.devices == devices and 1 <= split.micro_batch_size <= micro
    if split.effective != batch:
        assert split.note and str(batch) in split.note and str(split.effective) in split.note
    elif split.micro_batch_size != min(micro, batch):
        assert split.note and "splits exactly" in split.note
    if batch % devices == 0 and (batch // devices) % micro == 0:
        assert split.effective == batch and split.note is None


@pytest.mark.parametrize(("batch", "devices"), [(100, 1), (100, 3), (50, 1), (96, 8)])
def test_one_effective_batch_everywhere(batch: int, devices: int) -> None:
    """Table, explanation, steps, LR and every export state the same batch."""
    payload = run_json("plan", LLAMA, "--tokens", str(TOKENS), "--examples", str(EXAMPLES), "--batch-size", str(batch),
                       "--devices", str(devices))
    optim = payload["setup"]["optim"]
    effective = optim["micro_batch_size"] * optim["gradient_accumulation_steps"] * optim["num_devices"]
    why = {e["field"]: e for e in payload["explanations"]}
    assert why["optim.batch_size"]["value"] == effective
    assert optim["max_steps"] == math.ceil(EXAMPLES * optim["epochs"] / effective)
    if effective != batch:
        assert any(str(effective) in w and str(batch) in w for w in payload["warnings"])
    lr = run_json("lr", LLAMA, "--batch-size", str(effective))
    assert optim["learning_rate"] == pytest.approx(lr["lr"], rel=1e-12)
    arch = load_architecture(LLAMA)
    facts = DataFacts(examples=EXAMPLES, trained_tokens=TOKENS, loss_mask=LossMask.ASSISTANT)
    for name, fmt in FORMATS.items():
        plan = make_plan(arch, PlanRequest(data=facts, batch_size=batch, num_devices=devices,
                                           schedule=Schedule.COSINE if name == "torchtune" else Schedule.LINEAR))
        back = fmt.read(export_text(plan.setup, name, arch), "export").optim
        if back.micro_batch_size is not None and back.gradient_accumulation_steps is not None:
            assert back.micro_batch_size * back.gradient_accumulation_steps * (back.num_devices or devices) \
                == effective, name


def test_lr_batch_size_scales_by_sqrt_and_prints_the_batch() -> None:
    at_128 = run_json("lr", LLAMA)
    at_64 = run_json("lr", LLAMA, "--batch-size", "64")
    assert at_128["batch_size"] == 128 and at_64["batch_size"] == 64
    assert at_64["lr"] == pytest.approx(at_128["lr"] * math.sqrt(64 / 128), rel=1e-12)
    text = runner.invoke(app, ["lr", LLAMA, "--batch-size", "64"]).stdout
    assert "at batch 64" in text and fmt_number(at_64["lr"]) in text


def test_rule_text_names_what_it_uses() -> None:
    """No unexplained `M`; no hidden size when the fitted rule reads active parameters instead."""
    payload = run_json("lr", LLAMA)
    assert " M " not in payload["rule"] and "* M" not in payload["rule"]
    text = runner.invoke(app, ["lr", LLAMA]).stdout
    if "hidden" not in payload["rule"]:
        assert "hidden" not in text
    plan = run_json("plan", LLAMA, "--tokens", str(TOKENS), "--examples", str(EXAMPLES))
    lr_reason = next(e["reason"] for e in plan["explanations"] if e["field"] == "optim.learning_rate")
    assert ("hidden" in lr_reason) == ("hidden" in payload["rule"])


@pytest.mark.parametrize(("model", "extrapolated"), [(LLAMA, False), ("mistralai/Mistral-7B-v0.1", True)])
def test_plan_summary_says_which_rule_answered(model: str, extrapolated: bool) -> None:
    payload = run_json("plan", model, "--tokens", str(TOKENS), "--examples", str(EXAMPLES))
    assert ("extrapolated" in payload["lr_rule"]) == extrapolated
    text = runner.invoke(app, ["plan", model, "--tokens", str(TOKENS), "--examples", str(EXAMPLES)]).stdout
    assert "LR rule" in text and ("extrapolated" in text) == extrapolated


@pytest.mark.parametrize("name", ["peft", "trl", "axolotl", "llamafactory", "unsloth"])
def test_rslora_lr_follows_the_scale_and_check_agrees(name: str, tmp_path) -> None:
    arch = load_architecture(LLAMA)
    facts = DataFacts(path="data/train.jsonl", examples=EXAMPLES, trained_tokens=TOKENS, loss_mask=LossMask.ASSISTANT)
    plain = make_plan(arch, PlanRequest(data=facts))
    rs = make_plan(arch, PlanRequest(data=facts, rslora=True))
    rank = rs.setup.lora.rank
    assert rs.setup.optim.learning_rate == pytest.approx(plain.setup.optim.learning_rate / math.sqrt(rank))
    assert "rsLoRA" in rs.why("optim.learning_rate").reason
    from loraplan.formats.detect import read_config

    path = tmp_path / f"config{FORMATS[name].SUFFIX}"
    path.write_text(export_text(rs.setup, name, arch))
    report = check_config(read_config(path), LLAMA, tokens=TOKENS, examples=EXAMPLES)
    assert not [(f.id, f.title) for f in report.findings if f.severity.value != "info"]


def test_json_keeps_full_precision() -> None:
    payload = run_json("plan", LLAMA, "--tokens", str(TOKENS), "--examples", str(EXAMPLES))
    lr = payload["setup"]["optim"]["learning_rate"]
    assert lr != float(fmt_number(lr))  # not rounded to 3 figures
