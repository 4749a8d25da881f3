"""PEFT: an adapter_config.json that `LoraConfig.from_pretrained` / `LoraConfig(**d)` loads.

Field names from PEFT's LoraConfig (src/peft/tuners/lora/config.py). The unembedding is adapted
by naming `lm_head` in target_modules. A Python snippet is offered as `peft-python`.
"""

from __future__ import annotations

import json
from typing import Any

from loraplan.formats.base import FormatError
from loraplan.formats.flat import Key, from_mapping, make_setup, project_paths, to_mapping, unembed_from_targets
from loraplan.formats.variants import read_variants
from loraplan.setup import TrainingSetup

NAME = "peft"
SUFFIX = ".json"
KEYS = [
    Key("model", "base_model_name_or_path", "text"),
    Key("lora.rank", "r", "integer"),
    Key("lora.alpha", "lora_alpha", "number"),
    Key("lora.dropout", "lora_dropout", "number"),
    Key("lora.target_modules", "target_modules", "names"),
    Key("lora.target_parameters", "target_parameters", "names"),
    Key("lora.use_rslora", "use_rslora", "boolean"),
    Key("lora.use_dora", "use_dora", "boolean"),
]
PATHS = [k.path for k in KEYS] + ["lora.init_lora_weights", "lora.unembed"]


def config_dict(setup: TrainingSetup) -> dict[str, Any]:
    data: dict[str, Any] = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "bias": "none"}
    data.update(to_mapping(setup, KEYS))
    if setup.lora.init_lora_weights is not None:
        data["init_lora_weights"] = setup.lora.init_lora_weights
    return data


def write(setup: TrainingSetup) -> str:
    return json.dumps(config_dict(setup), indent=2, sort_keys=True) + "\n"


def read(text: str, where: str) -> TrainingSetup:
    from loraplan.formats.base import Fields

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{where}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg})") from exc
    except RecursionError as exc:
        raise FormatError(f"{where}: JSON nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise FormatError(f"{where}: unreadable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise FormatError(f"{where}: an adapter_config.json must be a JSON object")
    peft_type = data.get("peft_type")
    if peft_type is not None and str(peft_type).upper() != "LORA":
        raise FormatError(f"{where}: peft_type is {peft_type!r}; loraplan checks LoRA adapters")
    fields = Fields(data, where)
    nested = from_mapping(fields, KEYS)
    init = data.get("init_lora_weights")
    if init is not None:
        if not isinstance(init, bool | str):
            raise FormatError(f"{where}: field `init_lora_weights` should be true/false or a method name")
        nested.setdefault("lora", {})["init_lora_weights"] = init
    targets = fields.names("target_modules")
    if isinstance(data.get("target_modules"), str):  # PEFT: one string is one pattern (a regex), never a list
        targets = (data["target_modules"].strip(),)
        nested.setdefault("lora", {})["target_modules"] = targets
    if targets is not None:
        nested.setdefault("lora", {})["unembed"] = unembed_from_targets(targets)
    read_variants(fields, NAME, nested)
    return make_setup(where, nested)


def project(setup: TrainingSetup) -> TrainingSetup:
    return project_paths(setup, PATHS)


def write_python(setup: TrainingSetup) -> str:
    """A snippet that builds the same LoraConfig and wraps a model with it."""
    kwargs = {k: v for k, v in config_dict(setup).items() if k not in ("peft_type", "base_model_name_or_path")}
    args = ",\n".join(f"    {k}={v!r}" for k, v in kwargs.items())
    model = setup.model or "MODEL"
    return (
        "from peft import LoraConfig, get_peft_model\n"
        "from transformers import AutoModelForCausalLM\n\n"
        f"model = AutoModelForCausalLM.from_pretrained({model!r}, dtype='auto')\n"
        f"config = LoraConfig(\n{args},\n)\n"
        "model = get_peft_model(model, config)\n"
        "model.print_trainable_parameters()\n"
    )
