"""Which weights get LoRA and what each costs, under named conventions.

LoRA on a weight (out x in) at rank r adds A (r x in) and B (out x r): r * (in + out) params.
Conventions differ on three things, and each is a published behaviour:

- tinker (default): the Tinker service's count, which reproduces tinker-cookbook's per-rank
  table. All linear weights except embeddings, MoE routers and MLA up-projections (q_b_proj,
  kv_b_proj); fused weights count as their separate matrices; MoE experts use shared-outer LoRA
  (the hidden-side factor is shared by the E experts of a layer: hidden + E * other per matrix).
- peft: what HF PEFT trains for `all-linear` (+ `lm_head` when asked) with experts reached by
  `target_parameters`: every nn.Linear but the output embedding, fused weights as one matrix,
  stacked experts as r * E * (in + out). tests/test_peft_equality.py holds it to PEFT itself.
- per-expert: like tinker, but every expert has its own A and B: E * (in + out) per matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from loraplan.arch.model import Architecture, Kind, Role, Weight
from loraplan.arch.peft_rules import ALL_LINEAR, PeftSpec, resolve
from loraplan.errors import LoraplanError


class Convention(StrEnum):
    TINKER = "tinker"
    PEFT = "peft"
    PER_EXPERT = "per-expert"


class Component(StrEnum):
    ATTN = "attn"
    MLP = "mlp"  # dense MLP and shared experts
    EXPERTS = "experts"  # routed experts
    UNEMBED = "unembed"


# Tinker leaves the MLA up-projections out (they sit behind a low-rank bottleneck already).
TINKER_EXCLUDED_LEAVES = frozenset({"q_b_proj", "kv_b_proj"})

# Names accepted in --targets besides module names.
TARGET_GROUPS: dict[str, frozenset[Component]] = {
    "all": frozenset({Component.ATTN, Component.MLP, Component.EXPERTS}),
    "attn": frozenset({Component.ATTN}),
    "mlp": frozenset({Component.MLP, Component.EXPERTS}),
    "dense-mlp": frozenset({Component.MLP}),
    "experts": frozenset({Component.EXPERTS}),
}


@dataclass(frozen=True)
class AdapterBudget:
    """Per-rank LoRA parameters by component, and the weights that were adapted.

    per_rank: params per unit of rank for each component (attn, mlp, experts, unembed); a
        component that is not targeted is 0.
    adapted: (weight name, params per rank) for every adapted weight, in model order.
    """

    model_id: str
    convention: Convention
    per_rank: dict[Component, int]
    adapted: tuple[tuple[str, int], ...]

    @property
    def mlp_total(self) -> int:
        """Dense MLP + shared + routed experts: what Tinker calls `mlp`."""
        return self.per_rank[Component.MLP] + self.per_rank[Component.EXPERTS]

    @property
    def per_rank_total(self) -> int:
        return sum(self.per_rank.values())

    def params(self, rank: int) -> int:
        return rank * self.per_rank_total

    def as_dict(self) -> dict[str, int]:
        out = {c.value: n for c, n in self.per_rank.items()}
        out["mlp_total"] = self.mlp_total
        return out


def component_of(weight: Weight) -> Component | None:
    """The component a weight's LoRA counts under, or None for weights no convention adapts."""
    match weight.role:
        case Role.ATTN:
            return Component.ATTN
        case Role.MLP | Role.SHARED_EXPERT:
            return Component.MLP
        case Role.EXPERT:
            return Component.EXPERTS
        case Role.UNEMBED:
            return Component.UNEMBED
    return None


def _logical(weight: Weight) -> list[tuple[int, int]]:
    """(in, out) of each separate matrix a (possibly fused) weight stands for."""
    return [(weight.in_features, out) for out in weight.logical_outs]


def cost_per_rank(weight: Weight, convention: Convention, hidden_size: int) -> int:
    """LoRA params per unit of rank for one weight under a convention."""
    experts = weight.num_experts
    if convention is Convention.PEFT:
        return experts * (weight.in_features + weight.out_features)
    if experts == 1:
        return sum(i + o for i, o in _logical(weight))
    if convention is Convention.PER_EXPERT:
        return sum(experts * (i + o) for i, o in _logical(weight))
    total = 0  # tinker shared-outer: the hidden-size side is one factor for all experts
    for i, o in _logical(weight):
        if i == hidden_size:
            total += i + experts * o
        elif o == hidden_size:
            total += o + experts * i
        else:
            total += experts * (i + o)
    return total


