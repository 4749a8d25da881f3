"""TRL: a YAML file for `trl sft|dpo|grpo --config FILE` (SFTConfig/DPOConfig/GRPOConfig + ModelConfig).

PEFT options are ModelConfig's (`use_peft`, `lora_r`, `lora_alpha`, `lora_target_modules`,
`lora_target_parameters`, ...). The loss mask is `assistant_only_loss` (conversations) or
`completion_only_loss` (prompt/completion). The method is the `trl` subcommand, stated in the
header and recovered from method-specific keys (`beta` for DPO, `num_generations` for GRPO).
"""

from __future__ import annotations

import re
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
from loraplan.setup import LossMask, Method, TrainingSetup

NAME = "trl"
SUFFIX = ".yaml"
SUBCOMMAND = {Method.SFT: "sft", Method.DISTILL: "sft", Method.DPO: "dpo", Method.RL: "grpo"}
MODEL_KEYS = [
    Key("model", "model_name_or_path", "text"),
    Key("data.path", "dataset_name", "text"),
    Key("data.max_length", "max_length", "integer"),
    Key("lora.rank", "lora_r", "integer"),
    Key("lora.alpha", "lora_alpha", "number"),
    Key("lora.dropout", "lora_dropout", "number"),
    Key("lora.target_modules", "lora_target_modules", "names"),
    Key("lora.target_parameters", "lora_target_parameters", "names"),
    Key("lora.use_rslora", "use_rslora", "boolean"),
    Key("lora.use_dora", "use_dora", "boolean"),
    Key("extras.dpo_beta", "beta", "number"),
    Key("extras.group_size", "num_generations", "integer"),
]
PATHS = [k.path for k in MODEL_KEYS] + TRAINING_PATHS + [
    "method", "finetuning", "quantization", "lora.unembed", "data.loss_mask"]


# Keys each TRL config class lacks (checked against SFTConfig / DPOConfig / GRPOConfig fields):
# the loss-mask switches are SFT-only, and GRPO has no max_length.
NOT_IN = {"dpo": {"assistant_only_loss", "completion_only_loss"},
          "grpo": {"assistant_only_loss", "completion_only_loss", "max_length"}}


def mapping(setup: TrainingSetup) -> dict[str, Any]:
    out = _mapping(setup)
    dropped = NOT_IN.get(SUBCOMMAND.get(setup.method or Method.SFT, "sft"), set())
    return {k: v for k, v in out.items() if k not in dropped}


def _mapping(setup: TrainingSetup) -> dict[str, Any]:
    out = to_mapping(setup, MODEL_KEYS[:3])
    out.update(training_mapping(setup))
    if setup.data.loss_mask in (LossMask.ASSISTANT, LossMask.LAST_ASSISTANT):
        out["assistant_only_loss"] = True
    elif setup.data.loss_mask is LossMask.COMPLETION:
        out["completion_only_loss"] = True
    elif setup.data.loss_mask is LossMask.ALL:
        out["completion_only_loss"] = False
    if setup.is_lora:
        out["use_peft"] = True
    out.update(to_mapping(setup, MODEL_KEYS[3:]))
    if setup.quantization == "4bit":
        out["load_in_4bit"] = True
    elif setup.quantization == "8bit":
        out["load_in_8bit"] = True
    out.setdefault("bf16", True)
    return out


def write(setup: TrainingSetup) -> str:
    command = SUBCOMMAND.get(setup.method or Method.SFT, "sft")
    return dump_yaml(mapping(setup), f"Run with: trl {command} --config THIS_FILE\nWritten by loraplan.")


