"""Model facts for the LR rules, from the catalogue (never from the sweep file).

A model's facts come from, in order: its catalogued config.json (built by loraplan's own layouts),
a facts-only entry of src/loraplan/catalog/facts.toml, or any other reference load_architecture
accepts (local folder, config.json, hub). Facts-only entries say where each number comes from.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from loraplan.errors import ConfigError
from loraplan.rules.calibration import HYBRID_ATTENTION

FACTS_FILE = Path(__file__).resolve().parent.parent / "catalog" / "facts.toml"
_FACT_FIELDS = ("family", "hidden_size", "num_layers", "total_params", "active_params", "num_experts",
                "attention_type")


@dataclass(frozen=True)
class ModelFacts:
    """What the LR rules may use about a model.

    model_id: as the catalogue spells it.
    family: LR family (`llama`, `qwen`, `deepseek`, `kimi`, `gpt-oss`, `nemotron`, ...).
    hidden_size: of the language model (text_config for VL / Qwen3.5 configs).
    num_layers: decoder layers.
    total_params / active_params: all parameters / those one token passes through.
    num_experts: routed experts (0 for a dense model).
    attention_type: `gqa`, `mha`, `mla`, `hybrid-linear` (Gated DeltaNet) or `hybrid-mamba`.
    source: where the facts came from, shown next to every number they produce.
    facts_only: True when no config.json backs the entry (no LoRA counts possible).
    nominal: facts that are rounded public figures (from the model name), not exact counts.
    """

    model_id: str
    family: str
    hidden_size: int
    num_layers: int
    total_params: int
    active_params: int
    num_experts: int
    attention_type: str
    source: str
    facts_only: bool = False
    nominal: tuple[str, ...] = field(default=())

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_hybrid(self) -> bool:
        """Linear-attention or Mamba layers mixed with full attention."""
        return self.attention_type in HYBRID_ATTENTION

    def architecture_key(self) -> tuple[object, ...]:
        """Equal for models that share one architecture (base, instruct, VL text tower, re-release)."""
        return (self.family, self.hidden_size, self.num_layers, self.total_params, self.active_params,
                self.num_experts, self.attention_type)

    def log_feature(self, name: str) -> float:
        """The numeric features the rule shapes use; logs keep the rule a power law."""
        if name == "hidden":
            return math.log(self.hidden_size / 2000)
        if name == "active":
            return math.log(self.active_params / 1e9)
        if name == "active_full":  # size term for full-attention models only: hybrid ones sit at one LR
            return 0.0 if self.is_hybrid else math.log(self.active_params / 1e9)
        if name == "total":
            return math.log(self.total_params / 1e9)
        if name == "hybrid":
            return 1.0 if self.is_hybrid else 0.0
        if name == "moe":
            return 1.0 if self.is_moe else 0.0
        raise ValueError(f"unknown feature {name!r}")


@cache
def facts_table() -> dict[str, dict[str, Any]]:
    """Lower-cased model id -> raw facts-only entry."""
    try:
        data = tomllib.loads(FACTS_FILE.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:  # a packaging bug, not user input
        raise ConfigError(f"{FACTS_FILE}: cannot read the facts-only catalogue ({exc})") from exc
    models = data.get("models", {})
    return {model_id.lower(): {"model_id": model_id, **entry} for model_id, entry in models.items()}


def facts_entry(model_id: str) -> dict[str, Any] | None:
    return facts_table().get(model_id.lower())


def _from_entry(entry: dict[str, Any]) -> ModelFacts:
    model_id = entry["model_id"]
    sibling = entry.get("same_architecture_as")
    if sibling:
        sibling_entry = facts_entry(sibling)
        if sibling_entry is not None and sibling_entry.get("same_architecture_as"):
            raise ConfigError(f"{FACTS_FILE}: {model_id}: same_architecture_as must name a config or explicit facts")
        base = _from_entry(sibling_entry) if sibling_entry is not None else _from_architecture(sibling)
        return ModelFacts(model_id, base.family, base.hidden_size, base.num_layers, base.total_params,
                          base.active_params, base.num_experts, base.attention_type,
                          f"facts-only: architecture of {base.model_id} ({entry.get('basis', '')})",
                          True, base.nominal)
    missing = [name for name in _FACT_FIELDS if name not in entry]
    unsourced = [name for name in _FACT_FIELDS if name not in entry.get("sources", {})]
    if missing or unsourced:
        raise ConfigError(f"{FACTS_FILE}: {model_id} lacks {', '.join(missing) or 'sources for'} "
                          f"{', '.join(unsourced) if not missing else ''}".rstrip())
    return ModelFacts(model_id, str(entry["family"]), int(entry["hidden_size"]), int(entry["num_layers"]),
                      int(entry["total_params"]), int(entry["active_params"]), int(entry["num_experts"]),
                      str(entry["attention_type"]), "facts-only catalogue entry (sources in catalog/facts.toml)",
                      True, tuple(entry.get("nominal", ())))


def _from_architecture(reference: str, trust_remote_code: bool = False) -> ModelFacts:
    from loraplan.arch.sources import load_architecture

    arch = load_architecture(reference, trust_remote_code)
    return ModelFacts(arch.model_id, arch.family, arch.hidden_size, arch.num_layers, arch.total_params,
                      arch.active_params, arch.num_experts, arch.attention_type, arch.source)


def model_facts(reference: str, trust_remote_code: bool = False) -> ModelFacts:
    """Catalogued config first, then a facts-only entry, then any reference load_architecture takes."""
    from loraplan.arch.sources import catalog

    try:
        exists = Path(reference).expanduser().exists()
    except OSError:  # a name too long to be a path: load_architecture says so
        exists = True
    if not exists and reference.lower() not in catalog():
        entry = facts_entry(reference)
        if entry is not None:
            return _from_entry(entry)
    return _from_architecture(reference, trust_remote_code)
