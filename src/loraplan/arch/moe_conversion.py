"""PEFT's transformers-v5 MoE target conversion table: read from PEFT, or from a snapshot of it.

On transformers 5, MoE experts are stacked 3-D parameters and routers are custom modules, so a
v4-style target list (`gate_proj`, `up_proj`, `down_proj`, `gate`) no longer names them. PEFT
rewrites such lists when it wraps a model (`_convert_peft_config_moe` in
`peft/utils/transformers_weight_conversion.py`): for every model type it maps to a conversion
pattern (`mixtral`, `qwen2_moe`), the v4 names become `target_parameters`, and a fused
`gate_up_proj` whose two halves were both named gets rank 2r. Which model types convert is
transformers' `_MODEL_TO_CONVERSION_PATTERN`, and it grows with every release.

Reading that table imports torch (seconds), and `params`/`plan` must not, so a snapshot generated
from the installed libraries ships next to this module with their versions. At run time the
snapshot is used when the installed versions match it (or PEFT is absent); when they differ the
live table is read once and kept in the user cache folder (see shape_cache), so a newer
transformers never gets a stale answer and pays for torch only once.
tests/test_moe_conversion.py fails when the snapshot and the installed libraries disagree;
regenerate with `python -m loraplan.arch.moe_conversion`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

SNAPSHOT_FILE = Path(__file__).resolve().parent / "peft_moe_conversion.json"
LIBRARIES = ("transformers", "peft")


@dataclass(frozen=True)
class MoeConversion:
    """The three tables PEFT's conversion reads, and where they came from.

    patterns: model_type -> conversion pattern, only for types PEFT actually converts.
    target_mapping: pattern -> {v4 target name: v5 target parameter}.
    fused: pattern -> {v5 fused parameter: the v4 names it holds, in order}.
    versions: library -> version the tables were read from.
    source: `installed peft` or `snapshot`.
    """

    patterns: dict[str, str]
    target_mapping: dict[str, dict[str, str]]
    fused: dict[str, dict[str, tuple[str, ...]]]
    versions: dict[str, str]
    source: str

    def pattern_of(self, model_type: str) -> str | None:
        return self.patterns.get(model_type)

    def as_json(self) -> dict[str, Any]:
        return {"versions": self.versions, "patterns": dict(sorted(self.patterns.items())),
                "target_mapping": self.target_mapping,
                "fused": {p: {k: list(v) for k, v in f.items()} for p, f in self.fused.items()}}


def installed_versions() -> dict[str, str]:
    """Versions of transformers and PEFT as installed (no import); absent ones are left out."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def from_library() -> MoeConversion:
    """The tables as the installed PEFT (and the transformers it imports) hold them. Imports torch."""
    from peft.utils import transformers_weight_conversion as conv
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    mapping: dict[str, dict[str, str]] = {p: dict(m) for p, m in conv._MOE_TARGET_MODULE_MAPPING.items()}
    fused = {p: {k: tuple(v) for k, v in f.items()} for p, f in conv._MOE_FUSED_TARGETS.items()}
    patterns = {
        model_type: pattern
        for model_type, pattern in conv._MODEL_TO_CONVERSION_PATTERN.items()
        if mapping.get(pattern) and fused.get(pattern) and get_checkpoint_conversion_mapping(model_type) is not None
    }
    return MoeConversion(patterns, mapping, fused, installed_versions(), "installed peft")


def _from_json(data: dict[str, Any], source: str) -> MoeConversion:
    fused = {p: {k: tuple(v) for k, v in f.items()} for p, f in data["fused"].items()}
    return MoeConversion(dict(data["patterns"]), dict(data["target_mapping"]), fused, dict(data["versions"]), source)


def snapshot(path: Path = SNAPSHOT_FILE) -> MoeConversion:
    data = json.loads(path.read_text(encoding="utf-8"))
    versions = data["versions"]
    return _from_json(data, f"snapshot of peft {versions.get('peft')} / transformers {versions.get('transformers')}")


def _live_cached(installed: dict[str, str]) -> MoeConversion:
    """The installed libraries' table, read once per version pair and kept in the user cache folder."""
    from loraplan.arch import shape_cache

    name = "moe-conversion-" + "-".join(f"{k}{v}" for k, v in sorted(installed.items()))
    data = shape_cache.read_entry(name)
    try:
        if data is not None and data.get("versions") == installed:
            return _from_json(data, "installed peft (cached)")
    except (AttributeError, KeyError, TypeError):
        pass
    table = from_library()
    shape_cache.write_entry(name, table.as_json())
    return table


@cache
def current() -> MoeConversion:
    """The table PEFT will use here: the snapshot when it matches the installed libraries, else the live one."""
    shipped = snapshot()
    installed = installed_versions()
    if "peft" in sys.modules and "transformers" in installed:  # already paid for: read it live
        return from_library()
    if len(installed) < len(LIBRARIES) or installed == shipped.versions:
        return shipped
    try:
        return _live_cached(installed)
    except (ImportError, AttributeError):  # a PEFT without the v5 conversion: nothing is converted
        return MoeConversion({}, {}, {}, installed, "installed peft (no MoE conversion)")


def main() -> None:
    """Regenerate the snapshot from the installed libraries."""
    table = from_library()
    SNAPSHOT_FILE.write_text(json.dumps(table.as_json(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {SNAPSHOT_FILE} ({len(table.patterns)} model types, {table.versions})")


if __name__ == "__main__":
    main()
