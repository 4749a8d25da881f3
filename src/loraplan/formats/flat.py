"""Declarative mapping between TrainingSetup paths and a format's flat keys.

Most trainer configs are flat key/value files; a format lists (setup path, key, kind) once and
gets writing, reading and projection from the same table, which keeps readers the exact inverse
of writers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from loraplan.formats.base import Fields, build
from loraplan.setup import TrainingSetup


@dataclass(frozen=True)
class Key:
    """`path` in TrainingSetup (e.g. "lora.rank") <-> `key` in the file, read as `kind`."""

    path: str
    key: str
    kind: str  # number | integer | boolean | text | names


def get_path(setup: TrainingSetup, path: str) -> Any:
    value: Any = setup
    for part in path.split("."):
        value = getattr(value, part)
    return value


def plain_value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return int(value)
    return value


def to_mapping(setup: TrainingSetup, keys: list[Key]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in keys:
        value = get_path(setup, spec.path)
        if value is not None:
            out[spec.key] = plain_value(value)
    return out


def set_path(nested: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    target = nested
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def from_mapping(fields: Fields, keys: list[Key]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for spec in keys:
        value = getattr(fields, spec.kind)(spec.key)
        if value is not None:
            set_path(nested, spec.path, value)
    return nested


def make_setup(where: str, nested: dict[str, Any]) -> TrainingSetup:
    sections = {"lora", "optim", "data", "extras"}
    kwargs = {k: v for k, v in nested.items() if k not in sections}
    from loraplan.setup import DataSpec, LoraSpec, MethodExtras, Optimization

    factories = {"lora": LoraSpec, "optim": Optimization, "data": DataSpec, "extras": MethodExtras}
    for name, factory in factories.items():
        if name in nested:
            kwargs[name] = build(where, factory, **nested[name])
    return build(where, TrainingSetup, **kwargs)


def project_paths(setup: TrainingSetup, paths: list[str]) -> TrainingSetup:
    """The setup reduced to `paths` (everything else unknown): what a format can carry."""
    nested: dict[str, Any] = {}
    for path in paths:
        value = get_path(setup, path)
        if value is not None:
            set_path(nested, path, value)
    return make_setup("projection", nested)


def unembed_from_targets(targets: tuple[str, ...] | None) -> bool | None:
    """Whether a target list adapts the unembedding (lm_head): every format says it this way."""
    return None if targets is None else "lm_head" in targets
