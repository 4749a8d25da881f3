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
    lr_defaults = trainer_keys()["trl"]["learning_rate_defaults"]
    for name in ("SFTConfig", "DPOConfig", "GRPOConfig", "RewardConfig"):
        default = {f.name: f.default for f in dataclasses.fields(getattr(trl, name))}["learning_rate"]
        assert lr_defaults[name] == default, name  # Unsloth/TRL scripts fall back to these


def test_unsloth_reward_config_uses_its_own_lr_default(tmp_path: Path) -> None:
    script = ("from unsloth import FastLanguageModel\nfrom trl import RewardConfig, RewardTrainer\n"
              "model, tok = FastLanguageModel.from_pretrained(model_name='Qwen/Qwen3-8B')\n"
              "model = FastLanguageModel.get_peft_model(model, r=16, lora_alpha=32)\n"
              "trainer = RewardTrainer(model=model, args=RewardConfig(per_device_train_batch_size=2))\n")
    _, payload = run_check(str(write(tmp_path, "rm.py", script)))
    lr = next(a for a in payload["assumed_defaults"] if a["path"] == "optim.learning_rate")
    assert lr["value"] == 1e-4 and "RewardConfig" in lr["source"]


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


# Files read right: Unsloth scripts ----------------------------------------------------------------------------------


def test_unsloth_reads_the_config_passed_to_the_last_trainer_and_resolves_names() -> None:
    """Qwen3 GRPO notebook: an SFTConfig warm-up, then `training_args = GRPOConfig(...)` given to GRPOTrainer;
    `r = lora_rank`, `lora_alpha = lora_rank*2` with `lora_rank = 32` bound once."""
    detected = read_config(REAL / "unsloth" / "Qwen3_4B-GRPO.py")
    setup = detected.setup
    assert detected.config_class == "GRPOConfig" and setup.method.value == "rl"
    assert (setup.lora.rank, setup.lora.alpha) == (32, 64)
    assert setup.optim.learning_rate == 5e-6 and setup.optim.max_steps == 100
    assert setup.model == "unsloth/Qwen3-4B-Base" and setup.data.max_length == 2048


def test_unsloth_positional_model_name_and_orpo_config() -> None:
    moe = read_config(REAL / "unsloth" / "Qwen3_MoE.py").setup  # from_pretrained(model_name, ...)
    assert moe.model == "unsloth/Qwen3-30B-A3B-Instruct-2507"
    orpo = read_config(REAL / "unsloth" / "Llama3_8B-ORPO.py")
    assert orpo.config_class == "ORPOConfig" and orpo.setup.optim.micro_batch_size == 2
    assert orpo.setup.optim.max_steps == 30


def test_an_unsloth_expression_is_not_checked_rather_than_defaulted(tmp_path: Path) -> None:
    script = ("from unsloth import FastLanguageModel\nfrom trl import SFTConfig, SFTTrainer\nimport os\n"
              "model, tok = FastLanguageModel.from_pretrained('Qwen/Qwen3-8B')\n"
              "model = FastLanguageModel.get_peft_model(model, r=int(os.environ['R']), lora_alpha=32,\n"
              "    target_modules=['q_proj','k_proj','v_proj','o_proj','gate_proj','up_proj','down_proj'])\n"
              "trainer = SFTTrainer(model=model, args=SFTConfig(learning_rate=float(os.environ['LR']),\n"
              "    per_device_train_batch_size=4, gradient_accumulation_steps=8))\n")
    code, payload = run_check(str(write(tmp_path, "train.py", script)))
    assert code in (0, 1)
    assert not any(a["path"] in ("optim.learning_rate", "lora.rank") for a in payload["assumed_defaults"]), payload
    notes = " ".join(payload["notes"])
    assert "learning_rate = float(os.environ['LR'])" in notes and "r = int(os.environ['R'])" in notes
    assert not {"lr-too-low", "lr-too-high"} & {f["id"] for f in payload["findings"]}
    skipped = " ".join(s["reason"] for s in payload["not_checked"])
    assert "not checked" in skipped


