"""Trainer formats: one module per trainer, each the exact inverse of itself (read(write(s)) == project(s))."""

from __future__ import annotations

from types import ModuleType

from loraplan.formats import axolotl, llamafactory, peft, tinker, torchtune, trl, unsloth
from loraplan.formats.base import FormatError, write_atomic

FORMATS: dict[str, ModuleType] = {m.NAME: m for m in (peft, trl, axolotl, llamafactory, torchtune, unsloth, tinker)}
# Every name `plan --format` writes: the readers' formats plus PEFT's Python form (LoraConfig(...) + get_peft_model).
EXPORT_FORMATS: tuple[str, ...] = ("peft", "peft-python", *(name for name in FORMATS if name != "peft"))

__all__ = ["EXPORT_FORMATS", "FORMATS", "FormatError", "get_format", "write_atomic"]


def get_format(name: str) -> ModuleType:
    try:
        return FORMATS[name]
    except KeyError:
        raise FormatError(f"unknown format {name!r}; choose one of {', '.join(EXPORT_FORMATS)}") from None
