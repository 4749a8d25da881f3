"""Plan exports: golden files, the real libraries loading them, and the CLI writing them atomically.

Oracles: PEFT's own LoraConfig / get_peft_model, TRL's own argument parser; golden files pin the
rest (regenerate with LORAPLAN_UPDATE_GOLDEN=1 after a deliberate change, and review the diff).
"""

from __future__ import annotations

import ast
import json
import os
import warnings
from pathlib import Path

import pytest

from loraplan.arch import load_architecture
from loraplan.formats import FORMATS
from loraplan.formats.peft import write_python
from loraplan.plan import DataFacts, PlanRequest, make_plan
from loraplan.setup import LossMask, Method, Schedule

GOLDEN = Path(__file__).parent / "golden"


def _plan(model: str = "meta-llama/Llama-3.1-8B", method: Method = Method.SFT, schedule=Schedule.LINEAR):
    facts = DataFacts(path="data/train.jsonl", examples=20_000, trained_tokens=10_000_000,
                      loss_mask=LossMask.ASSISTANT)
    arch = load_architecture(model)
    lr = 3e-4 if arch.family not in ("llama", "qwen") else None  # uncalibrated under the published rule
    teacher = "meta-llama/Llama-3.1-70B" if method is Method.DISTILL else None
    return make_plan(arch, PlanRequest(method=method, data=facts, schedule=schedule, lr=lr, teacher=teacher))


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_golden_export(name: str) -> None:
    schedule = Schedule.COSINE if name == "torchtune" else Schedule.LINEAR
    text = FORMATS[name].write(_plan(schedule=schedule).setup)
    golden = GOLDEN / f"llama-3.1-8b.{name}{FORMATS[name].SUFFIX}"
    if os.environ.get("LORAPLAN_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize("model", ["meta-llama/Llama-3.1-8B", "Qwen/Qwen3-30B-A3B", "deepseek-ai/DeepSeek-V3.1"])
@pytest.mark.parametrize("method", list(Method))
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_round_trip_every_format(model: str, method: Method, name: str) -> None:
    fmt = FORMATS[name]
    schedule = Schedule.COSINE if name == "torchtune" else Schedule.LINEAR
    setup = _plan(model, method, schedule).setup
    assert fmt.read(fmt.write(setup), "export") == fmt.project(setup)


def test_peft_export_loads_in_peft_and_trains_the_planned_weights(tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    from loraplan.arch.conventions import budget
    from loraplan.arch.meta import instantiate
    from loraplan.arch.sources import architecture_from_config
    from tests.conftest import shrunk_config

    setup = _plan("Qwen/Qwen3-30B-A3B").setup
    text = FORMATS["peft"].write(setup)
    data = json.loads(text)
    config = peft.LoraConfig(**{k: v for k, v in data.items() if k != "peft_type"})
    (tmp_path / "adapter_config.json").write_text(text)
    loaded = peft.LoraConfig.from_pretrained(str(tmp_path))
    assert loaded.r == setup.lora.rank and set(loaded.target_modules) == set(setup.lora.target_modules)
    small = shrunk_config("Qwen/Qwen3-30B-A3B", 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = peft.get_peft_model(instantiate(small), config)
    trainable = model.get_nb_trainable_parameters()[0]
    arch = architecture_from_config(small, "small", "test")
    names = list(setup.lora.target_modules)
    expected = budget(arch, "peft", names, unembed=False)
    experts = budget(arch, "peft", "experts", unembed=False)
    assert trainable == (expected.per_rank_total + experts.per_rank_total) * setup.lora.rank


def test_peft_python_snippet_is_valid_python() -> None:
    ast.parse(write_python(_plan().setup))


@pytest.mark.parametrize(("method", "config_cls"), [(Method.SFT, "SFTConfig"), (Method.DPO, "DPOConfig"),
                                                    (Method.RL, "GRPOConfig")])
def test_trl_export_parses_with_trl(tmp_path: Path, method: Method, config_cls: str) -> None:
    trl = pytest.importorskip("trl")
    setup = _plan(method=method).setup
    path = tmp_path / "trl.yaml"
    path.write_text(FORMATS["trl"].write(setup))
    # `trl sft|dpo|grpo`'s own dataclasses (trl/scripts/sft.py make_parser), the dataset mixture included.
    parser = trl.TrlParser((trl.ScriptArguments, getattr(trl, config_cls), trl.ModelConfig, trl.DatasetMixtureConfig))
    # The file asks for bf16 (a GPU setting); on CI's CPU the parser needs --use_cpu to accept it.
    _script, training, model, _data = parser.parse_args_and_config(args=["--config", str(path), "--output_dir",
                                                                 str(tmp_path / "out"), "--use_cpu", "true"])
    assert training.learning_rate == pytest.approx(setup.optim.learning_rate)
    assert training.per_device_train_batch_size == setup.optim.micro_batch_size
    assert model.use_peft and model.lora_r == setup.lora.rank
    assert set(model.lora_target_modules) == set(setup.lora.target_modules)
    if method is Method.DPO:
        assert training.beta == 0.1


def test_cli_writes_export_atomically(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from loraplan.cli import _register, app

    _register()
    out = tmp_path / "axolotl.yaml"
    result = CliRunner().invoke(app, ["plan", "meta-llama/Llama-3.1-8B", "--tokens", "1000000", "--examples", "5000",
                                      "--format", "axolotl", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert FORMATS["axolotl"].read(out.read_text(), str(out)).lora.rank == 32
    assert [p.name for p in tmp_path.iterdir()] == ["axolotl.yaml"]  # no temp file left behind


def test_plan_counts_the_example_dataset_with_the_token_counter() -> None:
    from typer.testing import CliRunner

    from loraplan.cli import _register, app
    from loraplan.data import count_trained_tokens

    _register()
    root = Path(__file__).resolve().parent.parent / "examples"
    result = CliRunner().invoke(app, ["plan", "meta-llama/Llama-3.1-8B", "--data", str(root / "chat.jsonl"),
                                      "--tokenizer", str(root / "tokenizer"), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    count = count_trained_tokens(str(root / "chat.jsonl"), str(root / "tokenizer"), max_length=2048)
    assert payload["setup"]["data"]["trained_tokens"] == count.trained_tokens
    assert payload["setup"]["data"]["examples"] == count.examples == 470
    assert payload["capacity"]["status"] == "OK"
