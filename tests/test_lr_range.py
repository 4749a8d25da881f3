"""Honest uncertainty in LR advice: swept-range coverage in `calibrate --evaluate`, the supported LR range
and the extrapolation warning in `lr`, `plan --explain` and `check`.

Oracles: the swept LRs are read straight from the published sweep table (data/tinker_cookbook_sft_sweep.md)
by a regex in this file, not by loraplan's reader; the range arithmetic is checked against a calibration
file written here with a round regret slope.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loraplan.cli import _register, app

_register()
runner = CliRunner()
TABLE = Path(__file__).resolve().parent.parent / "data" / "tinker_cookbook_sft_sweep.md"
SWEEP_HINT = "run `loraplan sweep` to measure it"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LORAPLAN_CALIBRATION", raising=False)


def run_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def swept_lrs_from_table() -> dict[str, list[float]]:
    """model -> LRs in its results table, parsed independently of loraplan's reader."""
    out: dict[str, list[float]] = {}
    for section in re.split(r"(?m)^## ", TABLE.read_text(encoding="utf-8"))[1:]:
        model = section.splitlines()[0].strip()
        rows = re.findall(r"(?m)^\| *([0-9.e+-]+) *\| *\d+ *\| *[0-9.]+ *\|", section)
        if rows:
            out[model] = sorted(float(r) for r in rows)
    return out


@pytest.fixture(scope="module")
def evaluation() -> dict:
    result = runner.invoke(app, ["calibrate", str(TABLE), "--evaluate", "--json"], env={"HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_evaluate_flags_recommendations_outside_the_swept_range(evaluation: dict) -> None:
    table = swept_lrs_from_table()
    assert len(table) == 35
    outside = []
    for row in evaluation["models"]:
        lrs = table[row["model"]]
        assert row["swept_lr"] == [lrs[0], lrs[-1]]
        inside = lrs[0] <= row["fitted_lr"] <= lrs[-1]
        assert row["fitted_in_range"] is inside
        if not inside:
            outside.append(row["model"])
    # the case that motivated this: gpt-oss-20b swept at 4e-5 and 1e-4 only, the rule says ~8.7e-4
    assert "openai/gpt-oss-20b" in outside and table["openai/gpt-oss-20b"][-1] == 1e-4
    split = evaluation["logo_in_range"]
    assert split["out_of_range"] == outside and split["models"] == 35 - len(outside)
    inside_regrets = [r["fitted_regret"] for r in evaluation["models"] if r["model"] not in outside]
    assert math.isclose(split["mean_regret"], sum(inside_regrets) / len(inside_regrets), rel_tol=1e-12)
    assert evaluation["logo"]["models"] == 35  # today's figure stays next to it


def test_evaluate_text_names_the_out_of_range_models() -> None:
    result = runner.invoke(app, ["calibrate", str(TABLE)], env={"HF_HUB_OFFLINE": "1", "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "LR inside the model's swept LRs (2 outside)" in result.output
    assert "openai/gpt-oss-20b" in result.output.split("regret is not measured")[1]


def test_lr_warns_when_the_data_never_reached_the_recommendation() -> None:
    far = run_json("lr", "openai/gpt-oss-20b")
    assert far["lr"] > 1e-4 and far["beyond_measured"] is True
    assert far["lr_range"]["measured_high"] == 1e-4 and SWEEP_HINT in far["lr_range"]["note"]
    near = run_json("lr", "Qwen/Qwen3-8B")
    assert near["beyond_measured"] is False and SWEEP_HINT not in near["lr_range"]["note"]
    span = near["lr_range"]
    assert span["low"] < near["lr"] < span["high"]
    # predicted regret = slope * |log(lr'/lr)| reaches exactly the tolerance at both ends
    for end in (span["low"], span["high"]):
        assert math.isclose(span["regret_slope_per_log_lr"] * abs(math.log(end / near["lr"])), 0.005, rel_tol=1e-9)
    text = runner.invoke(app, ["lr", "openai/gpt-oss-20b"], env={"COLUMNS": "200"}).output
    assert "extrapolated beyond the measured range" in text and SWEEP_HINT in text


CAL = """\
standalone = true
[families.llama]
base = 1e-4
exponent = 0.0
regret_slope = 0.01
models = ["meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.2-3B"]
[families.llama.swept_lr]
"meta-llama/Llama-3.1-8B" = [1e-5, 3e-4]
"meta-llama/Llama-3.2-3B" = [2e-3, 4e-3]
"""


def test_range_from_a_calibration_file(tmp_path: Path) -> None:
    cal = tmp_path / "cal.toml"
    cal.write_text(CAL, encoding="utf-8")
    own = run_json("lr", "meta-llama/Llama-3.1-8B", "--calibration", str(cal))
    assert math.isclose(own["lr"], 1e-3)  # base x 10, no size terms
    span = own["lr_range"]
    assert math.isclose(span["low"], 1e-3 * math.exp(-0.5)) and math.isclose(span["high"], 1e-3 * math.exp(0.5))
    assert (span["measured_low"], span["measured_high"], span["beyond_measured"]) == (1e-5, 3e-4, True)
    # a model the file did not sweep: the family's union of swept LRs, which does reach 1e-3
    other = run_json("lr", "meta-llama/Llama-3.1-70B", "--calibration", str(cal))
    assert other["lr_range"]["measured_on"] == "the 2 llama models" and other["beyond_measured"] is False
    # full fine-tuning answers carry no LoRA range
    assert run_json("lr", "meta-llama/Llama-3.1-8B", "--calibration", str(cal), "--full-finetune")["lr_range"] is None


def test_plan_explain_carries_the_range_and_warning() -> None:
    plan = run_json("plan", "openai/gpt-oss-20b", "--tokens", "1000000", "--examples", "2000")
    reason = next(e["reason"] for e in plan["explanations"] if e["field"] == "optim.learning_rate")
    lr = plan["setup"]["optim"]["learning_rate"]
    low, high = (float(x) for x in re.search(r"LRs ([0-9.e-]+) to ([0-9.e-]+) keep", reason).groups())
    assert low < lr < high  # scaled with the batch like the LR itself
    assert SWEEP_HINT in reason


def test_check_explains_the_expected_lr_with_its_range(tmp_path: Path) -> None:
    training = tmp_path / "train.yaml"
    training.write_text("model_name_or_path: openai/gpt-oss-20b\nuse_peft: true\nlora_r: 16\nlora_alpha: 32\n"
                        "lora_target_modules: all-linear\nlearning_rate: 2.0e-6\nper_device_train_batch_size: 8\n"
                        "gradient_accumulation_steps: 4\n", encoding="utf-8")
    result = runner.invoke(app, ["check", str(training), "--json"])
    assert result.exit_code == 1, result.output  # an error finding: the LR is far too low
    finding = next(f for f in json.loads(result.stdout)["findings"] if f["id"] == "lr-too-low")
    assert SWEEP_HINT in json.dumps(finding)


@pytest.mark.parametrize("swept", ['"m/x" = [3e-4, 1e-4]', '"m/x" = [-1e-4, 1e-3]', '"m/x" = "wide"'])
def test_bad_swept_lr_is_one_line(tmp_path: Path, swept: str) -> None:
    cal = tmp_path / "cal.toml"
    cal.write_text(f"[families.llama]\nbase = 1e-4\nexponent = 0.0\n[families.llama.swept_lr]\n{swept}\n",
                   encoding="utf-8")
    result = runner.invoke(app, ["lr", "meta-llama/Llama-3.1-8B", "--calibration", str(cal)])
    assert result.exit_code != 0 and "swept_lr" in str(result.exception)