def test_unsloth_training_arguments_keep_transformers_lr_default(tmp_path: Path) -> None:
    script = ("from unsloth import FastLanguageModel, UnslothTrainer, UnslothTrainingArguments\n"
              "model, tok = FastLanguageModel.from_pretrained(model_name='Qwen/Qwen3-8B')\n"
              "model = FastLanguageModel.get_peft_model(model, r=16, lora_alpha=32)\n"
              "trainer = UnslothTrainer(model=model, args=UnslothTrainingArguments(per_device_train_batch_size=2))\n")
    _code, payload = run_check(str(write(tmp_path, "cpt.py", script)))
    lr = next(a for a in payload["assumed_defaults"] if a["path"] == "optim.learning_rate")
    assert lr["value"] == 5e-5 and "UnslothTrainingArguments" in lr["source"]


def test_unsloth_maps_mlp_names_onto_moe_experts() -> None:
    """Unsloth's get_moe_target_parameters: gate_proj/up_proj/gate_up_proj and down_proj switch on the experts."""
    _code, payload = run_check(str(REAL / "unsloth" / "Qwen3_MoE.py"))
    ids = {f["id"] for f in payload["findings"]}
    assert payload["model"] == "Qwen/Qwen3-30B-A3B"
    assert not ids & {"unmatched-targets", "moe-experts-frozen", "attention-only"}, payload["findings"]


# Files read right: torchtune ----------------------------------------------------------------------------------------


def test_torchtune_model_comes_from_the_builder() -> None:
    _, payload = run_check(str(REAL / "torchtune" / "llama3_1__8B_lora_single_device.yaml"))
    assert payload["model"] == "meta-llama/Llama-3.1-8B"
    unembed = next(f for f in payload["findings"] if f["id"] == "unembed-not-adapted")
    assert "model.apply_lora_to_output = false" in unembed["evidence"]  # torchtune's own keys and values


def test_torchtune_names_mean_roles_on_a_fused_model(tmp_path: Path) -> None:
    """Phi-3 fuses qkv_proj and gate_up_proj in HF; torchtune's q_proj/v_proj/output_proj and apply_lora_to_mlp
    still adapt them, so nothing is unmatched and --fix removes no name."""
    path = REAL / "torchtune" / "phi3__mini_lora_single_device.yaml"
    _code, payload = run_check(str(path))
    assert payload["model"] == "microsoft/Phi-3-mini-4k-instruct"
    assert "unmatched-targets" not in {f["id"] for f in payload["findings"]}
    fixed = runner.invoke(app, ["check", str(path), "--fix"]).stdout
    assert "lora_attn_modules: ['q_proj', 'v_proj', 'output_proj']" in fixed


# What the trainer really does: PEFT's ParamWrapper refuses dropout on expert parameters ---------------------------


MIXTRAL_TRL = ("model_name_or_path: mistralai/Mixtral-8x7B-v0.1\nuse_peft: true\nlora_r: 16\nlora_alpha: 32\n"
               "lora_target_modules: all-linear\nlearning_rate: 2.0e-4\n")


def test_expert_parameters_with_default_dropout_are_an_error_and_the_fix_fixes_it(tmp_path: Path) -> None:
    """TRL's default lora_dropout 0.05 + all-linear on Mixtral: PEFT converts to expert parameters and raises."""
    path = write(tmp_path, "sft.yaml", MIXTRAL_TRL)
    code, payload = run_check(str(path))
    crash = next(f for f in payload["findings"] if f["id"] == "dropout-with-expert-parameters")
    assert code == 1 and crash["severity"] == "error" and "lora_dropout" in crash["evidence"]
    fixed = tmp_path / "fixed.yaml"
    runner.invoke(app, ["check", str(path), "--fix", "-o", str(fixed)])
    assert "lora_dropout: 0" in fixed.read_text()
    code, payload = run_check(str(fixed))
    assert "dropout-with-expert-parameters" not in {f["id"] for f in payload["findings"]}


def test_target_parameters_are_honoured_without_a_model(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "base_model: ./my-local-moe\nadapter: lora\nlora_r: 16\nlora_alpha: 32\n"
                                     "lora_dropout: 0.05\nlora_target_modules: [q_proj, k_proj, v_proj, o_proj]\n"
                                     "lora_target_parameters: [mlp.experts.gate_up_proj, mlp.experts.down_proj]\n")
    _code, payload = run_check(str(path))
    ids = {f["id"] for f in payload["findings"]}
    assert "attention-only" not in ids and "dropout-with-expert-parameters" in ids


