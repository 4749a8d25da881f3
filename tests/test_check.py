"""`loraplan check`: one config that triggers each check and one that does not, through the CLI.

Oracles: hand-derived LoRA counts (r * (in + out) from the configs' own sizes), the per-rank counts
published with issue 2 for DeepSeek-V3.1, the trainers' documented defaults, and the doctrine's
thresholds (batch 128/512, 100 steps, 10x LR).
"""

from __future__ import annotations

import json
import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from loraplan.cli import _register, app
from loraplan.doctor import Severity, check_setup
from loraplan.formats.detect import read_config
from loraplan.rules.calibration import published_calibration

_register()
runner = CliRunner()
LLAMA = "meta-llama/Llama-3.1-8B"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def peft_config(tmp_path: Path, **fields: Any) -> Path:
    data = {"peft_type": "LORA", "base_model_name_or_path": LLAMA, "r": 32, "lora_alpha": 32,
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                               "lm_head"], **fields}
    return write(tmp_path, "adapter_config.json", json.dumps(data))


def axolotl_config(tmp_path: Path, extra: str = "", **fields: Any) -> Path:
    base = {"base_model": LLAMA, "adapter": "lora", "lora_r": 32, "lora_alpha": 32, "lora_dropout": 0.0,
            "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                                    "lm_head"],
            "learning_rate": 2.86e-4, "micro_batch_size": 4, "gradient_accumulation_steps": 16, "num_epochs": 1,
            "lr_scheduler": "linear", **fields}
    lines = [f"{k}: {json.dumps(v)}" for k, v in base.items() if v is not None]
    return write(tmp_path, "axolotl.yaml", "\n".join(lines) + "\n" + extra)