def setup_from_mapping(fields: Fields) -> dict[str, Any]:
    """Nested setup values from a TRL / TrainingArguments mapping (shared with Unsloth)."""
    nested = from_mapping(fields, MODEL_KEYS)
    for path, value in _flatten(training_from(fields)):
        set_path(nested, path, value)
    if fields.boolean("assistant_only_loss"):
        set_path(nested, "data.loss_mask", LossMask.ASSISTANT)
    else:
        completion_only = fields.boolean("completion_only_loss")
        if completion_only is not None:
            set_path(nested, "data.loss_mask", LossMask.COMPLETION if completion_only else LossMask.ALL)
    # ModelConfig.use_peft defaults to False: without it TRL trains every weight, lora_* settings or not.
    nested["finetuning"] = "lora" if fields.boolean("use_peft") else "full"
    if fields.boolean("load_in_4bit"):
        nested["quantization"] = "4bit"
    elif fields.boolean("load_in_8bit"):
        nested["quantization"] = "8bit"
    targets = fields.names("lora_target_modules")
    if targets is not None:
        set_path(nested, "lora.unembed", unembed_from_targets(targets))
    if "num_generations" in fields.data:
        nested["method"] = Method.RL
        nested.get("extras", {}).pop("dpo_beta", None)  # GRPO's `beta` is its KL coefficient (0 by default)
    elif "beta" in fields.data:
        nested["method"] = Method.DPO
    else:
        nested["method"] = Method.SFT
    return nested


def _flatten(nested: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in nested.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            items.extend(_flatten(value, path + "."))
        else:
            items.append((path, value))
    return items


COMMAND = re.compile(r"(^|\s)(trl\s+(sft|dpo|grpo|kto|rloo|reward)\b|\S*(sft|dpo|grpo|kto|rloo|reward)\.py\b|"
                     r"--(use_peft|model_name_or_path|lora_r)\b)")
SCRIPT_METHOD = {"sft": Method.SFT, "dpo": Method.DPO, "grpo": Method.RL, "rloo": Method.RL}


def is_command_line(text: str) -> bool:
    """A `trl sft --use_peft --lora_r ...` (or `python trl/scripts/sft.py ...`) command line, as TRL's guides
    write them, rather than a `--config` YAML file."""
    return bool(COMMAND.search(text)) and "--" in text and not re.search(r"^\s*[\w.-]+\s*:", text, re.M)


def command_arguments(text: str, where: str) -> tuple[dict[str, Any], Method | None]:
    """`--key value` / `--key=value` / `--flag` pairs (TRL's HfArgumentParser syntax) and the method named by
    the subcommand or script. A flag alone is true; several values after one key are a list (nargs="+")."""
    import shlex

    body = " ".join(line for line in text.replace("\\\n", " ").splitlines() if not line.lstrip().startswith("#"))
    try:
        tokens = shlex.split(body)
    except ValueError as exc:
        from loraplan.formats.base import FormatError

        raise FormatError(f"{where}: cannot split the command line ({exc})") from exc
    method = None
    for token in tokens:
        match = re.search(r"(?:^|/)(sft|dpo|grpo|kto|rloo|reward)(?:\.py)?$", token)
        if match and not token.startswith("-"):
            method = SCRIPT_METHOD.get(match.group(1))
            break
    pairs: dict[str, Any] = {}
    key: str | None = None
    for token in tokens:
        if token.startswith("--"):
            key, has_value, value = token[2:].partition("=")
            pairs[key] = value if has_value else True
            key = None if has_value else key
        elif key is not None:
            previous = pairs[key]
            pairs[key] = token if previous is True else ([*previous, token] if isinstance(previous, list)
                                                          else [previous, token])
    return pairs, method


def read(text: str, where: str) -> TrainingSetup:
    if is_command_line(text):
        pairs, method = command_arguments(text, where)
        nested = setup_from_mapping(Fields(pairs, where))
        if method is not None:
            nested["method"] = method
        return make_setup(where, nested)
    return make_setup(where, setup_from_mapping(Fields(load_yaml_mapping(text, where), where)))


def project(setup: TrainingSetup) -> TrainingSetup:
    projected = project_paths(setup, PATHS)
    if projected.method is Method.DISTILL:  # distillation runs as `trl sft`
        projected = projected.model_copy(update={"method": Method.SFT})
    dropped = NOT_IN.get(SUBCOMMAND.get(projected.method or Method.SFT, "sft"), set())
    data_updates = {}
    if "assistant_only_loss" in dropped:
        data_updates["loss_mask"] = None
    if "max_length" in dropped:
        data_updates["max_length"] = None
    if data_updates:
        projected = projected.model_copy(update={"data": projected.data.model_copy(update=data_updates)})
    if projected.data.loss_mask is LossMask.LAST_ASSISTANT:
        projected = projected.model_copy(update={"data": projected.data.model_copy(
            update={"loss_mask": LossMask.ASSISTANT})})
    return projected
