"""Which trainer a config file is for, from its name and the keys it sets.

Each trainer has keys no other trainer uses (Axolotl's `base_model`, `micro_batch_size`;
LLaMA-Factory's `finetuning_type`, `cutoff_len`; torchtune's `_component_` mappings; PEFT's
`peft_type`; TRL's `use_peft`, `dataset_name`). Detection counts those; shared keys such as
`learning_rate` decide nothing. A file that names no trainer is refused with the list of
formats to pass to `--format`, never guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loraplan.formats.base import FormatError, load_yaml_mapping, read_config_text
from loraplan.setup import TrainingSetup

# Keys only one trainer's YAML uses (checked against each trainer's config schema, see the format modules).
AXOLOTL = {"base_model", "adapter", "micro_batch_size", "sequence_len", "lora_target_linear", "num_epochs",
           "lr_scheduler", "sample_packing", "val_set_size", "peft_use_rslora", "peft_use_dora", "lora_model_dir",
           "train_on_inputs", "datasets"}
LLAMAFACTORY = {"finetuning_type", "stage", "lora_target", "cutoff_len", "template", "lora_rank", "quantization_bit",
                "pref_beta", "do_train", "dataset_dir", "additional_target", "train_on_prompt", "mask_history"}
TRL = {"use_peft", "dataset_name", "assistant_only_loss", "completion_only_loss", "num_generations", "max_length"}
HF_ARGS = {"model_name_or_path", "per_device_train_batch_size", "num_train_epochs", "lr_scheduler_type"}
LORA_ARGS = {"lora_r", "lora_target_modules"}  # Axolotl and TRL's ModelConfig share these names
MARKERS: dict[str, frozenset[str]] = {
    "axolotl": frozenset(AXOLOTL | LORA_ARGS),
    "llamafactory": frozenset(LLAMAFACTORY),
    "torchtune": frozenset({"hf_model_id", "checkpointer", "clip_grad_norm", "recipe"}),
    "trl": frozenset(TRL | LORA_ARGS),
}
# A few keys are shared by two trainers; these say which one when both count the same.
PREFERENCE = ("torchtune", "axolotl", "llamafactory", "trl")
PEFT_KEYS = frozenset({"peft_type", "r", "lora_alpha", "target_modules", "base_model_name_or_path"})


@dataclass(frozen=True)
class Detected:
    """A read config: the setup, the format it was read as, and the text (for --fix and locations)."""

    setup: TrainingSetup
    format: str
    text: str
    path: Path


def detect_format(text: str, name: str = "") -> str:
    """The format name for `text` (file `name`), or FormatError saying to pass --format."""
    suffix = Path(name).suffix.lower()
    stripped = text.lstrip()
    if suffix == ".py":
        return "unsloth"
    from loraplan.formats.trl import is_command_line

    if "tinker_cookbook" not in text and is_command_line(text):
        return "trl"
    if suffix == ".sh" or "tinker_cookbook" in text:
        return "tinker"
    if stripped.startswith("{"):
        data = _json_object(text, name)
        if data is not None and ("peft_type" in data or {"r", "target_modules"} <= data.keys()):
            return "peft"
    try:
        mapping = load_yaml_mapping(text, name or "config")
    except FormatError:
        if suffix in (".yaml", ".yml", ".json") or "=" not in text:
            raise  # the YAML/JSON message (with its line) is the useful one
        return "tinker"  # key=value arguments without the recipe module
    if "peft_type" in mapping:
        return "peft"
    if _has_component(mapping):
        return "torchtune"
    scores = {fmt: len(markers & mapping.keys()) for fmt, markers in MARKERS.items()}
    best = max(scores.values())
    if best == 0:
        if (HF_ARGS | {"learning_rate"}) & mapping.keys():
            return "trl"  # plain transformers TrainingArguments, shared by TRL and LLaMA-Factory: TRL reads them
        if PEFT_KEYS & mapping.keys():
            return "peft"
        raise FormatError(f"{name or 'config'}: cannot tell which trainer this config is for (no key of "
                          f"Axolotl, LLaMA-Factory, torchtune, TRL or PEFT); pass --format")
    return next(fmt for fmt in PREFERENCE if scores[fmt] == best)


def _json_object(text: str, name: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _has_component(mapping: dict[str, Any]) -> bool:
    """torchtune builds every object from a `_component_` dotted path."""
    return any(isinstance(v, dict) and "_component_" in v for v in mapping.values())


def read_config(path: str | Path, fmt: str | None = None) -> Detected:
    """Read a trainer config file (bounded), detect its format unless given, and parse it."""
    from loraplan.formats import get_format

    file = Path(path)
    text = read_config_text(file)
    if not text.strip():
        raise FormatError(f"{file}: the file is empty")
    name = fmt or detect_format(text, file.name)
    module = get_format(name)
    setup = module.read(text, str(file))
    _refuse_typos(text, name, file)
    return Detected(setup, name, text, file)


def _refuse_typos(text: str, fmt: str, file: Path) -> None:
    """A misspelled setting (`lerning_rate`) would leave the trainer on its default: say so and stop."""
    from loraplan.formats.keys import known_keys, typo_of

    if fmt not in ("peft", "trl", "axolotl", "llamafactory"):
        return
    from loraplan.formats.trl import command_arguments, is_command_line

    data = _json_object(text, str(file)) if text.lstrip().startswith("{") else None
    if fmt == "trl" and is_command_line(text):
        data = command_arguments(text, str(file))[0]
    mapping = data if data is not None else load_yaml_mapping(text, str(file))
    known = known_keys(fmt)
    for key in mapping:
        meant = typo_of(str(key), known)
        if meant is not None:
            number = next((n for n, line in enumerate(text.splitlines(), 1) if str(key) in line), None)
            where = f"{file}:{number}" if number else str(file)
            raise FormatError(f"{where}: `{key}` is not a {fmt} setting; did you mean `{meant}`? (the trainer "
                              "would ignore it or refuse the file)")
