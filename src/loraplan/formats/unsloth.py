"""Unsloth: a complete script (`FastLanguageModel.from_pretrained`, `get_peft_model`, the data through
`datasets.load_dataset`, a TRL config and trainer, `trainer.train()`).

Read back with `ast` (literal arguments only; nothing is executed). The trainer arguments are TRL's,
so they share the TRL format's mapping, less the keys that belong to `trl`'s command line
(ScriptArguments / ModelConfig / the dataset mixture) rather than to SFTConfig.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from loraplan.formats.base import Fields, FormatError
from loraplan.formats.flat import Key, from_mapping, make_setup, project_paths, set_path, unembed_from_targets
from loraplan.formats.trl import PATHS as TRL_PATHS
from loraplan.formats.trl import mapping as trl_mapping
from loraplan.formats.trl import setup_from_mapping
from loraplan.formats.variants import read_variants
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


# TRL / transformers config classes Unsloth scripts pass to their trainers, by method (preference methods such as
# ORPO, KTO and CPO are held to the DPO band; online RL to the RL one). Any *TrainingArguments subclass is SFT.
CONFIG_METHODS = {"SFTConfig": Method.SFT, "DPOConfig": Method.DPO, "ORPOConfig": Method.DPO, "KTOConfig": Method.DPO,
                  "CPOConfig": Method.DPO, "OnlineDPOConfig": Method.DPO, "GRPOConfig": Method.RL,
                  "RLOOConfig": Method.RL, "PPOConfig": Method.RL, "GKDConfig": Method.DISTILL,
                  "DistillationConfig": Method.DISTILL, "RewardConfig": Method.SFT}
LOAD_CALLS = ("from_pretrained",)
UNRESOLVED_PATHS = {"r": "lora.rank", "lora_alpha": "lora.alpha", "lora_dropout": "lora.dropout",
                    "target_modules": "lora.target_modules", "target_parameters": "lora.target_parameters",
                    "use_rslora": "lora.use_rslora", "model_name": "model", "max_seq_length": "data.max_length"}


@dataclass(frozen=True)
class ScriptRead:
    """What a script says: the setup, values written as expressions (path -> source), the config class used."""

    setup: TrainingSetup
    unresolved: dict[str, str]
    config_class: str | None


def is_config_class(name: str) -> bool:
    return name in CONFIG_METHODS or name.endswith("TrainingArguments")


def read(text: str, where: str) -> TrainingSetup:
    return read_script(text, where).setup


def read_script(text: str, where: str) -> ScriptRead:
    """Read an Unsloth script: the config the trainer is given, names bound by literal assignment resolved."""
    from loraplan.formats import python_script as py

    tree = py.parse(text, where)
    env = py.literal_names(tree)
    all_calls = py.calls(tree)
    peft_call = next((c for c in all_calls if py.call_name(c) == "get_peft_model"), None)
    loads = [c for c in all_calls if py.call_name(c) in LOAD_CALLS and _is_model_load(c)]
    load_call = next((c for c in reversed(loads) if peft_call is None or c.lineno <= peft_call.lineno),
                     loads[0] if loads else None)
    data_call = next((c for c in all_calls if py.call_name(c) == "load_dataset"), None)
    data_path = _data_path(data_call) if data_call is not None else None
    if peft_call is None and load_call is None:
        raise FormatError(f"{where}: no FastLanguageModel.from_pretrained / get_peft_model call found")
    config_call = _trainer_config(tree, all_calls)
    unresolved: dict[str, str] = {}
    config_name = py.call_name(config_call) if config_call is not None else None
    nested: dict[str, Any] = {}
    if config_call is not None:
        values = py.keyword_values(config_call, env)
        nested = setup_from_mapping(Fields(_known(values, unresolved, _config_path), where))
    nested["method"] = CONFIG_METHODS.get(config_name or "", Method.SFT)
    peft_values = py.keyword_values(peft_call, env) if peft_call is not None else {}
    peft = Fields(_known(peft_values, unresolved, UNRESOLVED_PATHS.get), where)
    for path, value in from_mapping(peft, PEFT_KEYS).get("lora", {}).items():
        set_path(nested, f"lora.{path}", value)
    init = peft.data.get("init_lora_weights")
    if isinstance(init, bool | str):
        set_path(nested, "lora.init_lora_weights", init)
    targets = peft.names("target_modules")
    if targets is not None:
        set_path(nested, "lora.unembed", unembed_from_targets(targets))
    read_variants(peft, NAME, nested)
    load_values = py.keyword_values(load_call, env) if load_call is not None else {}
    if load_call is not None and load_call.args and "model_name" not in load_values:  # from_pretrained(model_name)
        load_values["model_name"] = py.evaluate(load_call.args[0], env)
    load = Fields(_known(load_values, unresolved, UNRESOLVED_PATHS.get), where)
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
    nested["finetuning"] = "lora" if peft_call is not None else "full"
    return ScriptRead(make_setup(where, nested), unresolved, config_name)


def _is_model_load(call: ast.Call) -> bool:
    """FastLanguageModel / FastModel / FastVisionModel .from_pretrained, not a tokenizer's."""
    func = call.func
    owner = func.value if isinstance(func, ast.Attribute) else None
    return isinstance(owner, ast.Name) and owner.id.startswith("Fast")


def _trainer_config(tree: ast.Module, all_calls: list[ast.Call]) -> ast.Call | None:
    """The config the (last) trainer is given as `args=`, a call or a name bound to one; else the first config."""
    from loraplan.formats import python_script as py

    for call in reversed([c for c in all_calls if py.call_name(c).endswith("Trainer")]):
        args = next((k.value for k in call.keywords if k.arg == "args"), None)
        if isinstance(args, ast.Call) and is_config_class(py.call_name(args)):
            return args
        if isinstance(args, ast.Name):
            bound = py.assigned_call(tree, args.id, call.lineno)
            if bound is not None and is_config_class(py.call_name(bound)):
                return bound
    return next((c for c in all_calls if is_config_class(py.call_name(c))), None)


def _config_path(key: str) -> str | None:
    from loraplan.formats.hf_args import TRAINING_KEYS
    from loraplan.formats.trl import MODEL_KEYS

    extra = {"lr_scheduler_type": "optim.schedule", "optim": "optim.optimizer"}
    return next((k.path for k in MODEL_KEYS + TRAINING_KEYS if k.key == key), extra.get(key))


def _known(values: dict[str, Any], unresolved: dict[str, str], path_of: Any) -> dict[str, Any]:
    """The values that could be evaluated; the others are recorded in `unresolved` under their setup path."""
    from loraplan.formats.python_script import Unresolved

    known: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Unresolved):
            path = path_of(key)
            if path is not None:
                unresolved[path] = f"{key} = {value.source}"
        else:
            known[key] = value
    return known


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