def test_peft_matches_the_installed_peft_on_paramwrapper_dropout() -> None:
    """The oracle: PEFT itself refuses lora_dropout != 0 for a target_parameters adapter."""
    torch = pytest.importorskip("torch")
    from peft import LoraConfig, get_peft_model

    class Experts(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gate_up_proj = torch.nn.Parameter(torch.zeros(4, 8, 16))

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.experts = Experts()
            self.q_proj = torch.nn.Linear(8, 8)

    with pytest.raises(ValueError, match="lora_dropout != 0"):
        get_peft_model(Tiny(), LoraConfig(r=2, target_modules=["q_proj"], target_parameters=["experts.gate_up_proj"],
                                          lora_dropout=0.05))
    get_peft_model(Tiny(), LoraConfig(r=2, target_modules=["q_proj"], target_parameters=["experts.gate_up_proj"],
                                      lora_dropout=0.0))


# Variant keys and modules trained fully ----------------------------------------------------------------------------


def test_modules_to_save_lm_head_trains_the_unembedding(tmp_path: Path) -> None:
    base = ("base_model: meta-llama/Llama-3.1-8B\nadapter: lora\nlora_r: 32\nlora_alpha: 32\nlora_dropout: 0\n"
            "lora_target_linear: true\nlearning_rate: 2.0e-4\nmicro_batch_size: 4\ngradient_accumulation_steps: 8\n")
    _, plain = run_check(str(write(tmp_path, "plain.yaml", base)))
    _, saved = run_check(str(write(tmp_path, "saved.yaml", base + "lora_modules_to_save:\n  - lm_head\n")))
    assert "unembed-not-adapted" in {f["id"] for f in plain["findings"]}
    ids = {f["id"] for f in saved["findings"]}
    assert "unembed-not-adapted" not in ids and "modules-trained-fully" in ids
    shown = next(f for f in saved["findings"] if f["id"] == "modules-trained-fully")
    assert "lora_modules_to_save" in shown["evidence"]  # the file's own key name


def test_loraplus_and_pissa_are_read_and_reported() -> None:
    _, loraplus = run_check(str(REAL / "llamafactory" / "extras__loraplus__llama3_lora_sft.yaml"))
    variant = next(f for f in loraplus["findings"] if f["id"] == "lora-variant")
    assert "loraplus_lr_ratio = 16" in variant["evidence"]
    pissa = read_config(REAL / "llamafactory" / "extras__pissa__llama3_lora_sft.yaml").setup
    assert pissa.lora.init_lora_weights == "pissa"
    bdlora = read_config(REAL / "peft" / "llama-3.2-3B-rank14-target-mlp-bdlora.json").setup
    assert bdlora.lora.variants and bdlora.lora.variants[0].startswith("use_bdlora")


# Judgement: the effective LR, one set of thresholds, no error from an extrapolated rule alone ------------------------


def _lr_finding(payload: dict[str, Any]) -> dict[str, Any] | None:
    return next((f for f in payload["findings"] if f["id"].startswith(("lr-too", "full-ft-lr"))), None)


def test_lr_is_judged_on_the_effective_scale_with_rslora(tmp_path: Path) -> None:
    """r 256, alpha 256, rsLoRA: scale 16 against 32/256 = 0.125, so 2e-5 acts like 2.56e-3: too high, not low."""
    text = ("model_name_or_path: meta-llama/Llama-3.1-8B\nuse_peft: true\nlora_r: 256\nlora_alpha: 256\n"
            "use_rslora: true\nlora_dropout: 0\nlora_target_modules: all-linear\nlearning_rate: 2.0e-5\n"
            "per_device_train_batch_size: 4\ngradient_accumulation_steps: 8\n")
    _, payload = run_check(str(write(tmp_path, "rs.yaml", text)))
    lr = _lr_finding(payload)
    assert lr is not None and lr["id"] == "lr-too-high" and lr["severity"] == "error"
    assert "scale 16" in lr["evidence"] and "128x" in lr["evidence"]
    assert lr["changes"]["optim.learning_rate"] < 2e-5  # the fix lowers the LR; "raise it" would be worse
    _, plain = run_check(str(write(tmp_path, "plain.yaml", text.replace("use_rslora: true", "use_rslora: false")
                                   .replace("lora_alpha: 256", "lora_alpha: 32"))))
    assert _lr_finding(plain)["id"] == "lr-too-low"  # the same LR at the rule's own scale is a full-FT LR


def test_an_extrapolated_rule_alone_makes_no_error(tmp_path: Path) -> None:
    """Mistral has no calibrated family rule: 2e-5 is far below the extrapolated advice, but only a warning."""
    path = write(tmp_path, "m.yaml", "base_model: mistralai/Mistral-7B-v0.1\nadapter: lora\nlora_r: 32\n"
                                     "lora_alpha: 32\nlora_target_linear: true\nlearning_rate: 2.0e-5\n"
                                     "micro_batch_size: 4\ngradient_accumulation_steps: 8\n")
    _, payload = run_check(str(path))
    assert "uncalibrated-family" in {f["id"] for f in payload["findings"]}
    lr = _lr_finding(payload)
    assert lr is not None and lr["severity"] == "warning" and "extrapolated" in lr["evidence"]


def test_plan_and_check_give_one_severity_for_a_large_batch(tmp_path: Path) -> None:
    from loraplan.rules.batch import choose_batch

    path = write(tmp_path, "b.yaml", "base_model: meta-llama/Llama-3.1-8B\nadapter: lora\nlora_r: 32\n"
                                     "lora_alpha: 32\nlora_target_linear: true\nlearning_rate: 2.0e-4\n"
                                     "micro_batch_size: 16\ngradient_accumulation_steps: 64\n")
    _, payload = run_check(str(path))
    batch = next(f for f in payload["findings"] if f["id"] == "batch-too-large")
    planned = choose_batch(None, requested=1024)
    assert batch["severity"] == "warning" and any("1024" in w for w in planned.warnings)


# --fix: a fix must fix, and only the changed values differ -------------------------------------------------------


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: str(p.relative_to(REAL)))
def test_a_fix_fixes_what_it_claims(path: Path, tmp_path: Path) -> None:
    """After --fix, check on the fixed file no longer reports an error or warning whose change it wrote."""
    fixed = tmp_path / path.name
    result = runner.invoke(app, ["check", str(path), "--fix", "-o", str(fixed), "--json"])
    before = json.loads(result.stdout)
    claimed = {f["id"] for f in before["findings"] if f["severity"] != "info" and f["changes"]}
    if not claimed:
        return
    code, after = run_check(str(fixed), "--format", before["format"])
    assert code in (0, 1), after
    assert not claimed & {f["id"] for f in after["findings"]}, after["findings"]


