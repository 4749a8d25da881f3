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


STEP_KEYS = ("max_steps", "warmup_steps")


def steps_from(fields: Any) -> dict[str, Any]:
    """`max_steps` and `warmup_steps` with the meanings transformers gives them (read side only).

    TrainingArguments.max_steps defaults to -1, "not set": any value <= 0 leaves the epochs in charge.
    transformers 5 reads `warmup_steps` below 1 as a ratio of the total steps (get_warmup_steps:
    ceil(total x value)) and a value >= 1 as int(value); `warmup_ratio` (transformers 4, still accepted by
    Axolotl and LLaMA-Factory) is the ratio by name.
    """
    out: dict[str, Any] = {}
    max_steps = fields.number("max_steps")
    if max_steps is not None and max_steps > 0:
        out["optim.max_steps"] = fields.integer("max_steps")
    warmup = fields.number("warmup_steps")
    if warmup is not None:
        if warmup < 0:
            raise fields._fail("warmup_steps", "a number >= 0 (steps, or a ratio below 1)", warmup)
        if 0 < warmup < 1:
            out["optim.warmup_ratio"] = warmup
        else:
            out["optim.warmup_steps"] = int(warmup)
    ratio = fields.number("warmup_ratio")
    if ratio is not None and "optim.warmup_ratio" not in out:
        if not 0 <= ratio <= 1:
            raise fields._fail("warmup_ratio", "a ratio between 0 and 1", ratio)
        out["optim.warmup_ratio"] = ratio
    return out


def without_steps(fields: Any) -> Any:
    """The same fields minus the step keys, which steps_from reads with their trainer meaning."""
    from loraplan.formats.base import Fields

    return Fields({k: v for k, v in fields.data.items() if k not in STEP_KEYS}, fields.where)


def training_from(fields: Any) -> dict[str, Any]:
    """Nested setup values from a TrainingArguments mapping."""
    from loraplan.formats.flat import from_mapping, set_path

    nested = from_mapping(without_steps(fields), TRAINING_KEYS)
    for path, value in steps_from(fields).items():
        set_path(nested, path, value)
    schedule = schedule_from(fields.data.get("lr_scheduler_type"), fields.where)
    if schedule is not None:
        set_path(nested, "optim.schedule", schedule)
    optimizer = optimizer_from(fields.text("optim"))
    if optimizer is not None:
        set_path(nested, "optim.optimizer", optimizer)
    return nested