def is_candidate(weight: Weight, convention: Convention) -> bool:
    """Whether the convention ever adapts this weight (before the user's component choice)."""
    if weight.role is Role.EMBED or weight.kind is Kind.EMBEDDING:
        return False
    if convention is Convention.PEFT:
        return weight.kind in (Kind.LINEAR, Kind.EXPERT_PARAM)
    if weight.role in (Role.ROUTER, Role.OTHER):
        return False
    return weight.leaf not in TINKER_EXCLUDED_LEAVES


def _peft_component(weight: Weight) -> Component:
    """Routers and gates that PEFT may train (shared_expert_gate, v4-renamed `gate`) count as mlp."""
    return component_of(weight) or Component.MLP


def parse_targets(targets: str | list[str] | None) -> tuple[frozenset[Component], list[str]]:
    """Split a --targets value into component groups and explicit module names."""
    if targets is None:
        return TARGET_GROUPS["all"], []
    items = targets.split(",") if isinstance(targets, str) else list(targets)
    comps: set[Component] = set()
    names: list[str] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        if item in TARGET_GROUPS:
            comps |= TARGET_GROUPS[item]
        else:
            names.append(item)
    return frozenset(comps), names


def matches_name(weight: Weight, target: str) -> bool:
    """PEFT's list matching: the full name, or a suffix after a dot."""
    return weight.name == target or weight.name.endswith("." + target)


def peft_spec(arch: Architecture, comps: frozenset[Component], names: list[str]) -> PeftSpec:
    """The LoraConfig targets that adapt the chosen components (what `plan` writes for PEFT)."""
    if ALL_LINEAR in names:
        return PeftSpec(ALL_LINEAR)
    leaves: dict[str, None] = {}
    params: dict[str, None] = {}
    for weight in arch.weights:
        comp = component_of(weight)
        if comp is None or comp not in comps or not is_candidate(weight, Convention.PEFT):
            continue
        if weight.kind is Kind.EXPERT_PARAM:
            params.setdefault(".".join(weight.name.split(".")[-2:]), None)
        else:
            leaves.setdefault(weight.leaf, None)
    for name in names:
        leaves.setdefault(name, None)
    return PeftSpec(tuple(leaves), tuple(params))


def _peft_budget(arch: Architecture, comps: frozenset[Component], names: list[str]) -> list[tuple[Weight, int]]:
    spec = peft_spec(arch, comps, names)
    adapted = []
    for weight, rank_factor in resolve(arch, spec):
        adapted.append((weight, rank_factor * cost_per_rank(weight, Convention.PEFT, arch.hidden_size)))
    return adapted


def budget(
    arch: Architecture,
    convention: Convention | str = Convention.TINKER,
    targets: str | list[str] | None = None,
    unembed: bool = True,
) -> AdapterBudget:
    """Per-rank LoRA params of `arch` for the chosen components (or module names)."""
    conv = Convention(convention)
    comps, names = parse_targets(targets)
    if unembed:
        comps = comps | {Component.UNEMBED}
    if not comps and not names:
        raise LoraplanError("no LoRA target chosen: pick at least one of attn, mlp, experts or unembed")
    unknown = unmatched_targets(arch, [n for n in names if n != ALL_LINEAR])
    if conv is Convention.PEFT:  # PEFT also moves v4 MoE names (gate_proj, w1) onto the stacked experts
        unknown = [n for n in unknown if not resolve(arch, PeftSpec((n,), ()))]
    if unknown:
        raise LoraplanError(f"targets {', '.join(unknown)}: no weight of {arch.model_id} has that name; use "
                            f"{', '.join(TARGET_GROUPS)} or module names ({', '.join(arch.module_leaves)})")
    if conv is Convention.PEFT:
        costed = _peft_budget(arch, comps, names)
    else:
        costed = []
        for weight in arch.weights:
            comp = component_of(weight)
            if comp is None or not is_candidate(weight, conv):
                continue
            if comp in comps or any(matches_name(weight, n) for n in names):
                costed.append((weight, cost_per_rank(weight, conv, arch.hidden_size)))
    if not costed:
        raise LoraplanError(f"targets {targets!r} match no weight of {arch.model_id}")
    per_rank = dict.fromkeys(Component, 0)
    for weight, cost in costed:
        per_rank[_peft_component(weight)] += cost
    return AdapterBudget(arch.model_id, conv, per_rank, tuple((w.name, c) for w, c in costed))


def unmatched_targets(arch: Architecture, names: list[str]) -> list[str]:
    """Target names that match no weight of the model (PEFT drops these silently)."""
    return [n for n in names if n not in TARGET_GROUPS and not any(matches_name(w, n) for w in arch.weights)]
