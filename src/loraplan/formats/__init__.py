"""Trainer formats: one module per trainer, each the exact inverse of itself (read(write(s)) == project(s))."""

from __future__ import annotations

from types import ModuleType

from loraplan.formats import axolotl, llamafactory, peft, peft_python, tinker, torchtune, trl, unsloth
from loraplan.formats.base import FormatError, write_atomic

FORMATS: dict[str, ModuleType] = {m.NAME: m for m in (peft, peft_python, trl, axolotl, llamafactory, torchtune,
                                                      unsloth, tinker)}
# Every name `plan --format` writes and `check --format` reads.
EXPORT_FORMATS: tuple[str, ...] = tuple(FORMATS)

__all__ = ["EXPORT_FORMATS", "FORMATS", "FormatError", "get_format", "write_atomic"]


def get_format(name: str) -> ModuleType:
    try:
        return FORMATS[name]
    except KeyError:
        raise FormatError(f"unknown format {name!r}; choose one of {', '.join(EXPORT_FORMATS)}") from None
