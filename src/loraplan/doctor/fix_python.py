"""`--fix` for Unsloth scripts: replace literal keyword arguments in place, by their source positions.

Only the keyword arguments of the calls loraplan reads (`from_pretrained`, `get_peft_model`, the
TRL config class) are touched; the script is never executed and its other lines stay as written.

Positions are worked out on the UTF-8 bytes: `ast` gives column offsets in bytes, and lines end only
where Python's tokenizer ends them (`\n`, `\r\n`, `\r`; not the form feed or `\u2028` that
`str.splitlines` also splits on). The result is parsed again and refused if it does not parse, so a
fix never writes a broken script.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from loraplan.doctor.fix import MISSING, Edit
from loraplan.formats.base import FormatError
from loraplan.formats.unsloth import literal_kwargs

CONFIG_CALLS = ("SFTConfig", "DPOConfig", "GRPOConfig", "TrainingArguments")


def _calls(tree: ast.AST) -> dict[str, ast.Call]:
    found: dict[str, ast.Call] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            found.setdefault(name, node)
    return found


_LINE_END = re.compile(rb"\r\n|\r|\n")


def _offsets(source: bytes) -> list[int]:
    """Byte offset where each line starts, by Python's own line endings."""
    return [0, *(match.end() for match in _LINE_END.finditer(source))]


def fix_python(text: str, before: str, after: str) -> tuple[str, list[Edit]]:
    """Apply to `text` the keyword changes that turn the script `before` into `after` (both written by us)."""
    try:
        user = _calls(ast.parse(text))
    except (SyntaxError, ValueError, RecursionError) as exc:
        raise FormatError(f"cannot fix a script that does not parse ({exc})") from exc
    old_calls, new_calls = _calls(ast.parse(before)), _calls(ast.parse(after))
    source = text.encode("utf-8")
    starts = _offsets(source)
    pieces: list[tuple[int, int, str]] = []  # (start, end, replacement) in the user's UTF-8 bytes
    edits: list[Edit] = []
    for name, new_call in new_calls.items():
        old = literal_kwargs(old_calls[name], MISSING) if name in old_calls else {}
        new = literal_kwargs(new_call, MISSING)
        target = user.get(name) or (next((user[c] for c in CONFIG_CALLS if c in user), None)
                                    if name in CONFIG_CALLS else None)
        for key in dict.fromkeys([*old, *new]):
            a, b = old.get(key, MISSING), new.get(key, MISSING)
            if a == b or target is None:
                continue
            edits.append(Edit(f"{name}({key}=...)", a, b))
            start, end, replacement = _piece(target, key, b, starts)
            if b is MISSING and end > start:  # a removed keyword takes its comma with it
                comma = re.match(rb"\s*,", source[end:])
                end += comma.end() if comma else 0
            pieces.append((start, end, replacement))
    for start, end, replacement in sorted(pieces, reverse=True):
        source = source[:start] + replacement.encode("utf-8") + source[end:]
    fixed = source.decode("utf-8")
    try:
        ast.parse(fixed)
    except (SyntaxError, ValueError) as exc:
        raise FormatError(f"the fixed script would not parse ({exc}); nothing written, please report this") from exc
    return fixed, edits


def _piece(call: ast.Call, key: str, value: Any, starts: list[int]) -> tuple[int, int, str]:
    def at(line: int, col: int) -> int:
        return starts[line - 1] + col

    for keyword in call.keywords:
        if keyword.arg == key:
            node = keyword.value
            if value is MISSING:
                return at(keyword.lineno, keyword.col_offset), at(node.end_lineno or 1, node.end_col_offset or 0), ""
            return at(node.lineno, node.col_offset), at(node.end_lineno or 1, node.end_col_offset or 0), repr(value)
    args = [*call.args, *(k.value for k in call.keywords)]
    if value is MISSING:
        return 0, 0, ""
    if args:
        last = max(args, key=lambda n: (n.end_lineno or 0, n.end_col_offset or 0))
        end = at(last.end_lineno or 1, last.end_col_offset or 0)
        return end, end, f", {key}={value!r}"
    end = at(call.end_lineno or 1, (call.end_col_offset or 1) - 1)
    return end, end, f"{key}={value!r}"