def run_check(*args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["check", *args, "--json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def ids(payload: dict[str, Any], severity: str | None = None) -> set[str]:
    return {f["id"] for f in payload["findings"] if severity is None or f["severity"] == severity}


def finding(payload: dict[str, Any], fid: str) -> dict[str, Any]:
    return next(f for f in payload["findings"] if f["id"] == fid)


def test_a_planned_llama_config_is_clean(tmp_path: Path) -> None:
    code, payload = run_check(str(axolotl_config(tmp_path)), "--examples", "20000")
    assert code == 0 and payload["summary"] == {"error": 0, "warning": 0, "info": 0}, payload["findings"]


# Check 1: attention-only -------------------------------------------------------------------------------------


def test_attention_only_on_dense_qwen_quantifies_the_share_by_hand(tmp_path: Path) -> None:
    # Qwen3-8B (config.json): hidden 4096, 32 heads x 128, 8 KV heads, MLP 12288, 36 layers, vocab 151936.
    attn = 36 * ((4096 + 4096) + 2 * (4096 + 1024) + (4096 + 4096))
    mlp = 36 * 3 * (4096 + 12288)
    unembed = 4096 + 151936
    path = peft_config(tmp_path, base_model_name_or_path="Qwen/Qwen3-8B",
                       target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    code, payload = run_check(str(path))
    assert code == 1
    attention_only = finding(payload, "attention-only")
    assert attention_only["severity"] == "error"
    assert f"keeps {attn:,} of {attn + mlp + unembed:,} LoRA params per rank" in attention_only["evidence"]
    assert f"{attn / (attn + mlp + unembed):.1%}" in attention_only["evidence"]
    assert attention_only["changes"]["lora.target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                "gate_proj", "up_proj", "down_proj"]


def test_attention_only_on_deepseek_keeps_about_3_percent(tmp_path: Path) -> None:
    # Issue 2's published per-rank counts for DeepSeek-V3.1: attn 2,440,000, mlp_total 94,307,328, unembed 136,448.
    total = 2_440_000 + 94_307_328 + 136_448
    path = peft_config(tmp_path, base_model_name_or_path="deepseek-ai/DeepSeek-V3.1",
                       target_modules=["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"])
    _, payload = run_check(str(path))
    evidence = finding(payload, "attention-only")["evidence"]
    assert f"of {total:,} LoRA params per rank" in evidence
    assert f"= {2_440_000 / total:.1%}" in evidence  # 2.5%


def test_all_layer_targets_do_not_trigger_attention_only(tmp_path: Path) -> None:
    _, payload = run_check(str(peft_config(tmp_path, base_model_name_or_path="Qwen/Qwen3-8B")))
    assert not ids(payload) & {"attention-only", "unmatched-targets", "moe-experts-frozen"}


def test_attention_only_names_are_caught_without_a_model(tmp_path: Path) -> None:
    path = peft_config(tmp_path, base_model_name_or_path="/nowhere/my-model", target_modules=["q_proj", "v_proj"])
    code, payload = run_check(str(path))
    assert code == 1 and "attention-only" in ids(payload, "error")
    assert any(s["check"] == 2 for s in payload["not_checked"])


# Check 2: MoE experts and unmatched names ---------------------------------------------------------------------


def test_moe_experts_not_adapted_is_an_error_with_the_expert_share(tmp_path: Path) -> None:
    pattern = (r".*\.(self_attn\.(q_a_proj|q_b_proj|kv_a_proj_with_mqa|kv_b_proj|o_proj)"
               r"|mlp\.(gate_proj|up_proj|down_proj)|shared_experts\.(gate_proj|up_proj|down_proj))")
    path = peft_config(tmp_path, base_model_name_or_path="deepseek-ai/DeepSeek-V3.1", target_modules=pattern)
    code, payload = run_check(str(path))
    assert code == 1
    frozen = finding(payload, "moe-experts-frozen")
    assert frozen["severity"] == "error"
    # Routed experts: 58 MoE layers x (shared-outer LoRA of 256 experts); hidden 7168, expert MLP 2048.
    experts = 58 * (3 * 7168 + 256 * 3 * 2048)
    assert f"the experts hold {experts:,} of" in frozen["evidence"]
    assert frozen["changes"]["lora.target_parameters"]


def test_moe_all_targets_adapt_the_experts(tmp_path: Path) -> None:
    path = peft_config(tmp_path, base_model_name_or_path="Qwen/Qwen3-30B-A3B", target_modules="all-linear")
    _, payload = run_check(str(path))
    assert not ids(payload, "error"), payload["findings"]


def test_mlp_names_of_another_architecture_match_nothing(tmp_path: Path) -> None:
    path = peft_config(tmp_path, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "w1", "w2", "w3"])
    code, payload = run_check(str(path))
    unmatched = finding(payload, "unmatched-targets")
    assert code == 1 and unmatched["severity"] == "error"
    assert "w1, w2, w3 match no module" in unmatched["evidence"]
    assert "gate_proj" in unmatched["evidence"]  # the model's real names are shown


# Check 3: unembedding --------------------------------------------------------------------------------------------


def test_unembedding_left_out_is_info(tmp_path: Path) -> None:
    path = axolotl_config(tmp_path, lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                         "up_proj", "down_proj"])
    code, payload = run_check(str(path), "--examples", "20000")
    assert code == 0 and ids(payload) == {"unembed-not-adapted"}
    assert finding(payload, "unembed-not-adapted")["severity"] == "info"
    assert "132,352 of 2,753,792" in finding(payload, "unembed-not-adapted")["evidence"]  # issue 2's Llama counts


# Check 4: learning rate --------------------------------------------------------------------------------------


def test_full_finetuning_lr_reused_for_lora_is_an_error(tmp_path: Path) -> None:
    code, payload = run_check(str(axolotl_config(tmp_path, learning_rate=2e-5)))
    low = finding(payload, "lr-too-low")
    assert code == 1 and low["severity"] == "error"
    # The shipped calibration's Llama rule, read from the TOML by hand: base * 10 * (2000/4096)^exponent
    # * (active/1e9)^-active_params_exponent for Llama-3.1-8B (hidden 4096, 8,030,261,248 params, dense, full
    # attention), x sqrt(64/128) at batch 4 x 16 = 64 (seed 000).
    rule = tomllib.loads(files("loraplan.rules").joinpath("default_calibration.toml").read_text())["families"]["llama"]
    expected = (rule["base"] * 10 * (2000 / 4096) ** rule["exponent"]
                * (8_030_261_248 / 1e9) ** -rule["active_params_exponent"] * (64 / 128) ** 0.5)
    assert low["changes"]["optim.learning_rate"] == pytest.approx(expected, rel=3e-3)


def test_published_formula_is_used_when_asked(tmp_path: Path) -> None:
    """--calibration with the published formula: 5e-5 * 10 * (2000/4096)^0.781, x sqrt(64/128) (seed 000)."""
    cal = write(tmp_path, "published.toml", '[families.llama]\nbase = 5e-5\nexponent = 0.781\n'
                                            'provenance = "seed 000"\n')
    _, payload = run_check(str(axolotl_config(tmp_path, learning_rate=2e-5)), "--calibration", str(cal))
    expected = 5e-4 * (2000 / 4096) ** 0.781 * (64 / 128) ** 0.5
    assert finding(payload, "lr-too-low")["changes"]["optim.learning_rate"] == pytest.approx(expected, rel=3e-3)


def test_far_above_the_lora_lr_warns_and_a_diverging_lr_is_an_error(tmp_path: Path) -> None:
    """The same thresholds both ways: more than 4x off warns, 6x or more (toward 10x) is an error."""
    _, payload = run_check(str(axolotl_config(tmp_path, learning_rate=2e-5)))
    recommended = finding(payload, "lr-too-low")["changes"]["optim.learning_rate"]
    for times, severity in ((5, "warning"), (20, "error")):
        _, payload = run_check(str(axolotl_config(tmp_path, learning_rate=recommended * times)))
        assert finding(payload, "lr-too-high")["severity"] == severity, times
    for times, severity in ((1 / 5, "warning"), (1 / 10, "error")):
        _, payload = run_check(str(axolotl_config(tmp_path, learning_rate=recommended * times)))
        assert finding(payload, "lr-too-low")["severity"] == severity, times


def test_lora_sized_lr_for_full_finetuning_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "sft.yaml", f"model_name_or_path: {LLAMA}\nlearning_rate: 3.0e-4\n"
                                       "per_device_train_batch_size: 8\ngradient_accumulation_steps: 8\n")
    code, payload = run_check(str(path))
    assert payload["format"] == "trl"
    assert code == 1 and "full-ft-lr-too-high" in ids(payload, "error")


def test_trl_default_lr_is_held_against_lora(tmp_path: Path) -> None:
    """TRL's SFTConfig trains at 2e-5 when the file says nothing: a full fine-tuning LR."""
    path = write(tmp_path, "sft.yaml", f"model_name_or_path: {LLAMA}\nuse_peft: true\nlora_r: 32\n"
                                       "lora_alpha: 32\nlora_target_modules: all-linear\n")
    _, payload = run_check(str(path))
    low = finding(payload, "lr-too-low")
    assert "not set, so the default 2e-5 applies" in low["evidence"]


# Check 5: batch size -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("accumulation", "devices"), [(32, "1"), (64, "1"), (32, "4"), (32, "8")])
def test_effective_batch_above_128_warns_as_plan_does(tmp_path: Path, accumulation: int, devices: str) -> None:
    batch = 4 * accumulation * int(devices)
    _, payload = run_check(str(axolotl_config(tmp_path, gradient_accumulation_steps=accumulation)),
                           "--devices", devices)
    found = [f for f in payload["findings"] if f["id"] == "batch-too-large"]
    if batch <= 128:
        assert not found
    else:
        assert found[0]["severity"] == "warning"  # plan warns at the same limit: one severity for one limit
        assert f"effective batch {batch} = 4 (micro_batch_size) x {accumulation}" in found[0]["evidence"]
        assert "higher rank does not fix it" in found[0]["evidence"]


# Check 6: capacity -----------------------------------------------------------------------------------------------


def test_under_capacity_names_the_rank_that_fits(tmp_path: Path) -> None:
    path = axolotl_config(tmp_path)
    per_rank = 1_769_472 + 851_968 + 132_352  # issue 2's Llama-3.1-8B counts (PEFT trains the same here)
    tokens = per_rank * 32 * 3  # three times what rank 32 holds
    code, payload = run_check(str(path), "--tokens", str(tokens))
    under = finding(payload, "under-capacity")
    assert code == 1 and under["severity"] == "error"  # headroom 0.33 < 0.5
    assert "rank >= 96 fits" in under["evidence"] and under["changes"]["lora.rank"] == 128
    _, ok = run_check(str(path), "--tokens", str(per_rank * 32))
    assert "under-capacity" not in ids(ok)


def test_data_is_counted_for_capacity(tmp_path: Path) -> None:
    root = Path(__file__).parent.parent / "examples"
    _, payload = run_check(str(axolotl_config(tmp_path, lora_r=1)), "--data", str(root / "chat.jsonl"),
                           "--tokenizer", str(root / "tokenizer"))
    assert "under-capacity" not in ids(payload)  # 151,401 trained tokens < 2.75 M params at rank 1
    assert not any(s["check"] == 6 for s in payload["not_checked"])


# Check 7 and 8: scaling -----------------------------------------------------------------------------------------


def test_rslora_below_rank_8_warns(tmp_path: Path) -> None:
    _, payload = run_check(str(axolotl_config(tmp_path, lora_r=4, peft_use_rslora=True)))
    rslora = finding(payload, "rslora-low-rank")
    assert rslora["severity"] == "warning" and "16.0" in rslora["evidence"]  # 32 / sqrt(4)
    _, fine = run_check(str(axolotl_config(tmp_path, lora_r=16, peft_use_rslora=True)))
    assert "rslora-low-rank" not in ids(fine)


def test_high_scale_with_high_lr_warns(tmp_path: Path) -> None:
    _, payload = run_check(str(axolotl_config(tmp_path, lora_r=8, lora_alpha=32, learning_rate=5e-4)))
    assert finding(payload, "high-scale-high-lr")["severity"] == "warning"  # alpha/r = 4, LR > 3e-4
    _, fine = run_check(str(axolotl_config(tmp_path, lora_r=8, lora_alpha=32, learning_rate=3e-4)))
    assert "high-scale-high-lr" not in ids(fine)


def test_alpha_tied_to_rank_is_info(tmp_path: Path) -> None:
    _, payload = run_check(str(axolotl_config(tmp_path, lora_r=64, lora_alpha=128)))
    assert finding(payload, "alpha-scales-with-rank")["severity"] == "info"
    _, fixed_alpha = run_check(str(axolotl_config(tmp_path, lora_r=64, lora_alpha=32)))
    assert "alpha-scales-with-rank" not in ids(fixed_alpha)


# Check 9: steps and schedule -------------------------------------------------------------------------------------


def test_fewer_than_100_steps_warns(tmp_path: Path) -> None:
    _, payload = run_check(str(axolotl_config(tmp_path)), "--examples", "3000")  # ceil(3000 / 64) = 47
    assert "ceil(3,000 examples x 1 epochs / batch 64) = 47" in finding(payload, "too-few-steps")["evidence"]
    _, enough = run_check(str(axolotl_config(tmp_path)), "--examples", "6400")
    assert "too-few-steps" not in ids(enough)


def test_constant_lr_warns(tmp_path: Path) -> None:
    _, payload = run_check(str(axolotl_config(tmp_path, lr_scheduler="constant")))
    assert finding(payload, "constant-lr")["changes"] == {"optim.schedule": "linear"}


# Check 10: initialisation and variants ---------------------------------------------------------------------------


def test_b_not_zero_is_an_error(tmp_path: Path) -> None:
    code, payload = run_check(str(peft_config(tmp_path, init_lora_weights=False)))
    assert code == 1 and "b-not-zero" in ids(payload, "error")
    _, fine = run_check(str(peft_config(tmp_path, init_lora_weights=True)))
    assert "b-not-zero" not in ids(fine)


@pytest.mark.parametrize("fields", [{"use_dora": True}, {"init_lora_weights": "pissa"}, {"lora_dropout": 0.1}])
def test_variants_and_dropout_are_info(tmp_path: Path, fields: dict[str, Any]) -> None:
    code, payload = run_check(str(peft_config(tmp_path, **fields)))
    assert code == 0 and ids(payload, "info") & {"lora-variant", "lora-dropout"}


# Check 11: uncalibrated family -----------------------------------------------------------------------------------


def test_uncalibrated_family_is_info_and_extrapolates(tmp_path: Path) -> None:
    path = axolotl_config(tmp_path, base_model="mistralai/Mistral-7B-v0.1", learning_rate=3e-4)
    report = check_setup(read_config(path).setup, "axolotl", _arch("mistralai/Mistral-7B-v0.1"),
                         calibration=published_calibration())
    info = [f for f in report.findings if f.id == "uncalibrated-family"]
    assert info and info[0].severity is Severity.INFO and "mistral" in info[0].title
    llama = check_setup(read_config(axolotl_config(tmp_path)).setup, "axolotl", _arch(LLAMA),
                        calibration=published_calibration())
    assert not [f for f in llama.findings if f.id == "uncalibrated-family"]


def test_cross_family_answer_of_the_shipped_calibration_is_flagged(tmp_path: Path) -> None:
    """The shipped calibration has no Mistral data: its cross-family rule answers, and check says so."""
    _, payload = run_check(str(axolotl_config(tmp_path, base_model="mistralai/Mistral-7B-v0.1")))
    info = finding(payload, "uncalibrated-family")
    assert info["severity"] == "info" and "cross-family rule: extrapolated" in info["evidence"]
    _, llama = run_check(str(axolotl_config(tmp_path)))
    assert "uncalibrated-family" not in ids(llama)


def _arch(model: str):
    from loraplan.arch import load_architecture

    return load_architecture(model)
