"""What a trainer will actually adapt for a config's targets on a given model.

PEFT-based trainers (PEFT, TRL, Axolotl, LLaMA-Factory, Unsloth) go through
`peft_rules.resolve`, the simulation of PEFT 0.21 on transformers 5 that the test suite holds to
PEFT itself: names match by dotted suffix, names that match nothing are dropped without a word
as long as one name matched, and v4 MoE names (`gate_proj`, `w1`, ...) are moved to the stacked
expert parameters, so a dense MLP or shared expert with those names is no longer adapted. Each
trainer's own spelling of "every linear layer" is expanded first (Axolotl `lora_target_linear`,
LLaMA-Factory `all`: the model's linear leaf names, as their `find_all_linear_*` helpers return;
PEFT `all-linear`), and Unsloth's automatic expert targets are added. torchtune matches its own
module names without PEFT's conversion; Tinker adapts every weight matrix.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from loraplan.arch.conventions import Component, Convention, component_of, cost_per_rank, is_candidate, peft_spec
from loraplan.arch.model import Architecture, Kind, Role, Weight
from loraplan.arch.peft_rules import (
    ALL_LINEAR,
    PeftSpec,
    converted_parameter,
    dotted_suffixes,
    expert_target_names,
    resolve,
)
from loraplan.errors import LoraplanError
from loraplan.setup import LoraSpec

PEFT_BASED = frozenset({"peft", "trl", "axolotl", "llamafactory", "unsloth"})
TARGET_PARAMETERS = frozenset({"peft", "trl", "axolotl", "unsloth"})  # formats that can name stacked experts
REGEX_CHARS = re.compile(r"[*+?|()\[\]{}^$\\]")


@dataclass(frozen=True)
class Adaptation:
    """The weights a trainer adapts, and what happened to each target name.

    adapted: (weight, rank multiplier) per adapted weight (2 for PEFT's fused gate_up_proj of both halves).
    unmatched: target names that reach no weight at all (silently ignored by PEFT).
    dropped: Linear weights a target name matches that PEFT's MoE conversion leaves frozen.
    how: one phrase naming the simulation, for evidence.
    """

    adapted: tuple[tuple[Weight, int], ...]
    unmatched: tuple[str, ...]
    dropped: tuple[Weight, ...]
    how: str

    @property
    def components(self) -> frozenset[Component]:
        return frozenset(c for w, _ in self.adapted if (c := component_of(w)) is not None)

    def tinker_per_rank(self, arch: Architecture) -> int:
        """Per-rank capacity kept, in the doctrine's unit (tinker convention, as tinker-cookbook counts it)."""
        return sum(tinker_cost(w, arch) for w, _ in self.adapted)

    def trainable_per_rank(self, arch: Architecture, fmt: str | None) -> int:
        """LoRA params per unit of rank that the trainer really trains."""
        if fmt == "tinker":
            return self.tinker_per_rank(arch)
        return sum(m * cost_per_rank(w, Convention.PEFT, arch.hidden_size) for w, m in self.adapted)


def tinker_cost(weight: Weight, arch: Architecture) -> int:
    if component_of(weight) is None or not is_candidate(weight, Convention.TINKER):
        return 0
    return cost_per_rank(weight, Convention.TINKER, arch.hidden_size)


def linear_leaves(arch: Architecture) -> tuple[str, ...]:
    """Leaf names of every Linear but the output embedding: Axolotl's and LLaMA-Factory's "all linear"."""
    return tuple(dict.fromkeys(w.leaf for w in arch.weights if w.kind is Kind.LINEAR and w.role is not Role.UNEMBED))


def _suffix(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def expert_parameters(arch: Architecture) -> tuple[str, ...]:
    """The `target_parameters` that reach this model's stacked experts (what `plan` writes)."""
    return peft_spec(arch, frozenset({Component.EXPERTS}), []).target_parameters


def adaptation(lora: LoraSpec, fmt: str | None, arch: Architecture) -> Adaptation | None:
    """Simulate the trainer; None when the targets are unknown (not stated and no default)."""
    if fmt == "tinker":
        adapted = [(w, 1) for w in arch.weights if tinker_cost(w, arch) > 0]
        return Adaptation(tuple(adapted), (), (), "as Tinker adapts every weight matrix")
    if lora.target_modules is None and not lora.target_parameters:
        return None
    names = list(lora.target_modules or ())
    params = tuple(lora.target_parameters or ())
    if fmt == "torchtune":
        return _torchtune_match(names, arch)
    if fmt in ("axolotl", "llamafactory") and ALL_LINEAR in names:
        names = [n for n in names if n != ALL_LINEAR] + list(linear_leaves(arch))
    mapped: set[str] = set()
    if fmt == "unsloth" and arch.is_moe and not params:
        params, mapped = unsloth_expert_parameters(names, arch)
        names = [n for n in names if n not in mapped or resolve(arch, PeftSpec((n,), ()))]
    # Every step below is linear in the number of names (sets of dotted suffixes, each regex compiled and run
    # once): a 1 MiB config can list 144k names, and a name-by-weight loop took minutes.
    regexes = list(dict.fromkeys(n for n in names if REGEX_CHARS.search(n)))
    plain = [n for n in names if not REGEX_CHARS.search(n)]
    modules: str | tuple[str, ...] = ALL_LINEAR if plain == [ALL_LINEAR] else tuple(plain)
    chosen = {w.name: (w, m) for w, m in resolve(arch, PeftSpec(modules, params))} if (plain or params) else {}
    by_regex = {pattern: _regex_match(pattern, arch) for pattern in regexes}
    for weights in by_regex.values():
        for w in weights:
            chosen.setdefault(w.name, (w, 1))
    linear_tails, param_tails = _tails(arch)

    def reaches(name: str) -> bool:  # == bool(resolve(arch, PeftSpec((name,), ()))), without a pass per name
        param = converted_parameter(arch, name)
        return param in param_tails if param is not None else name in linear_tails

    unmatched = tuple(n for n in plain if n != ALL_LINEAR and not reaches(n))
    unmatched += tuple(p for p in params if p not in param_tails)
    unmatched += tuple(r for r, weights in by_regex.items() if not weights)
    wanted = set(plain)
    named = [w for w in arch.weights if w.kind is Kind.LINEAR and not wanted.isdisjoint(dotted_suffixes(w.name))]
    dropped = tuple(w for w in named if w.name not in chosen)
    how = "by PEFT's target matching, simulated for PEFT 0.21 on transformers 5"
    return Adaptation(tuple(chosen.values()), unmatched, dropped, how)


def _tails(arch: Architecture) -> tuple[set[str], set[str]]:
    """Dotted suffixes of every Linear module name, and of every expert / router parameter name."""
    linear: set[str] = set()
    params: set[str] = set()
    for w in arch.weights:
        if w.kind is Kind.LINEAR:
            linear |= dotted_suffixes(w.name)
        elif w.kind in (Kind.EXPERT_PARAM, Kind.ROUTER_PARAM):
            params |= dotted_suffixes(w.name if w.kind is Kind.EXPERT_PARAM else f"{w.name}.weight")
    return linear, params


REGEX_SECONDS = 2.0  # per pattern over all module names: a catastrophic pattern is refused, not run for hours


# Unsloth's get_moe_target_parameters (unsloth/models/_utils.py): on an MoE model, MLP names in target_modules
# switch LoRA on for the stacked experts: gate_proj, up_proj or gate_up_proj -> experts.gate_up_proj,
# down_proj -> experts.down_proj (the path the model has, mlp.experts.* or experts.*).
UNSLOTH_MOE_NAMES = {"gate_proj": "gate_up_proj", "up_proj": "gate_up_proj", "gate_up_proj": "gate_up_proj",
                     "down_proj": "down_proj"}


def unsloth_expert_parameters(names: list[str], arch: Architecture) -> tuple[tuple[str, ...], set[str]]:
    """The expert parameters Unsloth adds for these target names, and the names it consumed doing so."""
    wanted = {UNSLOTH_MOE_NAMES[n] for n in names if n in UNSLOTH_MOE_NAMES}
    params = tuple(p for p in expert_parameters(arch) if p.rsplit(".", 1)[-1] in wanted)
    used = {n for n in names if n in UNSLOTH_MOE_NAMES and UNSLOTH_MOE_NAMES[n] in
            {p.rsplit(".", 1)[-1] for p in params}}
    return params, used


def _regex_match(pattern: str, arch: Architecture) -> list[Weight]:
    """PEFT treats a target string as a regex that must match the whole module name.

    The `regex` engine (a core dependency) runs it, for its time limit: Python's `re` has none, and a
    pattern such as `(.*.*)*X` backtracks for hours on a module name.
    """
    import regex

    linear = [w for w in arch.weights if w.kind is Kind.LINEAR]
    try:
        fast = regex.compile(pattern)
    except (regex.error, RecursionError, OverflowError, ValueError):
        return []
    deadline = time.monotonic() + REGEX_SECONDS
    try:
        return [w for w in linear if fast.fullmatch(w.name, timeout=max(0.001, deadline - time.monotonic()))]
    except TimeoutError:
        raise LoraplanError(f"target pattern `{pattern[:80]}` takes over {REGEX_SECONDS:g} s to match the model's "
                            "module names; refusing (simplify the regular expression)") from None


# torchtune builds its own modules and converts HF checkpoints into them, so its names mean roles, not HF module
# paths: q_proj/k_proj/v_proj are parts of a fused qkv_proj where HF fuses them (Phi-3), output_proj is HF's
# o_proj, `apply_lora_to_mlp` adapts every MLP weight (w1/w2/w3: gate_up_proj where fused) and, in its MoE
# builders, the experts (torchtune.modules.peft.LoRAGroupedExperts in Llama 4) and shared experts;
# `apply_lora_to_output` adapts the output projection. The reader writes these as q_proj.. o_proj, gate_proj,
# up_proj, down_proj and lm_head.
TORCHTUNE_ATTN = {"q_proj": ("q_proj", "qkv_proj", "c_attn", "query_key_value", "Wqkv", "q_a_proj", "q_b_proj"),
                  "k_proj": ("k_proj", "qkv_proj", "c_attn", "query_key_value", "Wqkv", "kv_a_proj_with_mqa",
                             "kv_b_proj"),
                  "v_proj": ("v_proj", "qkv_proj", "c_attn", "query_key_value", "Wqkv", "kv_a_proj_with_mqa",
                             "kv_b_proj"),
                  "o_proj": ("o_proj", "out_proj", "dense", "c_proj")}
TORCHTUNE_MLP = frozenset({"gate_proj", "up_proj", "down_proj"})


def _torchtune_match(names: list[str], arch: Architecture) -> Adaptation:
    """torchtune's builders adapt by role (see TORCHTUNE_ATTN); names outside its vocabulary match by suffix."""
    chosen: dict[str, Weight] = {}
    unmatched: list[str] = []
    for name in names:
        if name in TORCHTUNE_ATTN:
            hits = [w for w in arch.weights if w.role is Role.ATTN and w.leaf in TORCHTUNE_ATTN[name]]
        elif name in TORCHTUNE_MLP:
            hits = [w for w in arch.weights if w.role in (Role.MLP, Role.EXPERT, Role.SHARED_EXPERT)]
        elif name == "lm_head":
            hits = list(arch.by_role(Role.UNEMBED))
        else:
            hits = [w for w in arch.weights if w.kind is Kind.LINEAR and _suffix(w.name, name)]
        if not hits:
            unmatched.append(name)
        chosen.update((w.name, w) for w in hits)
    adapted = tuple((w, 1) for w in arch.weights if w.name in chosen)  # model order
    return Adaptation(adapted, tuple(unmatched), (), "by torchtune's builders (its own module names, adapted by "
                      "role: q/k/v/output projections, the whole MLP and MoE experts, the output layer)")


def all_layer_targets(arch: Architecture, fmt: str | None, unembed: bool) -> dict[str, object]:
    """The target fields that adapt every layer (attention, MLP, experts) in this format: the fix."""
    comps = frozenset({Component.ATTN, Component.MLP, Component.EXPERTS} | ({Component.UNEMBED} if unembed else set()))
    spec = peft_spec(arch, comps, [])
    modules = tuple(spec.target_modules) if not isinstance(spec.target_modules, str) else (spec.target_modules,)
    if fmt in TARGET_PARAMETERS:
        return {"lora.target_modules": modules, "lora.target_parameters": spec.target_parameters or None}
    if fmt == "llamafactory" and spec.target_parameters:
        extra = expert_target_names(arch)
        return {"lora.target_modules": tuple(dict.fromkeys(modules + extra))}
    if fmt == "tinker":
        return {}
    return {"lora.target_modules": modules}
