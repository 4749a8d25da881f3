"""A TrainingSetup path in the config's own words (`optim.learning_rate` -> `optimizer.lr` in torchtune).

Built from the format modules' own key tables, so a finding names exactly the key the reader read;
a few keys that the readers handle by hand are listed here.
"""

from __future__ import annotations

import re

from loraplan.formats import axolotl, llamafactory, peft, tinker, trl, unsloth
from loraplan.formats.flat import Key
from loraplan.formats.hf_args import TRAINING_KEYS

_TABLES: dict[str, list[Key]] = {
    "peft": peft.KEYS,
    "trl": trl.MODEL_KEYS + TRAINING_KEYS,
    "axolotl": axolotl.KEYS,
    "llamafactory": llamafactory.KEYS + TRAINING_KEYS,
    "unsloth": unsloth.PEFT_KEYS + TRAINING_KEYS,
    "tinker": tinker.KEYS,
}
_EXTRA: dict[str, dict[str, str]] = {
    "peft": {"lora.init_lora_weights": "init_lora_weights"},
    "trl": {"optim.schedule": "lr_scheduler_type", "finetuning": "use_peft"},
    "axolotl": {"optim.schedule": "lr_scheduler", "lora.init_lora_weights": "peft_init_lora_weights",
                "finetuning": "adapter"},
    "llamafactory": {"lora.target_modules": "lora_target", "optim.schedule": "lr_scheduler_type",
                     "finetuning": "finetuning_type"},
    "unsloth": {"optim.schedule": "lr_scheduler_type", "lora.init_lora_weights": "init_lora_weights"},
    "tinker": {"optim.schedule": "lr_schedule", "lora.target_modules": "(Tinker adapts every weight matrix)"},
    "torchtune": {"lora.rank": "model.lora_rank", "lora.alpha": "model.lora_alpha",
                  "lora.dropout": "model.lora_dropout", "lora.use_dora": "model.use_dora",
                  "lora.target_modules": "model.lora_attn_modules",
                  "lora.unembed": "model.apply_lora_to_output", "optim.learning_rate": "optimizer.lr",
                  "optim.weight_decay": "optimizer.weight_decay", "optim.micro_batch_size": "batch_size",
                  "optim.gradient_accumulation_steps": "gradient_accumulation_steps", "optim.epochs": "epochs",
                  "optim.schedule": "lr_scheduler", "optim.warmup_steps": "lr_scheduler.num_warmup_steps",
                  "optim.max_grad_norm": "clip_grad_norm", "model": "hf_model_id",
                  "data.max_length": "tokenizer.max_seq_len"},
}


def key_for(fmt: str | None, path: str) -> str:
    """The config key that holds `path` in format `fmt` (the path itself when the format has none)."""
    if fmt is None:
        return path
    extra = _EXTRA.get(fmt, {})
    if path in extra:
        return extra[path]
    if path == "lora.unembed":
        return f"lm_head in {key_for(fmt, 'lora.target_modules')}"
    for spec in _TABLES.get(fmt, []):
        if spec.path == path:
            return spec.key
    return path


def line_of(text: str, fmt: str | None, key: str) -> int | None:
    """1-based line where `key` is set in the file, for SARIF locations; None when not found."""
    leaf = key.rsplit(".", 1)[-1].split(" ")[0]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", leaf):
        return None
    patterns = {
        "peft": rf'^\s*"{leaf}"\s*:',
        "tinker": rf"(^|\s){leaf}=",
        "unsloth": rf"(^|[\s(,]){leaf}\s*=",
    }
    pattern = re.compile(patterns.get(fmt or "", rf"^\s*{leaf}\s*:"))
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.search(line):
            return number
    return None
