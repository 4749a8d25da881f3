"""Unsloth: a complete script (`FastLanguageModel.from_pretrained`, `get_peft_model`, the data through
`datasets.load_dataset`, a TRL config and trainer, `trainer.train()`).

Read back with `ast` (literal arguments only; nothing is executed). The trainer arguments are TRL's,
so they share the TRL format's mapping, less the keys that belong to `trl`'s command line
(ScriptArguments / ModelConfig / the dataset mixture) rather than to SFTConfig.
"""

from __future__ import annotations

import ast
from typing import Any

from loraplan.formats.base import Fields, FormatError
from loraplan.formats.flat import Key, from_mapping, make_setup, project_paths, set_path, unembed_from_targets
from loraplan.formats.trl import PATHS as TRL_PATHS
from loraplan.formats.trl import mapping as trl_mapping
from loraplan.formats.trl import setup_from_mapping
from loraplan.setup import Method, TrainingSetup

NAME = "unsloth"
SUFFIX = ".py"
PEFT_KEYS = [
    Key("lora.rank", "r", "integer"),
    Key("lora.alpha", "lora_alpha", "number"),
    Key("lora.dropout", "lora_dropout", "number"),
    Key("lora.target_modules", "target_modules", "names"),
    Key("lora.target_parameters", "target_parameters", "names"),
    Key("lora.use_rslora", "use_rslora", "boolean"),
]
CONFIG_CLASS = {Method.DPO: "DPOConfig", Method.RL: "GRPOConfig"}
TRAINER_CLASS = {Method.DPO: "DPOTrainer", Method.RL: "GRPOTrainer"}
TRL_ONLY = {"model_name_or_path", "max_length", "use_peft", "lora_r", "lora_alpha", "lora_dropout",
            "lora_target_modules", "lora_target_parameters", "use_rslora", "use_dora", "load_in_4bit", "load_in_8bit",
            "dataset_name", "datasets"}
PATHS = [p for p in TRL_PATHS if p not in ("lora.use_dora",)] + ["lora.init_lora_weights"]


def _call(name: str, kwargs: dict[str, Any], target: str | None = None) -> str:
    args = "".join(f"    {k}={v!r},\n" for k, v in kwargs.items())
    prefix = f"{target} = " if target else ""
    return f"{prefix}{name}(\n{args})\n"


def _as_sft(setup: TrainingSetup) -> TrainingSetup:
    """Unsloth has no teacher: a distillation plan is written (and read back) as its SFT half."""
    if setup.method is not Method.DISTILL:
        return setup
    return setup.model_copy(update={"method": Method.SFT,
                                    "extras": setup.extras.model_copy(update={"teacher": None})})


def write(setup: TrainingSetup) -> str:
    setup = _as_sft(setup)
    trl = trl_mapping(setup)
    load: dict[str, Any] = {"model_name": setup.model or "MODEL", "max_seq_length": setup.data.max_length or 2048,
                            "load_in_4bit": setup.quantization == "4bit", "load_in_8bit": setup.quantization == "8bit"}
    peft: dict[str, Any] = {"model": "MODEL_OBJECT"}
    for key in PEFT_KEYS:
        value = trl.get({"r": "lora_r"}.get(key.key, f"lora_{key.key}" if key.key.startswith("target") else key.key))
        if value is not None:
            peft[key.key] = value
    peft.update({"bias": "none", "use_gradient_checkpointing": "unsloth", "random_state": 3407})
    if setup.lora.init_lora_weights is not None:
        peft["init_lora_weights"] = setup.lora.init_lora_weights
    config_kwargs = {"output_dir": "outputs", **{k: v for k, v in trl.items() if k not in TRL_ONLY}}
    config = CONFIG_CLASS.get(setup.method or Method.SFT, "SFTConfig")
    trainer = TRAINER_CLASS.get(setup.method or Method.SFT, "SFTTrainer")
    peft_call = _call("FastLanguageModel.get_peft_model", peft, "model").replace("'MODEL_OBJECT'", "model")
    trainer_kwargs = "    model=model,\n    processing_class=tokenizer,\n    train_dataset=dataset,\n    args=args,\n"
    rewards = ""
    if trainer == "GRPOTrainer":
        rewards = ("\n# GRPO needs your reward functions: fn(prompts, completions, **kwargs) -> list[float]\n"
                   "reward_funcs = []\n")
        trainer_kwargs += "    reward_funcs=reward_funcs,\n"
    return ("# Written by loraplan. Run with: python THIS_FILE\n"
            "from unsloth import FastLanguageModel  # first: Unsloth patches transformers and TRL on import\n"
            "from datasets import load_dataset\n"
            f"from trl import {config}, {trainer}\n\n"
            + _call("FastLanguageModel.from_pretrained", load, "model, tokenizer") + "\n" + peft_call + "\n"
            + _load_data(setup.data.path) + "\n" + _call(config, config_kwargs, "args") + rewards + "\n"
            + f"trainer = {trainer}(\n{trainer_kwargs})\ntrainer.train()\n")


