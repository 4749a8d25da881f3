"""Axolotl YAML (`axolotl train FILE`). Field names from axolotl's config schemas.

LoRA: `adapter: lora` (`qlora` with `load_in_4bit`), `lora_r`, `lora_alpha`, `lora_dropout`,
`lora_target_modules`, `lora_target_parameters` (stacked MoE experts), `peft_use_rslora`,
`peft_use_dora`, `peft_init_lora_weights`. Loss mask: a chat_template dataset with
`roles_to_train: [assistant]`, or `train_on_inputs: true` for every token.
"""

from __future__ import annotations

from typing import Any

from loraplan.formats.base import Fields, FormatError, dump_yaml, load_yaml_mapping
from loraplan.formats.flat import (
    Key,
    from_mapping,
    make_setup,
    project_paths,
    set_path,
    to_mapping,
    unembed_from_targets,
)
from loraplan.formats.hf_args import optimizer_from, schedule_from, steps_from, without_steps
from loraplan.setup import LossMask, Method, Schedule, TrainingSetup

ALL_LINEAR = "all-linear"
NAME = "axolotl"
SUFFIX = ".yaml"
KEYS = [
    Key("model", "base_model", "text"),
    Key("lora.rank", "lora_r", "integer"),
    Key("lora.alpha", "lora_alpha", "number"),
    Key("lora.dropout", "lora_dropout", "number"),
    Key("lora.target_modules", "lora_target_modules", "names"),
    Key("lora.target_parameters", "lora_target_parameters", "names"),
    Key("lora.use_rslora", "peft_use_rslora", "boolean"),
    Key("lora.use_dora", "peft_use_dora", "boolean"),
    Key("optim.learning_rate", "learning_rate", "number"),
    Key("optim.warmup_steps", "warmup_steps", "integer"),
    Key("optim.weight_decay", "weight_decay", "number"),
    Key("optim.micro_batch_size", "micro_batch_size", "integer"),
    Key("optim.gradient_accumulation_steps", "gradient_accumulation_steps", "integer"),
    Key("optim.batch_size", "batch_size", "integer"),  # global batch; axolotl derives accumulation from it
    Key("optim.epochs", "num_epochs", "number"),
    Key("optim.max_steps", "max_steps", "integer"),
    Key("optim.max_grad_norm", "max_grad_norm", "number"),
    Key("data.max_length", "sequence_len", "integer"),
    Key("extras.dpo_beta", "rl_beta", "number"),
]
OPTIMIZERS = {"adamw": "adamw_torch_fused"}
RL_NAMES = {Method.DPO: "dpo", Method.RL: "grpo"}
PATHS = [k.path for k in KEYS] + ["method", "finetuning", "quantization", "optim.schedule", "optim.optimizer",
                                  "lora.unembed", "lora.init_lora_weights", "data.path", "data.loss_mask",
                                  "extras.group_size"]


def write(setup: TrainingSetup) -> str:
    out: dict[str, Any] = {}
    out.update(to_mapping(setup, KEYS[:1]))
    if setup.is_lora:
        out["adapter"] = "qlora" if setup.quantization == "4bit" else "lora"
    if setup.quantization == "4bit":
        out["load_in_4bit"] = True
    elif setup.quantization == "8bit":
        out["load_in_8bit"] = True
    out.update(to_mapping(setup, KEYS[1:]))
    _all_linear_as_flag(out)
    if setup.lora.init_lora_weights is not None:
        out["peft_init_lora_weights"] = setup.lora.init_lora_weights
    if setup.optim.schedule is not None:
        out["lr_scheduler"] = setup.optim.schedule.value
    if setup.optim.optimizer is not None:
        out["optimizer"] = OPTIMIZERS.get(setup.optim.optimizer, setup.optim.optimizer)
    if setup.method in RL_NAMES:
        out["rl"] = RL_NAMES[setup.method]
        if setup.extras.group_size is not None:
            out["trl"] = {"num_generations": setup.extras.group_size}
    if setup.data.loss_mask is LossMask.ALL:
        out["train_on_inputs"] = True
    elif setup.data.loss_mask is not None:
        out["train_on_inputs"] = False
    if setup.data.path is not None or setup.data.loss_mask in (LossMask.ASSISTANT, LossMask.LAST_ASSISTANT):
        dataset: dict[str, Any] = {"path": setup.data.path or "DATA.jsonl", "type": "chat_template"}
        if setup.data.loss_mask in (LossMask.ASSISTANT, LossMask.LAST_ASSISTANT):
            dataset["roles_to_train"] = ["assistant"]
            dataset["train_on_eos"] = "last" if setup.data.loss_mask is LossMask.LAST_ASSISTANT else "turn"
        out["datasets"] = [dataset]
    out.setdefault("bf16", "auto")
    return dump_yaml(out, "Run with: axolotl train THIS_FILE\nWritten by loraplan.")


