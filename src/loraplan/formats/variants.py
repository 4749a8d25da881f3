"""Read side only: the LoRA-variant keys each trainer accepts, so `check` can report them.

The doctrine's rules were measured on plain LoRA. Keys that train more than the adapter (`modules_to_save` with
lm_head trains the unembedding fully), change B's learning rate (LoRA+, `loraplus_lr_ratio`) or change the
method (PiSSA, DoRA's magnitude, QA-LoRA, BD-LoRA, ...) are read into LoraSpec and reported, never dropped.
"""

from __future__ import annotations

from typing import Any

from loraplan.formats.base import Fields
from loraplan.formats.flat import set_path

# Per format: the key that lists modules trained fully, and the LoRA+ ratio key.
MODULES_TO_SAVE = {"peft": "modules_to_save", "trl": "lora_modules_to_save", "axolotl": "lora_modules_to_save",
                   "llamafactory": "additional_target", "unsloth": "modules_to_save"}
LORAPLUS = {"axolotl": "loraplus_lr_ratio", "llamafactory": "loraplus_lr_ratio", "unsloth": "loraplus_lr_ratio"}
# Switches that make it another method than plain LoRA (PEFT LoraConfig fields, LLaMA-Factory FinetuningArguments,
# Axolotl's schema); DoRA, rsLoRA and init_lora_weights have their own LoraSpec fields.
VARIANT_SWITCHES = {
    "peft": ("use_qalora", "use_bdlora", "lora_bias", "use_kasa", "alora_invocation_tokens", "lora_ga_config",
             "eva_config", "corda_config", "arrow_config"),
    "llamafactory": ("use_adapter_ensemble", "create_new_adapter"),
    "axolotl": ("relora", "lora_on_cpu"),
}


def read_variants(fields: Fields, fmt: str, nested: dict[str, Any]) -> None:
    """Put modules_to_save, the LoRA+ ratio and any variant switch of `fields` into `nested` (setup paths)."""
    key = MODULES_TO_SAVE.get(fmt)
    saved = fields.names(key) if key else None
    if saved:
        set_path(nested, "lora.modules_to_save", saved)
    ratio_key = LORAPLUS.get(fmt)
    ratio = fields.number(ratio_key) if ratio_key else None
    if ratio:
        set_path(nested, "lora.loraplus_lr_ratio", ratio)
    switched = [f"{name} = {_short(fields.data[name])}" for name in VARIANT_SWITCHES.get(fmt, ())
                if fields.data.get(name) not in (None, False, 0, "", [], {}, "none")]
    if fmt == "llamafactory" and fields.boolean("pissa_init"):
        set_path(nested, "lora.init_lora_weights", "pissa")  # LLaMA-Factory initialises the adapter by PiSSA
    if switched:
        set_path(nested, "lora.variants", tuple(switched))


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