def _load_data(path: str | None) -> str:
    """`load_dataset` for a local file (its builder and data_files) or a hub id."""
    from loraplan.formats.trl import local_builder

    if not path:
        return "dataset = load_dataset('DATASET', split='train')  # your data set\n"
    files = [p for p in path.split(",") if p]
    builders = {local_builder(p) for p in files}
    if len(builders) == 1 and None not in builders:
        data_files = files[0] if len(files) == 1 else files
        return f"dataset = load_dataset({builders.pop()!r}, data_files={data_files!r}, split='train')\n"
    return f"dataset = load_dataset({path!r}, split='train')\n"


def literal_kwargs(call: ast.Call, unreadable: Any = None) -> dict[str, Any]:
    """The keyword arguments of `call` that are literals; others (variables, expressions) are skipped,
    or mapped to `unreadable` when one is given (so `--fix` knows the key is there)."""
    out: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            continue
        try:
            out[keyword.arg] = ast.literal_eval(keyword.value)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            if unreadable is not None:
                out[keyword.arg] = unreadable
    return out


def read(text: str, where: str) -> TrainingSetup:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError) as exc:
        line = getattr(exc, "lineno", None)
        raise FormatError(f"{where}{f':{line}' if line else ''}: not valid Python ({exc})") from exc
    calls: dict[str, dict[str, Any]] = {}
    data_path: str | None = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            calls.setdefault(name, literal_kwargs(node))
            if name == "load_dataset" and data_path is None:
                data_path = _data_path(node)
    if "get_peft_model" not in calls and "from_pretrained" not in calls:
        raise FormatError(f"{where}: no FastLanguageModel.from_pretrained / get_peft_model call found")
    config_name = next((n for n in ("SFTConfig", "DPOConfig", "GRPOConfig", "TrainingArguments") if n in calls), None)
    nested = setup_from_mapping(Fields(calls.get(config_name or "", {}), where)) if config_name else {}
    nested["method"] = {"DPOConfig": Method.DPO, "GRPOConfig": Method.RL}.get(config_name or "", Method.SFT)
    load = Fields(calls.get("from_pretrained", {}), where)
    peft = Fields(calls.get("get_peft_model", {}), where)
    for path, value in from_mapping(peft, PEFT_KEYS).get("lora", {}).items():
        set_path(nested, f"lora.{path}", value)
    init = peft.data.get("init_lora_weights")
    if isinstance(init, bool | str):
        set_path(nested, "lora.init_lora_weights", init)
    targets = peft.names("target_modules")
    if targets is not None:
        set_path(nested, "lora.unembed", unembed_from_targets(targets))
    if data_path is not None:
        set_path(nested, "data.path", data_path)
    model = load.text("model_name")
    if model is not None and model != "MODEL":
        nested["model"] = model
    max_length = load.integer("max_seq_length")
    if max_length is not None:
        set_path(nested, "data.max_length", max_length)
    nested["quantization"] = "4bit" if load.boolean("load_in_4bit") else ("8bit" if load.boolean("load_in_8bit")
                                                                          else None)
    nested["finetuning"] = "lora" if "get_peft_model" in calls else "full"
    return make_setup(where, nested)


def _data_path(call: ast.Call) -> str | None:
    """The data a `load_dataset(...)` call reads: its data_files for a builder, else its first argument."""
    kwargs = literal_kwargs(call)
    files = kwargs.get("data_files")
    if isinstance(files, str):
        return files
    if isinstance(files, list) and files and all(isinstance(f, str) for f in files):
        return ",".join(files)
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return None if call.args[0].value == "DATASET" else call.args[0].value
    return None


def project(setup: TrainingSetup) -> TrainingSetup:
    from loraplan.formats.trl import project as trl_project

    setup = _as_sft(setup)
    projected = trl_project(setup)  # the trainer half is TRL's; the model half carries two more fields
    projected = projected.model_copy(update={
        "lora": projected.lora.model_copy(update={"init_lora_weights": setup.lora.init_lora_weights}),
        "data": projected.data.model_copy(update={"max_length": setup.data.max_length}),
    })
    return project_paths(projected, PATHS)
