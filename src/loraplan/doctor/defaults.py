"""What each trainer does with a setting the config leaves out: its own default.

Readers keep unstated fields unknown (None); checks need what the trainer will actually run, and
the commonest LoRA mistakes hide in defaults (TRL's SFTConfig trains at 2e-5, a full fine-tuning
LR; PEFT without target_modules adapts q_proj and v_proj only). Each default names where it is
defined; values were read from PEFT 0.21, TRL 1.x, Axolotl 0.18, LLaMA-Factory, torchtune and
Unsloth (../shared/research/trainers-and-anchors.md, sections 1-5). The planner never relies on
them: its exports state every value.
"""

from __future__ import annotations

from typing import Any

from loraplan.arch.model import Architecture
from loraplan.doctor.findings import Assumed
from loraplan.setup import Method, Schedule, TrainingSetup

PEFT_SRC = "PEFT LoraConfig default (peft/tuners/lora/config.py)"
PEFT_TARGETS_SRC = "PEFT default targets per model type (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING)"
TRL_MODEL_SRC = "TRL ModelConfig default (trl/trainer/model_config.py)"
TRL_ARGS_SRC = "TRL {cls} default (trl/trainer/{module}.py; transformers TrainingArguments)"
AXOLOTL_SRC = "Axolotl config schema default (axolotl/utils/schemas)"
LLAMAFACTORY_SRC = "LLaMA-Factory FinetuningArguments / Seq2SeqTrainingArguments default"
TORCHTUNE_SRC = "torchtune LoRA builder default (lora_rank=8, lora_alpha=16; cosine warmup schedule)"
UNSLOTH_SRC = "Unsloth FastLanguageModel.get_peft_model default (unsloth/models/llama.py)"
TINKER_SRC = "Tinker service: alpha fixed at 32, every weight matrix adapted, B initialised to zero"

# PEFT's per-model-type targets when target_modules is None (peft/utils/constants.py), for causal LMs.
PEFT_DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("llama", "llama4", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text",
                     "opt", "gptj", "gpt_neo", "stablelm", "bart"), ("q_proj", "v_proj")),
    "phi": ("q_proj", "v_proj", "fc1", "fc2"),
    "gpt2": ("c_attn",), "gpt_bigcode": ("c_attn",), "bloom": ("query_key_value",),
    "gpt_neox": ("query_key_value",), "falcon": ("query_key_value",), "mpt": ("Wqkv",),
    "nemotron_h": ("q_proj", "k_proj", "v_proj", "o_proj"),
}
UNSLOTH_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

_LORA_PEFT = {"lora.dropout": 0.0, "lora.use_rslora": False, "lora.init_lora_weights": True, "lora.use_dora": False}
# path -> value, per format, for the LoRA half (applied only to LoRA setups).
LORA_DEFAULTS: dict[str, tuple[dict[str, Any], str]] = {
    "peft": ({"lora.rank": 8, "lora.alpha": 8.0, **_LORA_PEFT}, PEFT_SRC),
    "trl": ({"lora.rank": 16, "lora.alpha": 32.0, **_LORA_PEFT, "lora.dropout": 0.05}, TRL_MODEL_SRC),
    "unsloth": ({"lora.rank": 16, "lora.alpha": 16.0, **_LORA_PEFT, "lora.target_modules": UNSLOTH_TARGETS},
                UNSLOTH_SRC),
    "axolotl": (dict(_LORA_PEFT), AXOLOTL_SRC),
    "llamafactory": ({"lora.rank": 8, **_LORA_PEFT, "lora.target_modules": ("all-linear",)}, LLAMAFACTORY_SRC),
    "torchtune": ({"lora.rank": 8, "lora.alpha": 16.0, "lora.dropout": 0.0, "lora.use_rslora": False,
                   "lora.init_lora_weights": True, "lora.use_dora": False}, TORCHTUNE_SRC),
    "tinker": ({"lora.alpha": 32.0, "lora.dropout": 0.0, "lora.use_rslora": False, "lora.init_lora_weights": True,
                "lora.use_dora": False, "lora.unembed": True}, TINKER_SRC),
}
_HF_TRAINING = {"optim.micro_batch_size": 8, "optim.gradient_accumulation_steps": 1, "optim.epochs": 3.0,
                "optim.schedule": Schedule.LINEAR}
