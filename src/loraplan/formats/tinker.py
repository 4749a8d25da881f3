"""tinker-cookbook recipe command lines (`python -m tinker_cookbook.recipes...train key=value ...`).

Argument names from the recipes' CLIConfig classes (chat_sl: model_name, dataset, learning_rate,
lr_schedule, num_epochs, lora_rank, max_length, batch_size, max_steps; math_rl: group_size,
groups_per_batch; preference dpo: dpo_beta). Tinker fixes alpha at 32 and adapts every weight
matrix, so neither is stated.
"""

from __future__ import annotations

import shlex
from typing import Any

from loraplan.formats.base import Fields, FormatError
from loraplan.formats.flat import Key, from_mapping, make_setup, project_paths, set_path
from loraplan.setup import Method, Schedule, TrainingSetup

NAME = "tinker"
SUFFIX = ".sh"
RECIPES = {
    Method.SFT: "tinker_cookbook.recipes.chat_sl.train",
    Method.DISTILL: "tinker_cookbook.recipes.chat_sl.train",
    Method.RL: "tinker_cookbook.recipes.math_rl.train",
    Method.DPO: "tinker_cookbook.recipes.preference.dpo.train",
}
KEYS = [
    Key("model", "model_name", "text"),
    Key("data.path", "dataset", "text"),
    Key("optim.learning_rate", "learning_rate", "number"),
    Key("optim.epochs", "num_epochs", "integer"),
    Key("lora.rank", "lora_rank", "integer"),
    Key("data.max_length", "max_length", "integer"),
    Key("optim.batch_size", "batch_size", "integer"),
    Key("optim.max_steps", "max_steps", "integer"),
    Key("extras.group_size", "group_size", "integer"),
    Key("extras.groups_per_batch", "groups_per_batch", "integer"),
    Key("extras.dpo_beta", "dpo_beta", "number"),
]
SCHEDULES = {"linear": Schedule.LINEAR, "cosine": Schedule.COSINE, "constant": Schedule.CONSTANT}
PATHS = [k.path for k in KEYS] + ["method", "optim.schedule"]


def _values(setup: TrainingSetup) -> dict[str, Any]:
    values: dict[str, Any] = {}
    batch = setup.optim.effective_batch_size
    for key in KEYS:
        value = batch if key.path == "optim.batch_size" else _get(setup, key.path)
        if value is not None:
            values[key.key] = int(value) if key.kind == "integer" else value
    if setup.optim.schedule in SCHEDULES.values():
        values["lr_schedule"] = setup.optim.schedule.value
    return values


def _get(setup: TrainingSetup, path: str) -> Any:
    from loraplan.formats.flat import get_path

    return get_path(setup, path)


def write(setup: TrainingSetup) -> str:
    recipe = RECIPES[setup.method or Method.SFT]
    args = " \\\n    ".join(f"{k}={shlex.quote(str(v))}" for k, v in _values(setup).items())
    header = "# Written by loraplan. Tinker fixes alpha = 32 and adapts every weight matrix.\n"
    return f"{header}python -m {recipe} \\\n    {args}\n"


def read(text: str, where: str) -> TrainingSetup:
    body = " ".join(line for line in text.replace("\\\n", " ").splitlines() if not line.lstrip().startswith("#"))
    try:
        tokens = shlex.split(body)
    except ValueError as exc:
        raise FormatError(f"{where}: cannot split the command line ({exc})") from exc
    recipe = next((t for t in tokens if t.startswith("tinker_cookbook.")), None)
    pairs: dict[str, Any] = {}
    for token in tokens:
        if "=" in token and not token.startswith("-"):
            key, _, value = token.partition("=")
            pairs[key] = value
    if recipe is None and not pairs:
        raise FormatError(f"{where}: no tinker_cookbook recipe or key=value arguments found")
    nested = from_mapping(Fields(pairs, where), KEYS)
    method = next((m for m, r in RECIPES.items() if r == recipe and m is not Method.DISTILL), None)
    nested["method"] = method
    schedule = pairs.get("lr_schedule")
    if schedule is not None:
        set_path(nested, "optim.schedule", SCHEDULES.get(schedule, Schedule.OTHER))
    return make_setup(where, nested)


def project(setup: TrainingSetup) -> TrainingSetup:
    batch = setup.optim.effective_batch_size
    setup = setup.model_copy(update={"optim": setup.optim.model_copy(update={"batch_size": batch})})
    projected = project_paths(setup, PATHS)
    updates: dict[str, Any] = {}
    if projected.method is Method.DISTILL:
        updates["method"] = Method.SFT
    if projected.optim.epochs is not None:
        updates["optim"] = projected.optim.model_copy(update={"epochs": float(int(projected.optim.epochs))})
    return projected.model_copy(update=updates) if updates else projected
