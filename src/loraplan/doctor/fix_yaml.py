"""`--fix` for YAML configs: change the values that need changing and leave every other byte as written.

A round trip through a YAML library rewrites what it does not understand the way a person wrote it
(`True` becomes `true`, `null` becomes an empty value, a multi-line flow list is re-flowed, indentation
is guessed, a comment block after a removed key goes with it). This editor uses ruamel.yaml only to
find where each key and its value sit (line and column), then edits those lines of the text:

- a changed scalar: the value between `key:` and its comment is replaced, the comment stays;
- a changed list: written in the style the file used for it (flow `[a, b]` or block `- a`, same quotes);
- a removed key: its key line and value lines go; comment lines after it stay;
- an added key: next to its siblings (after the last key sharing its prefix, e.g. `lora_`), same indent.

Values are written the way the file writes them: `True`/`False` when the file spells booleans so, floats in
scientific notation with a dot (`2.0e-4`, which YAML 1.1 readers such as PyYAML read as a float).
"""

from __future__ import annotations

import json
import re
from typing import Any

from loraplan.doctor.fix import MISSING

PLAIN = re.compile(r"[A-Za-z_./][\w./-]*")


def fix_yaml_text(text: str, edits: list[Any]) -> str:
    """Apply `edits` (key dotted for nesting, old, new; new MISSING to remove) to the YAML `text`."""
    lines = text.splitlines(keepends=True)
    for edit in edits:
        lines = _apply(lines, edit)
    return "".join(lines)


def _apply(lines: list[str], edit: Any) -> list[str]:
    from ruamel.yaml import YAML

    doc = YAML(typ="rt").load("".join(lines))
    *parents, leaf = edit.key.split(".")
    node, indent, span = doc, 0, (0, len(lines))
    for i, part in enumerate(parents):
        child = node.get(part) if isinstance(node, dict) else None
        if not isinstance(child, dict) or not hasattr(child, "lc"):
            if edit.new is MISSING:
                return lines
            value = edit.new
            for name in reversed([*parents[i + 1:], leaf]):
                value = {name: value}
            return _add(lines, node, part, value, indent, span)
        start = node.lc.key(part)[0]
        span = (start, _value_end(lines, start))
        node = child
        indent = _child_indent(lines, span, indent)
    style = _Style.of(lines)
    if leaf in node:
        line, col = node.lc.key(leaf)
        end = _value_end(lines, line)
        if edit.new is MISSING:
            return lines[:line] + lines[end:]
        return lines[:line] + _render(lines[line:end], leaf, col, edit.new, style) + lines[end:]
    if edit.new is MISSING:
        return lines
    return _add(lines, node, leaf, edit.new, indent, span)


def _child_indent(lines: list[str], span: tuple[int, int], fallback: int) -> int:
    for line in lines[span[0] + 1: span[1]]:
        if line.strip() and not line.lstrip().startswith("#"):
            return len(line) - len(line.lstrip())
    return fallback + 2


def _code(line: str) -> str:
    """The line without its comment (a `#` after a space), for counting brackets."""
    return re.split(r"(^|\s)#", line, maxsplit=1)[0]


def _depth(line: str) -> int:
    code = _code(line)
    return code.count("[") + code.count("{") - code.count("]") - code.count("}")


def _value_end(lines: list[str], line: int) -> int:
    """One past the last line of the value of the key on `line`.

    The value is the rest of the key line, an open flow collection until it closes, and the lines below that
    are more indented (or `- ` items at the key's indent under a bare `key:`). Comment and blank lines after
    the value belong to what follows and stay.
    """
    key_line = lines[line]
    key_indent = len(key_line) - len(key_line.lstrip())
    bare = _code(key_line).rstrip().endswith(":")
    depth = _depth(key_line)
    last = line
    index = line + 1
    while index < len(lines):
        text = lines[index]
        stripped = text.strip()
        if depth > 0:
            depth += _depth(text)
            last = index
        elif stripped and not stripped.startswith("#"):
            indent = len(text) - len(text.lstrip())
            if indent > key_indent or (bare and indent == key_indent and stripped.startswith("- ")):
                last = index
            else:
                break
        index += 1
    return last + 1


class _Style:
    """How the file spells values: True/False or true/false, the quote used in flow lists."""

    def __init__(self, capital_bools: bool) -> None:
        self.capital_bools = capital_bools

    @classmethod
    def of(cls, lines: list[str]) -> _Style:
        text = "".join(lines)
        capital = len(re.findall(r":\s*(True|False)\b", text)) > len(re.findall(r":\s*(true|false)\b", text))
        return cls(capital)

    def scalar(self, value: Any, old: str = "") -> str:
        if isinstance(value, bool):
            word = "true" if value else "false"
            return word.capitalize() if self.capital_bools or old[:1] in ("T", "F") else word
        if value is None:
            return old if old in ("null", "~", "Null", "NULL") else "null"
        if isinstance(value, float):
            return float_text(value)
        if isinstance(value, int):
            return str(value)
        text = str(value)
        quote = old[:1] if old[:1] in ("'", '"') else ""
        if quote == "'":
            return "'" + text.replace("'", "''") + "'"
        if quote == '"' or not PLAIN.fullmatch(text) or text.lower() in ("true", "false", "null", "yes", "no"):
            return json.dumps(text)
        return text


