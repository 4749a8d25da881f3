"""How HF PEFT resolves a LoRA target spec on a transformers v5 model, without importing either.

Modelled on PEFT 0.21 with transformers 5.x (the versions the test extra installs), and held to
them by tests/test_peft_equality.py, which runs PEFT itself on meta-device models:

- `all-linear`: every nn.Linear but the output embedding (lm_head).
- list entries match a module by full name or by dotted suffix; names that match nothing are
  ignored as long as one name matched.
- `target_parameters` reach 3-D expert parameters and bare router weights: r * E * (a + b).
- v4 -> v5 MoE rename (PEFT's `_convert_peft_config_moe`, its tables read through
  loraplan.arch.moe_conversion): for model types transformers maps to a conversion pattern, v4
  names in the targets (`gate`, `gate_proj`, `up_proj`, `down_proj`, or `w1`/`w2`/`w3`) become
  target_parameters (`gate.weight`, `gate_up_proj`, `down_proj`) and leave target_modules, so a
  dense MLP or shared expert that still uses those names is no longer adapted; `gate_up_proj`
  gets rank 2r when both halves were named. `all-linear` is expanded to leaf names plus those v4
  names first.
"""

from __future__ import annotations

from dataclasses import dataclass

from loraplan.arch.model import Architecture, Kind, Role, Weight
from loraplan.arch.moe_conversion import current as conversion_table

ALL_LINEAR = "all-linear"

# Config classes transformers loads for model types it does not know (kimi_k2 -> DeepseekV3Config).
_LOADED_AS = {"kimi_k2": "deepseek_v3"}


@dataclass(frozen=True)
class PeftSpec:
    """target_modules (ALL_LINEAR or names) and target_parameters, as a LoraConfig takes them."""

    target_modules: str | tuple[str, ...]
    target_parameters: tuple[str, ...] = ()


def conversion_of(arch: Architecture) -> str | None:
    """The conversion pattern PEFT applies to this model (`mixtral`, `qwen2_moe`), or None."""
    model_type = _LOADED_AS.get(arch.model_type, arch.model_type)
    table = conversion_table()
    return table.pattern_of(model_type) or table.pattern_of(model_type.removesuffix("_text"))


def _suffix_match(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def dotted_suffixes(name: str) -> set[str]:
    """Every target that `_suffix_match(name, target)` accepts: the name and each tail after a dot.

    Matching a set of targets against these is linear in the targets (a 144k-name list costs one set).
    """
    parts = name.split(".")
    return {".".join(parts[i:]) for i in range(len(parts))}


def converted_parameter(arch: Architecture, target: str) -> str | None:
    """The target_parameter PEFT's v4 -> v5 MoE rename turns `target` into on this model, if any."""
    mapping = conversion_table().target_mapping.get(conversion_of(arch) or "", {})
    return mapping.get(target.rsplit(".", 1)[-1])  # the v4 names are single components: a suffix match


def expert_target_names(arch: Architecture) -> tuple[str, ...]:
    """The transformers-4 module names PEFT's conversion table turns into this model's stacked experts
    (Mixtral: w1, w2, w3; Qwen-MoE: down_proj, gate_proj, up_proj); empty where it converts none."""
    mapping = conversion_table().target_mapping.get(conversion_of(arch) or "", {})
    return tuple(sorted(name for name, param in mapping.items() if not param.endswith(".weight")))


def _linear_leaves(arch: Architecture) -> list[str]:
    return list(dict.fromkeys(w.leaf for w in arch.weights if w.kind is Kind.LINEAR and w.role is not Role.UNEMBED))


def all_linear_names(arch: Architecture) -> list[str]:
    """`all-linear` as the list of names PEFT resolves it to: linear leaves but lm_head, plus the v4 MoE names."""
    mapping = conversion_table().target_mapping.get(conversion_of(arch) or "", {})
    return list(dict.fromkeys([*_linear_leaves(arch), *mapping]))


def resolve(arch: Architecture, spec: PeftSpec) -> list[tuple[Weight, int]]:
    """(weight, rank multiplier) for every weight PEFT would adapt under `spec`."""
    pattern = conversion_of(arch)
    table = conversion_table()
    mapping = table.target_mapping.get(pattern or "", {})
    fused = table.fused.get(pattern or "", {})
    if spec.target_modules == ALL_LINEAR:
        modules = set(_linear_leaves(arch)) | (set(mapping) if mapping else set())
        all_linear = not mapping
    else:
        modules = set(spec.target_modules)
        all_linear = False
    params = set(spec.target_parameters)
    fused_hits: set[str] = set()
    if mapping:
        kept = set()
        for target in modules:
            old = next((o for o in mapping if _suffix_match(target, o)), None)
            if old is None:
                kept.add(target)
                continue
            params.add(mapping[old])
            fused_hits.add(old)
        modules = kept
    # PEFT's rank_pattern: a fused parameter whose v4 halves were all named trains at r x halves.
    rank_of = {new: len(olds) for new, olds in fused.items() if len(olds) > 1 and set(olds) <= fused_hits}
    adapted: list[tuple[Weight, int]] = []
    for weight in arch.weights:
        if weight.kind is Kind.LINEAR:
            if (all_linear and weight.role is not Role.UNEMBED) or not modules.isdisjoint(dotted_suffixes(weight.name)):
                adapted.append((weight, 1))
        elif weight.kind in (Kind.EXPERT_PARAM, Kind.ROUTER_PARAM):
            param_name = weight.name if weight.kind is Kind.EXPERT_PARAM else f"{weight.name}.weight"
            if not params.isdisjoint(dotted_suffixes(param_name)):
                adapted.append((weight, rank_of.get(weight.leaf, 1)))
    return adapted


def unmatched(arch: Architecture, spec: PeftSpec) -> list[str]:
    """Names in a target list that match no module: PEFT ignores them without a word."""
    if spec.target_modules == ALL_LINEAR:
        return []
    return [t for t in spec.target_modules if not any(_suffix_match(w.name, t) for w in arch.weights)]
