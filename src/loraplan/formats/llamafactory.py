"""LLaMA-Factory YAML (`llamafactory-cli train FILE`). Field names from its hparams dataclasses.

`lora_target` is a comma-joined list (or `all`); LLaMA-Factory has no `target_parameters`, so
stacked MoE experts cannot be adapted through it (the writer says so in a comment). The loss mask
is `train_on_prompt` (false: responses only) and `mask_history` (true: last turn only).
"""

from __future__ import annotations

from typing import Any

from loraplan.formats.base import Fields, dump_yaml, load_yaml_mapping
from loraplan.formats.flat import (
    Key,
    from_mapping,
    make_setup,
    project_paths,
    set_path,
    to_mapping,
    unembed_from_targets,
)
from loraplan.formats.hf_args import TRAINING_PATHS, training_from, training_mapping
from loraplan.formats.trl import _flatten
from loraplan.formats.variants import read_variants
from loraplan.setup import LossMask, Method, TrainingSetup

ALL_LINEAR = "all-linear"
NAME = "llamafactory"
SUFFIX = ".yaml"
STAGES = {Method.SFT: "sft", Method.DISTILL: "sft", Method.DPO: "dpo", Method.RL: "ppo"}
KEYS = [
    Key("model", "model_name_or_path", "text"),
    Key("lora.rank", "lora_rank", "integer"),
    Key("lora.alpha", "lora_alpha", "number"),
    Key("lora.dropout", "lora_dropout", "number"),
    Key("lora.use_rslora", "use_rslora", "boolean"),
    Key("lora.use_dora", "use_dora", "boolean"),
    Key("data.path", "dataset", "text"),
    Key("data.max_length", "cutoff_len", "integer"),
    Key("extras.dpo_beta", "pref_beta", "number"),
]
PATHS = [k.path for k in KEYS] + TRAINING_PATHS + [
    "method", "finetuning", "quantization", "lora.target_modules", "lora.unembed", "data.loss_mask"]


DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".arrow")


def dataset_info_entry(path: str) -> dict[str, Any]:
    """The dataset_info.json entry LLaMA-Factory needs for a local OpenAI-`messages` file (its sharegpt
    formatting with OpenAI role tags, data/README.md); `dataset` names data sets, not files."""
    return {"file_name": path, "formatting": "sharegpt", "columns": {"messages": "messages"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"}}


def dataset_info_note(path: str) -> str:
    import json

    entry = json.dumps({path: dataset_info_entry(path)})
    return (f"LLaMA-Factory reads `dataset` by name from DATASET_DIR/dataset_info.json (file_name relative to "
            f"DATASET_DIR, or absolute); add there:\n{entry}")


def write(setup: TrainingSetup) -> str:
    out: dict[str, Any] = {}
    out.update(to_mapping(setup, KEYS[:1]))
    out["stage"] = STAGES.get(setup.method or Method.SFT, "sft")
    out["do_train"] = True
    out["finetuning_type"] = "lora" if setup.is_lora else "full"
    out.update(to_mapping(setup, KEYS[1:]))
    if setup.lora.target_modules:
        targets = setup.lora.target_modules
        out["lora_target"] = "all" if ALL_LINEAR in targets else ",".join(targets)
    if setup.quantization in ("4bit", "8bit"):
        out["quantization_bit"] = 4 if setup.quantization == "4bit" else 8
    if setup.data.loss_mask is not None:
        out["train_on_prompt"] = setup.data.loss_mask is LossMask.ALL
        out["mask_history"] = setup.data.loss_mask is LossMask.LAST_ASSISTANT
    out.update(training_mapping(setup))
    out.setdefault("bf16", True)
    header = "Run with: llamafactory-cli train THIS_FILE\nWritten by loraplan. Set `template` to your model's."
    if setup.data.path and ("/" in setup.data.path or setup.data.path.endswith(DATA_SUFFIXES)):
        header += "\n" + dataset_info_note(setup.data.path or "")
    if setup.lora.target_parameters:
        header += ("\nWARNING: LLaMA-Factory cannot target stacked MoE expert parameters ("
                   + ", ".join(setup.lora.target_parameters) + "): the experts stay frozen; use PEFT, TRL or Axolotl.")
    return dump_yaml(out, header)


def read(text: str, where: str) -> TrainingSetup:
    fields = Fields(load_yaml_mapping(text, where), where)
    nested = from_mapping(fields, KEYS)
    for path, value in _flatten(training_from(fields)):
        set_path(nested, path, value)
    stage = fields.text("stage")
    nested["method"] = {"sft": Method.SFT, "dpo": Method.DPO, "ppo": Method.RL}.get(stage or "sft")
    finetuning = fields.text("finetuning_type")
    nested["finetuning"] = finetuning or "lora"
    targets = fields.names("lora_target")
    if targets == ("all",):  # LLaMA-Factory's every-linear-layer-but-lm_head
        targets = (ALL_LINEAR,)
    if targets is not None:
        set_path(nested, "lora.target_modules", targets)
        set_path(nested, "lora.unembed", unembed_from_targets(targets))
    bits = fields.integer("quantization_bit")
    if bits in (4, 8):
        nested["quantization"] = f"{bits}bit"
    train_on_prompt = fields.boolean("train_on_prompt")
    mask_history = fields.boolean("mask_history")
    if train_on_prompt:
        set_path(nested, "data.loss_mask", LossMask.ALL)
    elif mask_history:
        set_path(nested, "data.loss_mask", LossMask.LAST_ASSISTANT)
    elif train_on_prompt is False:
        set_path(nested, "data.loss_mask", LossMask.ASSISTANT)
    read_variants(fields, NAME, nested)
    return make_setup(where, nested)


def project(setup: TrainingSetup) -> TrainingSetup:
    projected = project_paths(setup, PATHS)
    updates: dict[str, Any] = {}
    if projected.method is Method.DISTILL:
        updates["method"] = Method.SFT
    if projected.lora.target_modules and ALL_LINEAR in projected.lora.target_modules:  # `all` alone
        updates["lora"] = projected.lora.model_copy(update={"target_modules": (ALL_LINEAR,), "unembed": False})
    if projected.data.loss_mask is LossMask.COMPLETION:  # responses only, as for conversations
        updates["data"] = projected.data.model_copy(update={"loss_mask": LossMask.ASSISTANT})
    return projected.model_copy(update=updates) if updates else projected
