"""`check` on the configs people really have: the trainers' own example configs, kept as fixtures.

Oracles: the files themselves (tests/fixtures/real_configs, each with repo, path and commit in SOURCES), the
installed libraries (PEFT's LoraConfig, transformers' TrainingArguments, TRL's configs), the trainers' schemas
(generated key sets with their commit) and, for what a trainer does at run time, the trainer's own code.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from loraplan.cli import _register, app
from loraplan.doctor import check_config
from loraplan.formats.detect import read_config
from loraplan.formats.keys import accepted_keys, trainer_keys

_register()
runner = CliRunner()
REAL = Path(__file__).parent / "fixtures" / "real_configs"
FIXTURES = sorted(p for p in REAL.rglob("*") if p.is_file() and p.name != "SOURCES")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def run_check(*args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["check", *args, "--json"])
    return result.exit_code, json.loads(result.stdout)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# The fixtures themselves ----------------------------------------------------------------------------------------


def test_every_fixture_names_its_source() -> None:
    rows = [line.split("\t") for line in (REAL / "SOURCES").read_text().splitlines() if line.strip()]
    listed = {row[0] for row in rows}
    assert listed == {str(p.relative_to(REAL)) for p in FIXTURES}
    for dest, repo, path, commit in rows:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", repo) and path and re.fullmatch(r"[0-9a-f]{40}", commit), dest


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: str(p.relative_to(REAL)))
def test_every_real_config_is_read_and_checked(path: Path) -> None:
    """No exit 2 on a valid file: every real example is read and checked (offline)."""
    code, payload = run_check(str(path))
    assert code in (0, 1), payload
    assert payload["format"] in ("peft", "trl", "axolotl", "llamafactory", "torchtune", "unsloth", "tinker")


# Key sets: the trainer's own, not loraplan's subset ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "loader"), [
    ("peft", lambda: __import__("peft").LoraConfig),
    ("transformers", lambda: __import__("transformers").Seq2SeqTrainingArguments),
])
def test_key_snapshot_matches_the_installed_library(name: str, loader: Any) -> None:
    cls = loader()
    installed = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
    snapshot = set(trainer_keys()[name]["keys"])
    source = trainer_keys()[name]["source"]
    assert installed == snapshot, f"installed {name} differs from trainer_keys.json ({source}); regenerate it"


def test_trl_key_snapshot_matches_the_installed_trl() -> None:
    trl = pytest.importorskip("trl")
    installed: set[str] = set()
    for name in ("SFTConfig", "DPOConfig", "GRPOConfig", "KTOConfig", "RLOOConfig", "RewardConfig", "ModelConfig",
                 "ScriptArguments"):
        installed |= {f.name for f in dataclasses.fields(getattr(trl, name)) if not f.name.startswith("_")}
    assert installed <= set(trainer_keys()["trl"]["keys"]), "run scripts/gen_trainer_keys.py"
    assert trainer_keys()["trl"]["version"] == trl.__version__ or installed <= set(trainer_keys()["trl"]["keys"])


def test_an_adapter_config_saved_by_the_installed_peft_is_accepted(tmp_path: Path) -> None:
    """Every field PEFT writes (use_qalora, use_bdlora, ...) is a PEFT key, not a misspelling."""
    from peft import LoraConfig

    saved = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"]).to_dict()
    saved = {k: (sorted(v) if isinstance(v, set) else v) for k, v in saved.items()}
    saved["peft_type"], saved["task_type"] = "LORA", "CAUSAL_LM"
    path = write(tmp_path, "adapter_config.json", json.dumps(saved, default=str))
    setup = read_config(path).setup
    assert (setup.lora.rank, setup.lora.alpha) == (16, 32)


@pytest.mark.parametrize(("fmt", "key"), [("llamafactory", "local_rank"), ("trl", "local_rank"),
                                          ("axolotl", "lora_target_parameters"), ("peft", "use_bdlora"),
                                          ("llamafactory", "loraplus_lr_ratio")])
def test_real_trainer_keys_are_accepted(fmt: str, key: str) -> None:
    assert key in accepted_keys(fmt)


def test_a_real_misspelling_is_still_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "base_model: meta-llama/Llama-3.1-8B\nadapter: lora\nlerning_rate: 2e-4\n")
    code, payload = run_check(str(path))
    assert code == 2
    assert "lerning_rate" in payload["error"]["message"] and "learning_rate" in payload["error"]["message"]


# Values the trainer accepts, with its meaning ---------------------------------------------------------------------


def test_max_steps_minus_one_means_not_set_and_small_warmup_is_a_ratio(tmp_path: Path) -> None:
    path = write(tmp_path, "sft.yaml", "model_name_or_path: Qwen/Qwen3-8B\nuse_peft: true\nmax_steps: -1\n"
                                       "warmup_steps: 0.03\nlearning_rate: 2.0e-4\n")
    optim = read_config(path).setup.optim
    assert optim.max_steps is None and optim.warmup_ratio == 0.03 and optim.warmup_steps is None


def test_axolotl_warmup_below_one_is_a_ratio() -> None:
    optim = read_config(REAL / "axolotl" / "expert_parallel__qwen3_30ba3b_ep_lora_4gpu.yaml").setup.optim
    assert optim.warmup_ratio == 0.1


def test_json_prints_the_error_object_on_exit_2(tmp_path: Path) -> None:
    code, payload = run_check(str(write(tmp_path, "bad.yaml", "base_model: [unclosed\n")))
    assert code == 2 and payload["error"]["type"] == "FormatError" and "bad.yaml" in payload["error"]["message"]


def test_check_config_reads_each_format_of_the_fixtures() -> None:
    formats = {read_config(p).format for p in FIXTURES}
    assert formats == {"peft", "trl", "axolotl", "llamafactory", "torchtune", "unsloth", "tinker"}


def _report(path: Path, model: str | None = None) -> Any:
    return check_config(read_config(path), model)
