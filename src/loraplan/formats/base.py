"""Shared pieces of the trainer formats: the registry, YAML I/O, value coercion (atomic writes: loraplan.atomicwrite).

Each format module exposes NAME, SUFFIX, `write(setup) -> str`, `read(text, where) -> TrainingSetup`
and `project(setup) -> TrainingSetup` (the setup with the fields the format cannot carry set to
None), so `read(write(s)) == project(s)` for every format.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from loraplan.atomicwrite import write_atomic  # noqa: F401  (re-exported: formats.write_atomic)
from loraplan.errors import LoraplanError

MAX_CONFIG_BYTES = 1024 * 1024  # trainer configs are kilobytes; the YAML parser reads ~150 kB/s, so cap at 1 MiB
MAX_YAML_NODES = 200_000  # a YAML bomb expands aliases past this
MAX_NESTING = 64  # trainer configs nest a few levels; the YAML scanner is quadratic in flow nesting


class FormatError(LoraplanError):
    """A config file that cannot be read as the format it claims to be."""


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    write: Callable[..., str]
    read: Callable[[str, str], Any]
    project: Callable[[Any], Any]
    description: str


def yaml_loader() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    return yaml


def _count_nodes(value: Any, where: str) -> None:
    """Walk the parsed tree (aliases expanded) without recursion; refuse bombs and deep nesting."""
    seen = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_YAML_NODES:
            raise FormatError(f"{where}: YAML expands past {MAX_YAML_NODES:,} nodes (an alias bomb?); refusing")
        if depth > MAX_NESTING:
            raise FormatError(f"{where}: settings nested more than {MAX_NESTING} levels deep; refusing")
        if isinstance(node, dict):
            for k, v in node.items():
                stack.append((k, depth + 1))
                stack.append((v, depth + 1))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def _check_flow_nesting(text: str, where: str) -> None:
    """Refuse `[[[[...` before parsing: the scanner slows quadratically with flow depth, then recurses."""
    depth = 0
    for char in re.sub(r"[^\[\]{}]", "", text):
        depth = depth + 1 if char in "[{" else max(0, depth - 1)
        if depth > MAX_NESTING:
            raise FormatError(f"{where}: brackets nested more than {MAX_NESTING} levels deep; refusing")


def _plain(value: Any) -> Any:
    """ruamel round-trip types -> plain dict/list/scalars (after the bomb check)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        if isinstance(value, str):
            return str(value)
        if isinstance(value, float):
            return float(value)
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return int(value)
        return value
    return str(value)


def load_yaml_mapping(text: str, where: str) -> dict[str, Any]:
    """Parse YAML into a plain mapping, with a clear message for every failure."""
    from ruamel.yaml.error import YAMLError

    if len(text) > MAX_CONFIG_BYTES:
        raise FormatError(f"{where}: {len(text):,} characters is too large for a trainer config (limit 1 MiB)")
    _check_flow_nesting(text, where)
    try:
        data = yaml_loader().load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise FormatError(f"{where}{line}: invalid YAML ({getattr(exc, 'problem', None) or exc})") from exc
    except (RecursionError, ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        # ruamel raises these on some malformed documents (e.g. odd tags or keys) instead of a YAMLError
        raise FormatError(f"{where}: unreadable YAML ({type(exc).__name__})") from exc
    _count_nodes(data, where)
    if data is None:
        raise FormatError(f"{where}: the file is empty")
    if not isinstance(data, dict):
        raise FormatError(f"{where}: expected a mapping of settings at the top level, got {type(data).__name__}")
    return _plain(data)


def dump_yaml(data: dict[str, Any], header: str = "") -> str:
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.default_flow_style = False
    buffer = io.StringIO()
    if header:
        buffer.write("".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()))
    yaml.dump(data, buffer)
    return buffer.getvalue()


def read_config_text(path: Path) -> str:
    """A config file as text through the one guarded open: regular files only, at most MAX_CONFIG_BYTES.

    A FIFO, device or folder is refused before any read; a 1 GB file costs one fstat.
    """
    from loraplan.userfiles import read_user_text

    try:
        return read_user_text(path, what="trainer config", max_bytes=MAX_CONFIG_BYTES)
    except LoraplanError as exc:
        raise FormatError(str(exc)) from exc


class Fields:
    """Typed access to a parsed mapping that names the field and file in every error."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        self.data = data
        self.where = where

    def _fail(self, key: str, want: str, value: Any) -> FormatError:
        return FormatError(f"{self.where}: field `{key}` should be {want}, got {value!r}")

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self._fail(key, "a number", value)
        try:
            number = float(value)
        except (ValueError, OverflowError):
            raise self._fail(key, "a number", value) from None
        if not math.isfinite(number):
            raise self._fail(key, "a finite number", value)
        return number

    def integer(self, key: str) -> int | None:
        value = self.number(key)
        if value is None:
            return None
        if value != int(value):
            raise self._fail(key, "a whole number", self.data.get(key))
        return int(value)

    def boolean(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self._fail(key, "true or false", value)

    def text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise self._fail(key, "a string", value)

    def names(self, key: str) -> tuple[str, ...] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if isinstance(value, list | tuple | set | frozenset) and all(isinstance(v, str) for v in value):
            return tuple(value)  # a set (Python configs) is sorted later: order carries no meaning
        raise self._fail(key, "a list of module names", value)

    def table(self, key: str) -> Fields:
        value = self.data.get(key)
        if value is None:
            return Fields({}, self.where)
        if not isinstance(value, dict):
            raise self._fail(key, "a mapping", value)
        return Fields(value, f"{self.where} [{key}]")


def build(where: str, factory: Callable[..., Any], **kwargs: Any) -> Any:
    """Construct a pydantic model, turning validation errors into one FormatError naming the fields."""
    try:
        return factory(**kwargs)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise FormatError(f"{where}: {problems}") from exc


def drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}