def float_text(value: float) -> str:
    """A float as a YAML 1.1 reader (PyYAML) still reads it: `2.0e-4`, `0.05`, `1.0` (a dot, a signed exponent)."""
    if value == 0:
        return "0.0"
    if abs(value) < 1e-3 or abs(value) >= 1e6:
        mantissa, exponent = f"{value:.2e}".split("e")
        mantissa = f"{float(mantissa):g}"
        if "." not in mantissa:
            mantissa += ".0"
        return f"{mantissa}e{int(exponent):+d}"
    text = f"{value:.6g}"
    return text if "." in text else text + ".0"


def _render(old_lines: list[str], leaf: str, col: int, value: Any, style: _Style) -> list[str]:
    """The key's lines with the new value, in the style of the old ones (comment kept)."""
    first = old_lines[0]
    newline = "\n" if first.endswith("\n") else ""
    match = re.match(rf"^(\s*{re.escape(leaf)}\s*:[ \t]*)(.*?)([ \t]+#.*)?$", first.rstrip("\n"))
    if match is None:
        return old_lines
    head, old_value, comment = match.group(1), match.group(2), match.group(3) or ""
    if not isinstance(value, list):
        return [f"{head}{style.scalar(value, old_value)}{comment}{newline}"]
    flow = old_value.startswith("[") or (not old_value and len(old_lines) == 1)
    quote = ""
    sample = re.search(r"""['"]""", "".join(old_lines))
    if sample:
        quote = sample.group(0)
    items = [_item(v, style, quote) for v in value]
    if flow or old_value.startswith("["):
        return [f"{head.rstrip()} [{', '.join(items)}]{comment}{newline}"]
    item_line = next((line for line in old_lines[1:] if line.lstrip().startswith("- ")), None)
    prefix = item_line[: len(item_line) - len(item_line.lstrip())] if item_line else " " * (col + 2)
    kept = [line for line in old_lines[1:] if line.strip().startswith("#")]  # comments inside the list
    return [f"{head.rstrip()}{comment}\n", *(f"{prefix}- {item}\n" for item in items), *kept]


def _item(value: Any, style: _Style, quote: str) -> str:
    if isinstance(value, str) and quote:
        return f"{quote}{value}{quote}" if quote == '"' or "'" not in value else json.dumps(value)
    return style.scalar(value)


def _add(lines: list[str], node: Any, key: str, value: Any, indent: int, span: tuple[int, int]) -> list[str]:
    """Insert `key: value` into the mapping `node` after its last key sharing `key`'s prefix (else its last key)."""
    keys = [str(k) for k in node] if isinstance(node, dict) else []
    prefix = key.split("_")[0] + "_" if "_" in key else key
    related = [k for k in keys if k.startswith(prefix)] or keys
    style = _Style.of(lines)
    if related and hasattr(node, "lc"):
        anchor = node.lc.key(related[-1])[0]
        at = _value_end(lines, anchor)
        indent = len(lines[anchor]) - len(lines[anchor].lstrip())
    else:
        at = span[1]
    if 0 < at <= len(lines) and not lines[at - 1].endswith("\n"):
        lines = [*lines[: at - 1], lines[at - 1] + "\n", *lines[at:]]
    pad = " " * indent
    if isinstance(value, dict):
        block = [f"{pad}{key}:\n", *_mapping_lines(value, indent + 2, style)]
    elif isinstance(value, list):
        block = [f"{pad}{key}:\n", *(f"{pad}  - {style.scalar(v)}\n" for v in value)]
    else:
        block = [f"{pad}{key}: {style.scalar(value)}\n"]
    return lines[:at] + block + lines[at:]


def _mapping_lines(value: dict[str, Any], indent: int, style: _Style) -> list[str]:
    out: list[str] = []
    pad = " " * indent
    for key, item in value.items():
        if isinstance(item, dict):
            out += [f"{pad}{key}:\n", *_mapping_lines(item, indent + 2, style)]
        elif isinstance(item, list):
            out += [f"{pad}{key}:\n", *(f"{pad}  - {style.scalar(v)}\n" for v in item)]
        else:
            out.append(f"{pad}{key}: {style.scalar(item)}\n")
    return out