# The trainer half (applied to every setup).
TRAINING_DEFAULTS: dict[str, tuple[dict[str, Any], str]] = {
    "axolotl": ({"optim.micro_batch_size": 1, "optim.gradient_accumulation_steps": 1, "optim.epochs": 1.0,
                 "optim.schedule": Schedule.COSINE}, AXOLOTL_SRC),
    "llamafactory": ({**_HF_TRAINING, "optim.learning_rate": 5e-5}, LLAMAFACTORY_SRC),
    "torchtune": ({"optim.schedule": Schedule.COSINE, "optim.gradient_accumulation_steps": 1}, TORCHTUNE_SRC),
}
# TRL's config classes override TrainingArguments' learning rate by method (Unsloth runs the same classes).
TRL_LR = {Method.SFT: (2e-5, "SFTConfig", "sft_config"), Method.DISTILL: (2e-5, "SFTConfig", "sft_config"),
          Method.DPO: (1e-6, "DPOConfig", "dpo_config"), Method.RL: (1e-6, "GRPOConfig", "grpo_config")}


def config_class_lr(config_class: str) -> tuple[float, str] | None:
    """The LR default of the config class a script passes to its trainer, from the snapshot of the installed
    TRL and transformers (formats/trainer_keys.json): ORPOConfig 1e-6, RewardConfig 1e-4, TrainingArguments 5e-5."""
    from loraplan.formats.keys import trainer_keys

    trl = trainer_keys()["trl"]
    defaults = trl.get("learning_rate_defaults", {})
    if isinstance(defaults, dict) and config_class in defaults:
        return float(defaults[config_class]), f"TRL {config_class} default (trl {trl['version']})"
    hf = trainer_keys()["transformers"]
    if config_class.endswith("TrainingArguments") and "learning_rate_default" in hf:
        return float(hf["learning_rate_default"]), (f"{config_class}: transformers TrainingArguments default "
                                                     f"(transformers {hf['version']})")
    return None


def with_defaults(setup: TrainingSetup, fmt: str | None, arch: Architecture | None,
                  key: Any = None, skip: frozenset[str] = frozenset(),
                  config_class: str | None = None) -> tuple[TrainingSetup, tuple[Assumed, ...]]:
    """The setup as the trainer will run it, and the defaults that filled the gaps.

    skip: paths the file sets by an expression that was not evaluated: no default is assumed for them.
    config_class: the config class a script passes to its trainer; a plain (Unsloth)TrainingArguments keeps
    transformers' own LR default rather than a TRL config's.
    """
    if fmt is None:
        return setup, ()
    chosen: dict[str, tuple[Any, str]] = {}
    if setup.is_lora and fmt in LORA_DEFAULTS:
        values, source = LORA_DEFAULTS[fmt]
        chosen.update({p: (v, source) for p, v in values.items()})
    if fmt in TRAINING_DEFAULTS:
        values, source = TRAINING_DEFAULTS[fmt]
        chosen.update({p: (v, source) for p, v in values.items()})
    if fmt in ("trl", "unsloth"):
        lr, cls, module = TRL_LR[setup.method or Method.SFT]
        src = TRL_ARGS_SRC.format(cls=cls, module=module)
        chosen.update({p: (v, src) for p, v in {**_HF_TRAINING, "optim.learning_rate": lr}.items()})
        by_class = config_class_lr(config_class) if config_class is not None else None
        if by_class is not None:
            chosen["optim.learning_rate"] = by_class
    if setup.is_lora and fmt in ("peft", "trl", "axolotl") and arch is not None:
        targets = PEFT_DEFAULT_TARGETS.get(arch.model_type)
        if targets is not None:
            chosen["lora.target_modules"] = (targets, f"{PEFT_TARGETS_SRC} for `{arch.model_type}`")
    if setup.is_lora and fmt == "llamafactory" and setup.lora.rank is not None:
        chosen["lora.alpha"] = (2.0 * setup.lora.rank, "LLaMA-Factory default: lora_alpha = 2 x lora_rank")
    updates: dict[str, dict[str, Any]] = {}
    assumed: list[Assumed] = []
    for path, (value, source) in chosen.items():
        if path in skip:
            continue
        section, name = path.split(".")
        if getattr(getattr(setup, section), name) is not None:
            continue
        updates.setdefault(section, {})[name] = value
        assumed.append(Assumed(path, key(path) if key else path, value, source))
    if "lora" in updates and "target_modules" in updates["lora"] and setup.lora.unembed is None:
        updates["lora"]["unembed"] = "lm_head" in updates["lora"]["target_modules"]
    if setup.is_lora and fmt == "llamafactory" and setup.lora.rank is None and setup.lora.alpha is None:
        updates.setdefault("lora", {})["alpha"] = 16.0  # 2 x the default rank 8
        assumed.append(Assumed("lora.alpha", key("lora.alpha") if key else "lora.alpha", 16.0,
                               "LLaMA-Factory default: lora_alpha = 2 x lora_rank"))
    sections = {s: getattr(setup, s).model_copy(update=u) for s, u in updates.items()}
    return setup.model_copy(update=sections), tuple(assumed)
