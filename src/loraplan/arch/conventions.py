"""Which weights get LoRA and what each costs, under named conventions.

LoRA on a weight (out x in) at rank r adds A (r x in) and B (out x r): r * (in + out) params.
Conventions differ on three things, and each is a published behaviour:

- tinker (default): the Tinker service's count, which reproduces tinker-cookbook's per-rank
  table. All linear weights except embeddings, MoE routers, MLA up-projections (q_b_proj,
  kv_b_proj) and Gated DeltaNet per-head gates (in_proj_a, in_proj_b, in_proj_ba); fused weights
  count as their separate matrices (a Mamba-2 in_proj as its z and x only); MoE experts use
  shared-outer LoRA (the outer factor, on the hidden or latent side, is shared by the E experts
  of a layer: outer + E * inner per matrix). State-space mixers count under attn.
- peft: exactly what HF PEFT trains for the LoraConfig the targets stand for (PEFT itself on
  meta-device models is the oracle in tests/test_peft_equality.py). Module names in the targets,
  `all-linear` included, are PEFT's `target_modules` as typed: lm_head only when listed or when
  unembed is asked for explicitly. Component groups (`all`, `attn`, `mlp`, `experts`) stand for
  the config `plan` writes: the leaf names of the group's nn.Linear weights (lm_head unless
  unembed is turned off) plus `target_parameters` for stacked experts. Routers belong to no group,
  so the default leaves them out, and stacked experts then train at rank r: r * E * (in + out).
  Fused weights (qkv_proj, gate_up_proj) are one matrix. Where PEFT converts v4 MoE names (its
  conversion table, see moe_conversion.py), `gate`, `gate_proj`, `up_proj`, `down_proj` (Mixtral:
  `w1`, `w2`, `w3`) are rewritten to the router and stacked experts as PEFT rewrites them, the
  fused `gate_up_proj` training at 2r, and `all-linear` includes routers and experts that way.
- per-expert: like tinker, but every expert has its own A and B: E * (in + out) per matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from loraplan.arch.model import (
    EXPERT_INPUT_SIDE_LEAVES,
    EXPERT_OUTPUT_SIDE_LEAVES,
    Architecture,
    Kind,
    Role,
    Weight,
)
from loraplan.arch.peft_rules import ALL_LINEAR, PeftSpec, all_linear_names, resolve
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


# Tinker leaves the MLA up-projections out (they sit behind a low-rank bottleneck already), and
# the Gated DeltaNet per-head gate projections (`in_proj_a`, `in_proj_b`; fused `in_proj_ba` in
# Qwen3-Next), whose outputs are one scalar per value head. With those out and the fused
# `in_proj_qkv` counted as its q, k, v matrices, the count equals tinker-cookbook's published
# per-rank table on every Qwen3.5/3.6 model it lists (tests/test_tinker_counts.py).
TINKER_EXCLUDED_LEAVES = frozenset({"q_b_proj", "kv_b_proj", "in_proj_a", "in_proj_b", "in_proj_ba"})

# z, x, B, C, dt: the parts of a Mamba-2 in_proj (see _logical).
MAMBA2_IN_PROJ_PARTS = 5

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
    unembed: whether the unembedding (lm_head) is among them.
    """

    model_id: str
    convention: Convention
    per_rank: dict[Component, int]
    adapted: tuple[tuple[str, int], ...]
    unembed: bool = False

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
        case Role.ATTN | Role.MIXER:  # the layer's sequence mixer, attention or state-space
            return Component.ATTN
        case Role.MLP | Role.SHARED_EXPERT:
            return Component.MLP
        case Role.EXPERT:
            return Component.EXPERTS
        case Role.UNEMBED:
            return Component.UNEMBED
    return None


def _logical(weight: Weight) -> list[tuple[int, int]]:
    """(in, out) of each separate matrix a (possibly fused) weight stands for, as Tinker adapts them.

    A Mamba-2 `in_proj` holds z, x, B, C and dt; Tinker adapts z and x only, leaving the
    input-dependent state parameters out as it leaves the Gated DeltaNet gates out. With that
    rule loraplan equals Tinker's published attn count for Nemotron-3 Nano and Super exactly.
    """
    outs = weight.logical_outs
    if weight.role is Role.MIXER and weight.leaf == "in_proj" and len(outs) == MAMBA2_IN_PROJ_PARTS:
        outs = outs[:2]
    return [(weight.in_features, out) for out in outs]


