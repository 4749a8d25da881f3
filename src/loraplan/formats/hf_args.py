"""HF TrainingArguments names, shared by TRL, Unsloth (via TRL) and LLaMA-Factory.

Schedules and optimisers use transformers' names; loraplan keeps a canonical value ("adamw",
"linear") and maps it at the edge.
"""

from __future__ import annotations

from typing import Any

from loraplan.formats.flat import Key
from loraplan.setup import Schedule

TRAINING_KEYS = [
    Key("optim.learning_rate", "learning_rate", "number"),
    Key("optim.warmup_steps", "warmup_steps", "integer"),
    Key("optim.weight_decay", "weight_decay", "number"),
    Key("optim.micro_batch_size", "per_device_train_batch_size", "integer"),
    Key("optim.gradient_accumulation_steps", "gradient_accumulation_steps", "integer"),
    Key("optim.epochs", "num_train_epochs", "number"),
    Key("optim.max_steps", "max_steps", "integer"),
    Key("optim.max_grad_norm", "max_grad_norm", "number"),
]
TRAINING_PATHS = [k.path for k in TRAINING_KEYS] + ["optim.schedule", "optim.optimizer"]

SCHEDULE_NAMES = {
    "linear": Schedule.LINEAR, "cosine": Schedule.COSINE, "constant": Schedule.CONSTANT,
    "constant_with_warmup": Schedule.CONSTANT_WITH_WARMUP, "cosine_with_min_lr": Schedule.COSINE,
}
OPTIMIZERS = {"adamw": "adamw_torch"}
OPTIMIZER_FAMILY = {"adamw_torch": "adamw", "adamw_torch_fused": "adamw", "adamw_hf": "adamw",
                    "adamw_8bit": "adamw", "paged_adamw_8bit": "adamw", "paged_adamw_32bit": "adamw"}


def schedule_from(name: Any, where: str) -> Schedule | None:
    from loraplan.formats.base import FormatError

    if name is None:
        return None
    if not isinstance(name, str):
        raise FormatError(f"{where}: field `lr_scheduler_type` should be a schedule name, got {name!r}")
    return SCHEDULE_NAMES.get(name, Schedule.OTHER)


def optimizer_name(canonical: str | None) -> str | None:
    return None if canonical is None else OPTIMIZERS.get(canonical, canonical)


def optimizer_from(name: Any) -> str | None:
    return None if name is None else OPTIMIZER_FAMILY.get(str(name), str(name))


def training_mapping(setup: Any) -> dict[str, Any]:
    """The TrainingArguments part of a setup, with transformers' schedule and optimiser names."""
    from loraplan.formats.flat import to_mapping

    out = to_mapping(setup, TRAINING_KEYS)
    if setup.optim.schedule is not None and setup.optim.schedule is not Schedule.OTHER:
        out["lr_scheduler_type"] = setup.optim.schedule.value
    if setup.optim.optimizer is not None:
        out["optim"] = optimizer_name(setup.optim.optimizer)
    return out


def training_from(fields: Any) -> dict[str, Any]:
    """Nested setup values from a TrainingArguments mapping."""
    from loraplan.formats.flat import from_mapping, set_path

    nested = from_mapping(fields, TRAINING_KEYS)
    schedule = schedule_from(fields.data.get("lr_scheduler_type"), fields.where)
    if schedule is not None:
        set_path(nested, "optim.schedule", schedule)
    optimizer = optimizer_from(fields.text("optim"))
    if optimizer is not None:
        set_path(nested, "optim.optimizer", optimizer)
    return nested
