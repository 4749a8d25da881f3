"""PEFT as Python: `LoraConfig(...)` + `get_peft_model`, the snippet `plan --format peft-python` writes.

Read back with `ast` (literal keyword arguments of `LoraConfig`, the model of `from_pretrained`);
nothing is executed. It says what an adapter_config.json says, and the model it loads.
"""

from __future__ import annotations

import ast
import json

from loraplan.formats import peft
from loraplan.formats.base import FormatError
from loraplan.setup import TrainingSetup

NAME = "peft-python"
SUFFIX = ".py"
write = peft.write_python


def is_peft_python(text: str) -> bool:
    """A script that builds a LoraConfig and does not load through Unsloth."""
    return "LoraConfig(" in text and "FastLanguageModel" not in text


def read(text: str, where: str) -> TrainingSetup:
    from loraplan.formats.python_script import parse
    from loraplan.formats.unsloth import literal_kwargs

    tree = parse(text, where)
    config: dict[str, object] | None = None
    model: str | None = None
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name == "LoraConfig" and config is None:
            config = literal_kwargs(node)
        elif name == "from_pretrained" and model is None and node.args and isinstance(node.args[0], ast.Constant):
            model = node.args[0].value if isinstance(node.args[0].value, str) else None
    if config is None:
        raise FormatError(f"{where}: no LoraConfig(...) call found")
    if model is not None and model != "MODEL":
        config["base_model_name_or_path"] = model
    return peft.read(json.dumps(config), where)


def project(setup: TrainingSetup) -> TrainingSetup:
    return peft.project(setup)
