"""Where a config key sits in the file, for SARIF locations; key names come from formats.keys."""

from __future__ import annotations

import re

from loraplan.formats.keys import key_for

__all__ = ["key_for", "line_of"]


def line_of(text: str, fmt: str | None, key: str) -> int | None:
    """1-based line where `key` is set in the file, for SARIF locations; None when not found."""
    leaf = key.rsplit(".", 1)[-1].split(" ")[0]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", leaf):
        return None
    patterns = {
        "peft": rf'^\s*"{leaf}"\s*:',
        "tinker": rf"(^|\s){leaf}=",
        "unsloth": rf"(^|[\s(,]){leaf}\s*=",
        "peft-python": rf"(^|[\s(,]){leaf}\s*=",
    }
    pattern = re.compile(patterns.get(fmt or "", rf"^\s*{leaf}\s*:"))
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.search(line):
            return number
    return None