def _changed_lines(old: str, new: str) -> list[str]:
    import difflib

    return [line for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_fix_keeps_comments_indentation_and_spellings(tmp_path: Path) -> None:
    """torchtune writes `True`, `null` and multi-line flow lists; only the changed value's line may differ."""
    source = (REAL / "torchtune" / "llama3_1__8B_lora_single_device.yaml").read_text()
    text = source.replace("  lr: 3e-4", "  lr: 3e-5")  # a full fine-tuning LR: check fixes it
    path = write(tmp_path, "tt.yaml", text)
    fixed = runner.invoke(app, ["check", str(path), "--fix"]).stdout
    changed = _changed_lines(text, fixed)
    assert len(changed) == 2 and changed[0] == "-  lr: 3e-5" and changed[1].startswith("+  lr: ")
    assert "apply_lora_to_mlp: True" in fixed and "recipe_checkpoint: null" in fixed
    import yaml  # PyYAML, as torchtune reads it: the new LR is a float, not a string

    assert isinstance(yaml.safe_load(fixed)["optimizer"]["lr"], float)


def test_fix_keeps_the_comment_block_after_a_replaced_key() -> None:
    path = REAL / "axolotl" / "gpt-oss__gpt-oss-20b-sft-lora-singlegpu.yaml"
    text = path.read_text()
    fixed = runner.invoke(app, ["check", str(path), "--fix"]).stdout
    assert "#lora_target_parameters:  # target the experts in the last two layers" in fixed
    assert "# dropout not supported when using LoRA over expert parameters" in fixed
    removed = [line for line in _changed_lines(text, fixed) if line.startswith("-")]
    assert all(not line.lstrip("-").lstrip().startswith("#") for line in removed), removed


def test_fix_edits_a_trl_command_line_in_place(tmp_path: Path) -> None:
    text = ("trl sft \\\n    --model_name_or_path meta-llama/Llama-3.1-8B \\\n    --use_peft \\\n"
            "    --lora_r 32 \\\n    --lora_alpha 32 \\\n    --lora_dropout 0.0 \\\n"
            "    --lora_target_modules q_proj v_proj \\\n    --learning_rate 2.0e-4 \\\n"
            "    --per_device_train_batch_size 4 \\\n    --gradient_accumulation_steps 8 \\\n    --output_dir out\n")
    path = write(tmp_path, "train.sh", text)
    _, before = run_check(str(path))
    assert "attention-only" in {f["id"] for f in before["findings"]}
    fixed = write(tmp_path, "fixed.sh", runner.invoke(app, ["check", str(path), "--fix"]).stdout)
    assert "--lora_target_modules q_proj k_proj v_proj o_proj gate_proj up_proj down_proj" in fixed.read_text()
    assert "--output_dir out" in fixed.read_text()
    _, after = run_check(str(fixed))
    assert "attention-only" not in {f["id"] for f in after["findings"]}


def test_plan_refuses_torchtune_for_moe_only_where_torchtune_has_no_moe_builder() -> None:
    """torchtune adapts Llama 4's experts (LoRAGroupedExperts); it has no MoE builder for Qwen3-MoE."""
    from dataclasses import replace

    from loraplan.arch.sources import load_architecture
    from loraplan.commands.plan_render import expressible_setup
    from loraplan.errors import LoraplanError
    from loraplan.setup import LoraSpec, TrainingSetup

    qwen_moe = load_architecture("Qwen/Qwen3-30B-A3B")
    setup = TrainingSetup(lora=LoraSpec(rank=32, target_modules=("q_proj",),
                                        target_parameters=("mlp.experts.gate_up_proj",)))
    with pytest.raises(LoraplanError, match="Llama 4"):
        expressible_setup(setup, qwen_moe, "torchtune")
    llama4_like = replace(qwen_moe, model_type="llama4_text")
    assert expressible_setup(setup, llama4_like, "torchtune") == setup


# TRL command lines ----------------------------------------------------------------------------------------------------


def test_trl_command_lines_are_read_as_trl_reads_its_arguments() -> None:
    dpo = read_config(REAL / "trl" / "peft_integration_4.sh")  # python trl/scripts/dpo.py ... --use_peft --lora_r 32
    assert dpo.format == "trl" and dpo.setup.method.value == "dpo" and dpo.setup.is_lora
    assert (dpo.setup.lora.rank, dpo.setup.lora.alpha, dpo.setup.optim.learning_rate) == (32, 16, 5e-6)
    listed = read_config(REAL / "trl" / "peft_integration_8.sh").setup  # --lora_target_modules q_proj v_proj
    assert listed.lora.target_modules == ("q_proj", "v_proj")
    grpo = read_config(REAL / "trl" / "lora_without_regret_2.sh").setup  # --beta 0.0 is GRPO's KL weight
    assert grpo.method.value == "rl" and grpo.extras.dpo_beta is None and grpo.optim.warmup_steps == 0


def test_llamafactory_on_qwen35_moe_names_the_formats_that_reach_the_experts() -> None:
    """lora_target names modules; Qwen3.5-MoE's experts are parameters no module name converts to."""
    path = REAL / "llamafactory" / "ascend__qwen3_5moe_lora_sft_fsdp2.yaml"
    _, payload = run_check(str(path))
    frozen = next(f for f in payload["findings"] if f["id"] == "moe-experts-frozen")
    assert "cannot reach" in frozen["fix"] and "PEFT, TRL, Axolotl or Unsloth" in frozen["fix"]
    assert frozen["changes"] == {}


def test_unsloth_fix_on_moe_names_the_mlp_modules_unsloth_maps(tmp_path: Path) -> None:
    """Unsloth's layout decides the fix: gate_proj/up_proj/down_proj (mapped onto the experts by Unsloth)."""
    text = (REAL / "unsloth" / "Qwen3_MoE.py").read_text()
    text = text.replace('"gate_proj", "up_proj", "down_proj", "gate_up_proj", #Enable LoRA on MoE layers', "#")
    path = write(tmp_path, "moe.py", text)
    _, before = run_check(str(path))
    assert "attention-only" in {f["id"] for f in before["findings"]}
    fixed = write(tmp_path, "fixed.py", runner.invoke(app, ["check", str(path), "--fix"]).stdout)
    assert "gate_proj" in fixed.read_text() and "target_parameters" not in fixed.read_text()
    _, after = run_check(str(fixed))
    assert not {"attention-only", "moe-experts-frozen", "unmatched-targets"} & {f["id"] for f in after["findings"]}
