"""Which key of a trainer config holds each TrainingSetup path (`optim.learning_rate` -> `optimizer.lr` in
torchtune), and which top-level keys a reader knows at all.

Built from the format modules' own key tables, so a finding names exactly the key the reader read;
a few keys that the readers handle by hand are listed here. The known keys also catch typos: a key
one or two letters away from one the reader knows (`lerning_rate`) is an error, not a silent default.
"""

from __future__ import annotations

from loraplan.formats import axolotl, llamafactory, peft, tinker, trl, unsloth
from loraplan.formats.flat import Key
from loraplan.formats.hf_args import TRAINING_KEYS

KEY_TABLES: dict[str, list[Key]] = {
    "peft": peft.KEYS,
    "trl": trl.MODEL_KEYS + TRAINING_KEYS,
    "axolotl": axolotl.KEYS,
    "llamafactory": llamafactory.KEYS + TRAINING_KEYS,
    "unsloth": unsloth.PEFT_KEYS + TRAINING_KEYS,
    "tinker": tinker.KEYS,
}
HAND_READ: dict[str, dict[str, str]] = {
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
    extra = HAND_READ.get(fmt, {})
    if path in extra:
        return extra[path]
    if path == "lora.unembed":
        return f"lm_head in {key_for(fmt, 'lora.target_modules')}"
    for spec in KEY_TABLES.get(fmt, []):
        if spec.path == path:
            return spec.key
    return path


# Keys the readers read outside the tables (detection markers, method and model switches).
READ_ALSO: dict[str, frozenset[str]] = {
    "peft": frozenset({"peft_type", "base_model_name_or_path", "init_lora_weights", "target_modules"}),
    "trl": frozenset({"use_peft", "model_name_or_path", "assistant_only_loss", "completion_only_loss", "load_in_4bit",
                      "load_in_8bit", "beta", "num_generations"}),
    "axolotl": frozenset({"base_model", "adapter", "lora_target_linear", "load_in_4bit", "load_in_8bit", "rl",
                          "train_on_inputs", "sequence_len"}),
    "llamafactory": frozenset({"model_name_or_path", "stage", "finetuning_type", "lora_target", "quantization_bit",
                               "train_on_prompt", "mask_history", "cutoff_len", "pref_beta"}),
}


def known_keys(fmt: str) -> frozenset[str]:
    """Top-level keys format `fmt` reads: the tables, the hand-read keys and READ_ALSO."""
    keys = {spec.key for spec in KEY_TABLES.get(fmt, [])}
    keys |= {key.split(".")[0] for key in HAND_READ.get(fmt, {}).values() if " " not in key}
    return frozenset(keys | READ_ALSO.get(fmt, frozenset()))


def typo_of(key: str, known: frozenset[str]) -> str | None:
    """The known key that `key` misspells (one or two edits, or only case), or None."""
    if key in known or len(key) < 5:
        return None
    best = min(known, key=lambda k: (_distance(key.lower(), k), k), default=None)
    if best is None:
        return None
    return best if _distance(key.lower(), best) <= (1 if len(best) < 8 else 2) else None


def _distance(a: str, b: str) -> int:
    """Levenshtein distance, row by row."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]