def cost_per_rank(weight: Weight, convention: Convention, hidden_size: int) -> int:
    """LoRA params per unit of rank for one weight under a convention."""
    experts = weight.num_experts
    if convention is Convention.PEFT:
        return experts * (weight.in_features + weight.out_features)
    if experts == 1:
        return sum(i + o for i, o in _logical(weight))
    if convention is Convention.PER_EXPERT:
        return sum(experts * (i + o) for i, o in _logical(weight))
    # tinker shared-outer: the outer side (hidden, or the latent of a latent MoE) is one factor for all experts
    outer_is_input = weight.leaf in EXPERT_INPUT_SIDE_LEAVES
    known = outer_is_input or weight.leaf in EXPERT_OUTPUT_SIDE_LEAVES
    total = 0
    for i, o in _logical(weight):
        if outer_is_input or (not known and i == hidden_size):
            total += i + experts * o
        elif known or o == hidden_size:
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
    """The LoraConfig targets that adapt the chosen components and names (what `plan` writes for PEFT).

    Component groups become the leaf names of their weights plus `target_parameters` for stacked
    experts (routers are in no component, so they stay out); explicit names are passed as typed.
    `all-linear` alone stays PEFT's shorthand; with anything else it is spelled out as the names
    PEFT resolves it to (see `all_linear_names`).
    """
    if names == [ALL_LINEAR] and not comps:
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
        for leaf in all_linear_names(arch) if name == ALL_LINEAR else [name]:
            leaves.setdefault(leaf, None)
    return PeftSpec(tuple(leaves), tuple(params))


def _peft_budget(arch: Architecture, comps: frozenset[Component], names: list[str]) -> list[tuple[Weight, int]]:
    """What PEFT trains: `all-linear` resolved as PEFT resolves the shorthand, the rest as a target list."""
    chosen: dict[str, tuple[Weight, int]] = {}
    if ALL_LINEAR in names:  # the shorthand exactly as PEFT resolves it
        chosen.update((w.name, (w, m)) for w, m in resolve(arch, PeftSpec(ALL_LINEAR)))
    rest = [n for n in names if n != ALL_LINEAR]
    if comps or rest:
        chosen.update((w.name, (w, m)) for w, m in resolve(arch, peft_spec(arch, comps, rest)))
    order = {w.name: i for i, w in enumerate(arch.weights)}
    adapted = sorted(chosen.values(), key=lambda item: order[item[0].name])
    return [(w, m * cost_per_rank(w, Convention.PEFT, arch.hidden_size)) for w, m in adapted]


def effective_unembed(targets: str | list[str] | None, unembed: bool | None) -> bool:
    """Whether lm_head is adapted: as asked, else yes for component groups and no for module names alone.

    A list of module names is what PEFT gets as `target_modules`, and PEFT adapts lm_head only
    when it is listed; the groups (`all`, `attn`, ...) follow the doctrine, which adapts it.
    """
    if unembed is not None:
        return unembed
    comps, names = parse_targets(targets)
    return bool(comps) or not names


def budget(
    arch: Architecture,
    convention: Convention | str = Convention.TINKER,
    targets: str | list[str] | None = None,
    unembed: bool | None = None,
) -> AdapterBudget:
    """Per-rank LoRA params of `arch` for the chosen components (or module names).

    unembed: True/False adapts lm_head or not; None (not given) follows `effective_unembed`.
    """
    conv = Convention(convention)
    comps, names = parse_targets(targets)
    with_unembed = effective_unembed(targets, unembed)
    if with_unembed:
        comps = comps | {Component.UNEMBED}
    if not comps and not names:
        raise LoraplanError("no LoRA target chosen: pick at least one of attn, mlp, experts or unembed")
    unknown = unmatched_targets(arch, [n for n in names if n != ALL_LINEAR])
    if conv is Convention.PEFT:  # PEFT also moves v4 MoE names (gate_proj, w1) onto the stacked experts
        unknown = [n for n in unknown if not resolve(arch, PeftSpec((n,), ()))]
        if len(unknown) < len(names) or comps:  # PEFT ignores names that match nothing once one name matches
            unknown = []
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
    unembed_adapted = per_rank[Component.UNEMBED] > 0
    return AdapterBudget(arch.model_id, conv, per_rank, tuple((w.name, c) for w, c in costed), unembed_adapted)


def unmatched_targets(arch: Architecture, names: list[str]) -> list[str]:
    """Target names that match no weight of the model (PEFT drops these silently)."""
    return [n for n in names if n not in TARGET_GROUPS and not any(matches_name(w, n) for w in arch.weights)]
