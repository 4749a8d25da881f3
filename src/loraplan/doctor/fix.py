"""`check --fix`: write the corrected config in the user's own format, keeping the user's file.

The corrected values come from the findings (errors and warnings) as TrainingSetup paths. To turn
them into edits of the user's file, the format's own writer is run twice, on the setup as read
and on the corrected setup; the keys whose written values differ are exactly the edits, in the
format's own key names. They are then applied to the user's text: YAML through ruamel.yaml's
round-trip loader (comments, key order, flow/block style and indentation kept), JSON in key order,
Unsloth scripts by replacing the literal keyword arguments in place, tinker command lines by
replacing `key=value` tokens. Everything else in the file is left as it was.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from loraplan.doctor.findings import Finding, Severity
from loraplan.errors import LoraplanError
from loraplan.formats import get_format
from loraplan.formats.base import FormatError, load_yaml_mapping
from loraplan.setup import TrainingSetup

YAML_FORMATS = frozenset({"trl", "axolotl", "llamafactory", "torchtune"})
MISSING = object()


@dataclass(frozen=True)
class Edit:
    """One change to the file: `key` (dotted for nested YAML) from `old` to `new` (MISSING: absent)."""

    key: str
    old: Any
    new: Any

    def describe(self) -> str:
        if self.new is MISSING:
            return f"removed {self.key}"
        if self.old is MISSING:
            return f"added {self.key}: {self.new}"
        return f"{self.key}: {self.old} -> {self.new}"


def corrected_setup(stated: TrainingSetup, findings: list[Finding] | tuple[Finding, ...]) -> TrainingSetup:
    """The setup with every error's and warning's changes applied (errors win on a shared path)."""
    data = stated.model_dump()
    for finding in sorted(findings, key=lambda f: f.severity.order, reverse=True):
        if finding.severity is Severity.INFO:
            continue
        for path, value in finding.changes.items():
            section, _, name = path.partition(".")
            if name:
                data[section][name] = value
            else:
                data[section] = value
    try:
        return TrainingSetup.model_validate(data)
    except ValueError as exc:
        raise LoraplanError(f"the corrected setup is not valid ({exc}); please report this") from exc


def fixed_text(text: str, fmt: str, stated: TrainingSetup, fixed: TrainingSetup,
               order: tuple[str, ...] = ()) -> tuple[str, list[Edit]]:
    """The user's text with the edits that turn `stated` into `fixed`, and the edits made.

    order: module names in model order; new target lists are written in it (setups keep them sorted).
    """
    module = get_format(fmt)
    before, after = module.write(stated), module.write(fixed)
    if fmt == "trl":
        from loraplan.formats.trl import is_command_line

        if is_command_line(text):
            edits = _diff(load_yaml_mapping(before, "written"), load_yaml_mapping(after, "written"))
            return _fix_command_line(text, [_in_order(e, order) for e in edits])
    if fmt in YAML_FORMATS:
        edits = _diff(load_yaml_mapping(before, "written"), load_yaml_mapping(after, "written"))
        return _fix_yaml(text, [_in_order(e, order) for e in edits])
    if fmt == "peft":
        return _fix_json(text, [_in_order(e, order) for e in _diff(json.loads(before), json.loads(after))])
    if fmt == "tinker":
        return _fix_tinker(text, _diff(_tinker_pairs(before), _tinker_pairs(after)))
    if fmt in ("unsloth", "peft-python"):
        from loraplan.doctor.fix_python import fix_python

        return fix_python(text, before, after)
    raise FormatError(f"--fix does not support the {fmt} format")


def _in_order(edit: Edit, order: tuple[str, ...]) -> Edit:
    """A list (or LLaMA-Factory's comma string) of module names, in model order rather than sorted."""
    rank = {name: i for i, name in enumerate(order)}

    def sort(names: list[str]) -> list[str]:
        return sorted(names, key=lambda n: rank.get(n, len(rank)))

    if isinstance(edit.new, list) and all(isinstance(v, str) for v in edit.new):
        return Edit(edit.key, edit.old, sort(edit.new))
    if isinstance(edit.new, str) and "," in edit.new and set(edit.new.split(",")) <= rank.keys():
        return Edit(edit.key, edit.old, ",".join(sort(edit.new.split(","))))
    return edit


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[Edit]:
    edits: list[Edit] = []
    for key in dict.fromkeys([*old, *new]):
        a, b = old.get(key, MISSING), new.get(key, MISSING)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            edits.extend(_diff(a, b, f"{prefix}{key}."))
        else:
            edits.append(Edit(f"{prefix}{key}", a, b))
    return edits


def _fix_yaml(text: str, edits: list[Edit]) -> tuple[str, list[Edit]]:
    """Edit the lines that hold the changed keys; every other byte stays (see doctor/fix_yaml.py)."""
    from loraplan.doctor.fix_yaml import fix_yaml_text

    return fix_yaml_text(text, edits), edits


def _fix_command_line(text: str, edits: list[Edit]) -> tuple[str, list[Edit]]:
    """`--key value` arguments of a TRL command line, changed in place; new ones go after the last argument."""
    import shlex

    for edit in edits:
        flag = re.compile(rf"(?<!\S)--{re.escape(edit.key)}(?:=\S+|(?:[ \t]+(?!--)[^\s\\]+)+)?(?=\s|$)")
        if edit.new is MISSING or edit.new is False:
            text = flag.sub("", text, count=1)
            continue
        if isinstance(edit.new, list):
            value = " " + " ".join(shlex.quote(str(v)) for v in edit.new)
        elif edit.new is True:
            value = ""
        else:
            value = " " + shlex.quote(_cli_value(edit.new))
        replacement = f"--{edit.key}{value}"
        if flag.search(text):
            text = flag.sub(lambda _match, r=replacement: r, text, count=1)
        else:
            last = list(re.finditer(r"(?<!\S)--[\w.-]+(?:=\S+|(?:[ \t]+(?!--)[^\s\\]+)*)", text))
            at = last[-1].end() if last else len(text.rstrip())
            continuation = " \\\n    " if "\\\n" in text else " "
            text = f"{text[:at]}{continuation}{replacement}{text[at:]}"
    return text, edits


def _cli_value(value: Any) -> str:
    from loraplan.doctor.fix_yaml import float_text

    return float_text(value) if isinstance(value, float) else str(value)


def _fix_json(text: str, edits: list[Edit]) -> tuple[str, list[Edit]]:
    data = json.loads(text)
    for edit in edits:
        if edit.new is MISSING:
            data.pop(edit.key, None)
        else:
            data[edit.key] = edit.new
    match = re.search(r"\n([ \t]+)\"", text)
    indent = match.group(1) if match else 2
    return json.dumps(data, indent=indent, ensure_ascii=False) + "\n", edits


def _tinker_pairs(text: str) -> dict[str, str]:
    import shlex

    body = " ".join(line for line in text.replace("\\\n", " ").splitlines() if not line.lstrip().startswith("#"))
    return dict(t.split("=", 1) for t in shlex.split(body) if "=" in t and not t.startswith("-"))


def _fix_tinker(text: str, edits: list[Edit]) -> tuple[str, list[Edit]]:
    import shlex

    for edit in edits:
        token = re.compile(rf"(?<!\S){re.escape(edit.key)}=\S*")
        if edit.new is MISSING:
            text = token.sub("", text)
        elif token.search(text):
            replacement = f"{edit.key}={shlex.quote(str(edit.new))}"
            text = token.sub(lambda _match, r=replacement: r, text, count=1)
        else:
            last = list(re.finditer(r"(?<!\S)[A-Za-z_][\w.]*=\S*", text))
            at = last[-1].end() if last else len(text.rstrip())
            text = f"{text[:at]} {edit.key}={shlex.quote(str(edit.new))}{text[at:]}"
    return text, edits