def read(text: str, where: str) -> TrainingSetup:
    fields = Fields(load_yaml_mapping(text, where), where)
    nested = from_mapping(without_steps(fields), KEYS)
    for path, value in steps_from(fields).items():
        set_path(nested, path, value)
    adapter = fields.text("adapter")
    nested["finetuning"] = "lora" if adapter in ("lora", "qlora") else ("full" if adapter is None else adapter)
    if adapter == "qlora" or fields.boolean("load_in_4bit"):
        nested["quantization"] = "4bit"
    elif fields.boolean("load_in_8bit"):
        nested["quantization"] = "8bit"
    init = fields.data.get("peft_init_lora_weights")
    if isinstance(init, bool | str):
        set_path(nested, "lora.init_lora_weights", init)
    schedule = schedule_from(fields.data.get("lr_scheduler"), where)
    if schedule is not None:
        set_path(nested, "optim.schedule", schedule)
    optimizer = optimizer_from(fields.text("optimizer"))
    if optimizer is not None:
        set_path(nested, "optim.optimizer", optimizer)
    rl = fields.text("rl")
    nested["method"] = {"dpo": Method.DPO, "grpo": Method.RL}.get(rl or "", Method.SFT if rl is None else None)
    generations = fields.table("trl").integer("num_generations")
    if generations is not None:
        set_path(nested, "extras.group_size", generations)
    targets = fields.names("lora_target_modules")
    if fields.boolean("lora_target_linear"):  # axolotl adds every linear leaf but the output embedding
        targets = (ALL_LINEAR, *(t for t in targets or () if t != ALL_LINEAR))
        set_path(nested, "lora.target_modules", targets)
    if targets is not None:
        set_path(nested, "lora.unembed", unembed_from_targets(targets))
    _read_datasets(fields, nested)
    return make_setup(where, nested)


def _all_linear_as_flag(out: dict[str, Any]) -> None:
    """Axolotl says "every linear layer" with `lora_target_linear: true`, not with a module name."""
    targets = out.get("lora_target_modules")
    if isinstance(targets, list) and ALL_LINEAR in targets:
        rest = [t for t in targets if t != ALL_LINEAR]
        out["lora_target_modules"] = rest
        if not rest:
            del out["lora_target_modules"]
        out["lora_target_linear"] = True


def _read_datasets(fields: Fields, nested: dict[str, Any]) -> None:
    train_on_inputs = fields.boolean("train_on_inputs")
    datasets = fields.data.get("datasets")
    if datasets is not None and not (isinstance(datasets, list) and all(isinstance(d, dict) for d in datasets)):
        raise FormatError(f"{fields.where}: field `datasets` should be a list of mappings")
    first = Fields(datasets[0], f"{fields.where} [datasets[0]]") if datasets else None
    if first is not None:
        path = first.text("path")
        if path is not None and path != "DATA.jsonl":
            set_path(nested, "data.path", path)
    if train_on_inputs:
        set_path(nested, "data.loss_mask", LossMask.ALL)
    elif first is not None and first.names("roles_to_train") == ("assistant",):
        last = first.text("train_on_eos") == "last"
        set_path(nested, "data.loss_mask", LossMask.LAST_ASSISTANT if last else LossMask.ASSISTANT)
    elif train_on_inputs is False:
        set_path(nested, "data.loss_mask", LossMask.COMPLETION)


def project(setup: TrainingSetup) -> TrainingSetup:
    projected = project_paths(setup, PATHS)
    if projected.method is Method.DISTILL:
        projected = projected.model_copy(update={"method": Method.SFT})
    if projected.optim.schedule is Schedule.OTHER:
        projected = projected.model_copy(update={"optim": projected.optim.model_copy(update={"schedule": None})})
    return projected
