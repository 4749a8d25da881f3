"""Checks 1-3: where the adapters go. All layers, MoE experts included, unembedding too.

Capacity shares use the tinker convention, the unit tinker-cookbook counts in (attention-only keeps ~38%
of per-rank capacity on a dense Qwen, ~3% on DeepSeek-V3.1); what is adapted comes from the
trainer's own matching (doctor/targets.py), so names that match nothing count for nothing.
"""

from __future__ import annotations

from loraplan.arch.conventions import Component, budget
from loraplan.arch.model import Kind, Role
from loraplan.doctor.context import CheckContext, show
from loraplan.doctor.findings import Finding, Severity, Skipped
from loraplan.doctor.targets import all_layer_targets, linear_leaves, tinker_cost
from loraplan.rules.sources import SEED_ARTICLE, SEED_DOCTRINE, SEED_RULES

PLACEMENT_SOURCE = (f"{SEED_ARTICLE}, rule 1: apply LoRA to all layers, MoE experts included; {SEED_RULES}: "
                    "attention-only keeps ~38% of per-rank capacity on a dense model, ~3% on DeepSeek-V3.1")
PEFT_MATCHING = ("PEFT ignores target names that match nothing when another name matches "
                 "(peft/tuners/tuners_utils.py); loraplan arch/peft_rules.py simulates it")
CONVERSION = "PEFT's transformers-v5 MoE conversion (peft/utils/transformers_weight_conversion.py)"
ATTENTION_NAMES = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "c_attn", "query_key_value", "Wqkv",
                             "query", "key", "value", "out_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa",
                             "kv_b_proj", "output_proj", "c_proj", "dense", "lm_head"})
LOST_SHARE_WARNING = 0.10  # a conversion that freezes more than this share of capacity is a warning


def check_placement(ctx: CheckContext) -> list[Finding | Skipped]:
    """Checks 1, 2 and 3 together: they read the same adaptation."""
    if not ctx.setup.is_lora:
        return [Skipped(1, "adapter placement", "full fine-tuning trains every weight")]
    if ctx.arch is None:
        return _without_model(ctx)
    if ctx.adapted is None:
        return [Skipped(1, "adapter placement", f"{ctx.key('lora.target_modules')} is not set and the trainer's "
                        "default targets for this model are unknown")]
    out: list[Finding | Skipped] = []
    comps = ctx.adapted.components
    unmatched = _unmatched(ctx)
    if unmatched is not None:
        out.append(unmatched)
    has_mlp = bool(comps & {Component.MLP, Component.EXPERTS})
    if not has_mlp and ctx.arch.by_role(Role.MLP, Role.EXPERT, Role.SHARED_EXPERT):
        out.append(_attention_only(ctx, unmatched is not None))
    elif ctx.arch.is_moe and Component.EXPERTS not in comps:
        out.append(_experts_frozen(ctx))
    dropped = _dropped(ctx)
    if dropped is not None:
        out.append(dropped)
    if Component.UNEMBED not in comps and ctx.arch.by_role(Role.UNEMBED) and not unembed_saved(ctx):
        out.append(_unembed(ctx))
    return out


def _shares(ctx: CheckContext) -> tuple[int, int, dict[str, int]]:
    assert ctx.arch is not None and ctx.adapted is not None
    full = budget(ctx.arch, "tinker", "all", unembed=True)
    kept = ctx.adapted.tinker_per_rank(ctx.arch)
    return kept, full.per_rank_total, {c.value: n for c, n in full.per_rank.items() if n}


def _torchtune_seen(ctx: CheckContext) -> str:
    """torchtune's own settings for the targets: lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output."""
    from loraplan.formats.torchtune import ATTN, MLP

    names = set(ctx.setup.lora.target_modules or ())
    attn = [ATTN[n] for n in ATTN if n in names]
    mlp, output = any(n in names for n in MLP), "lm_head" in names
    text = (f"model.lora_attn_modules = [{', '.join(attn)}], model.apply_lora_to_mlp = {str(mlp).lower()}, "
            f"model.apply_lora_to_output = {str(output).lower()}")
    source = ctx.assumed_source("lora.target_modules")
    return f"{text} (not set; the default of {source})" if source else text


def _targets_seen(ctx: CheckContext) -> str:
    if ctx.format == "torchtune" and ctx.setup.lora.target_modules is not None:
        return _torchtune_seen(ctx)
    lora = ctx.setup.lora
    order = {leaf: i for i, leaf in enumerate(ctx.arch.module_leaves)} if ctx.arch else {}
    names = sorted(lora.target_modules or (), key=lambda n: order.get(n, len(order)))  # model order, not sorted
    text = ctx.seen("lora.target_modules", shown=show(names))
    if lora.target_parameters:
        text += f", {ctx.seen('lora.target_parameters')}"
    return text


def _fix_text(ctx: CheckContext, changes: dict[str, object]) -> str:
    if ctx.format == "torchtune":
        text = "set model.lora_attn_modules: [q_proj, k_proj, v_proj, output_proj] and model.apply_lora_to_mlp: true"
        if ctx.arch is not None and ctx.arch.is_moe:
            text += (" (torchtune's builders cannot adapt stacked MoE experts; use PEFT, TRL, Axolotl or Unsloth "
                     "for an MoE model)")
        return text
    if not changes and ctx.format == "llamafactory" and ctx.arch is not None and ctx.arch.is_moe:
        return _cannot_reach_experts(ctx)
    if not changes:
        return "adapt every weight matrix: attention, MLP and MoE experts"
    parts = []
    modules = changes.get("lora.target_modules")
    if isinstance(modules, tuple):
        shown = ",".join(modules) if ctx.format == "llamafactory" else show(modules)
        parts.append(f"{ctx.key('lora.target_modules')}: {shown}")
    params = changes.get("lora.target_parameters")
    if isinstance(params, tuple):
        parts.append(f"{ctx.key('lora.target_parameters')}: {show(params)}")
    what = "every attention, MLP and expert weight" if changes.get("lora.target_parameters") or \
        (ctx.arch is not None and ctx.arch.is_moe) else "every attention and MLP weight"
    return "set " + " and ".join(parts) + f" ({what})"


def _changes(ctx: CheckContext) -> dict[str, object]:
    assert ctx.arch is not None and ctx.adapted is not None
    unembed = Component.UNEMBED in ctx.adapted.components
    if ctx.format == "torchtune" and ctx.arch.is_moe:
        return {}  # no torchtune setting reaches HF stacked experts
    changes = all_layer_targets(ctx.arch, ctx.format, unembed)
    if ctx.format == "unsloth" and ctx.arch.is_moe and changes.get("lora.target_parameters"):
        changes = _unsloth_moe_targets(ctx, changes)
    if ctx.format == "llamafactory" and ctx.arch.is_moe and not reaches_experts(ctx.arch, changes):
        return {}  # no lora_target reaches these experts: a fix that cannot fix is no fix (the text says so)
    if changes.get("lora.target_parameters") and ctx.setup.lora.dropout:
        changes["lora.dropout"] = 0.0  # PEFT's ParamWrapper refuses dropout on expert parameters (check 12)
    return changes


def _unsloth_moe_targets(ctx: CheckContext, changes: dict[str, object]) -> dict[str, object]:
    """Unsloth maps MLP names onto the experts itself (get_moe_target_parameters): the fix names gate_proj,
    up_proj and down_proj rather than the parameters, as Unsloth's own MoE notebooks do."""
    from loraplan.doctor.targets import unsloth_expert_parameters

    assert ctx.arch is not None
    modules = changes.get("lora.target_modules")
    names = list(modules) if isinstance(modules, tuple) else []
    extra = [n for n in ("gate_proj", "up_proj", "down_proj") if n not in names]
    params, _ = unsloth_expert_parameters(names + extra, ctx.arch)
    if set(params) != set(changes.get("lora.target_parameters") or ()):  # type: ignore[call-overload]
        return changes  # Unsloth's mapping would not reach them all: name the parameters
    return {**changes, "lora.target_modules": tuple(names + extra), "lora.target_parameters": None}


def _cannot_reach_experts(ctx: CheckContext) -> str:
    model = ctx.arch.model_id if ctx.arch is not None else "this model"
    return (f"LLaMA-Factory cannot reach the stacked experts of {model} (lora_target names modules, and no "
            "module name converts to these expert parameters); train with PEFT, TRL, Axolotl or Unsloth, which "
            "name them in target_parameters")


def reaches_experts(arch: object, changes: dict[str, object]) -> bool:
    """Whether the fixed targets adapt the experts, by the same simulation as the check."""
    from loraplan.doctor.targets import adaptation
    from loraplan.setup import LoraSpec

    modules = changes.get("lora.target_modules")
    params = changes.get("lora.target_parameters")
    lora = LoraSpec(target_modules=modules if isinstance(modules, tuple) else None,
                    target_parameters=params if isinstance(params, tuple) else None)
    adapted = adaptation(lora, "llamafactory", arch)  # type: ignore[arg-type]
    return adapted is not None and Component.EXPERTS in adapted.components


def _attention_only(ctx: CheckContext, names_lost: bool) -> Finding:
    kept, total, per_rank = _shares(ctx)
    comps = ctx.adapted.components if ctx.adapted else frozenset()
    what = "attention only" if comps <= {Component.ATTN, Component.UNEMBED} else "no MLP or expert weight"
    left_out = ", ".join(f"{name} {n:,}" for name, n in per_rank.items()
                         if Component(name) not in comps)
    evidence = (f"{_targets_seen(ctx)}: on {ctx.arch.model_id if ctx.arch else '?'} this adapts {what} "
                f"({ctx.adapted.how if ctx.adapted else ''}) and keeps {kept:,} of {total:,} LoRA params per rank "
                f"= {kept / total:.1%} (tinker convention; left out: {left_out})")
    if names_lost:
        evidence += "; the MLP names in the list match nothing in this model (see unmatched-targets)"
    changes = _changes(ctx)
    return Finding("attention-only", 1, Severity.ERROR,
                   f"LoRA on {what}: keeps {kept / total:.0%} of the per-rank capacity of all-layer LoRA",
                   evidence, _fix_text(ctx, changes), PLACEMENT_SOURCE,
                   ("lora.target_modules", "lora.target_parameters"), changes)


def _experts_frozen(ctx: CheckContext) -> Finding:
    assert ctx.arch is not None
    kept, total, per_rank = _shares(ctx)
    experts = per_rank.get("experts", 0)
    evidence = (f"{_targets_seen(ctx)} reaches no routed expert of {ctx.arch.model_id} ({ctx.arch.num_experts} "
                f"experts per layer); the experts hold {experts:,} of {total:,} LoRA params per rank "
                f"({experts / total:.0%}); this config keeps {kept / total:.1%}")
    changes = _changes(ctx)
    fix = _fix_text(ctx, changes)
    if ctx.format == "llamafactory" and not changes.get("lora.target_modules"):
        fix = _cannot_reach_experts(ctx)
    return Finding("moe-experts-frozen", 2, Severity.ERROR,
                   f"MoE experts are not adapted: {experts / total:.0%} of the model's LoRA capacity is left out",
                   evidence, fix, PLACEMENT_SOURCE, ("lora.target_modules", "lora.target_parameters"), changes)


def _unmatched(ctx: CheckContext) -> Finding | None:
    assert ctx.arch is not None and ctx.adapted is not None
    names = ctx.adapted.unmatched
    if not names:
        return None
    leaves = ", ".join(linear_leaves(ctx.arch))
    experts = sorted({".".join(w.name.split(".")[-2:]) for w in ctx.arch.weights if w.kind is Kind.EXPERT_PARAM})
    real = f"its linear modules are {leaves}"
    if experts:
        real += f"; its stacked experts are the parameters {', '.join(experts)}"
    evidence = (f"{_targets_seen(ctx)}: {', '.join(names)} match no module or parameter of {ctx.arch.model_id} "
                f"({real}); {PEFT_MATCHING.split(' (')[0]}, so these names train nothing")
    changes = _changes(ctx)
    return Finding("unmatched-targets", 2, Severity.ERROR,
                   f"target names that match nothing in this model: {', '.join(names)}",
                   evidence, _fix_text(ctx, changes), f"{PEFT_MATCHING}; {PLACEMENT_SOURCE}",
                   ("lora.target_modules", "lora.target_parameters"), changes)


def _dropped(ctx: CheckContext) -> Finding | None:
    assert ctx.arch is not None and ctx.adapted is not None
    dropped = ctx.adapted.dropped
    if not dropped:
        return None
    _, total, _ = _shares(ctx)
    lost = sum(tinker_cost(w, ctx.arch) for w in dropped)
    leaves = sorted({w.leaf for w in dropped})
    roles = sorted({w.role.value.replace("_", " ") for w in dropped})
    severity = Severity.WARNING if lost / total > LOST_SHARE_WARNING else Severity.INFO
    evidence = (f"{', '.join(leaves)} name {len(dropped)} {' and '.join(roles)} weights of {ctx.arch.model_id}, but "
                f"PEFT on transformers 5 moves these MoE names to the stacked experts, so those {len(dropped)} weights "
                f"stay frozen: {lost:,} of {total:,} LoRA params per rank ({lost / total:.1%})")
    return Finding("moe-conversion-drops-mlp", 2, severity,
                   f"PEFT's MoE renaming leaves {' and '.join(roles)} weights frozen ({lost / total:.1%} of capacity)",
                   evidence, "nothing in a PEFT target list keeps both on transformers 5; accept the loss if it is "
                   "small, or train on transformers 4, where experts and dense MLP are separate modules",
                   CONVERSION, ("lora.target_modules",))


def _unembed(ctx: CheckContext) -> Finding:
    assert ctx.arch is not None
    _, total, per_rank = _shares(ctx)
    unembed = per_rank.get("unembed", 0)
    where = ("set model.apply_lora_to_output: true" if ctx.format == "torchtune"
             else f"add lm_head to {ctx.key('lora.target_modules')}")
    return Finding("unembed-not-adapted", 3, Severity.INFO,
                   "the unembedding (lm_head) is not adapted",
                   f"{_targets_seen(ctx)} leaves lm_head out ({unembed:,} of {total:,} LoRA params per rank, "
                   f"{unembed / total:.1%}); the doctrine's best placement is MLP + attention + unembedding",
                   where, f"{SEED_DOCTRINE}: layer table (MLP + Attention + Unembed optimal)",
                   ("lora.target_modules",))


def unembed_saved(ctx: CheckContext) -> bool:
    """`modules_to_save` with lm_head trains the unembedding fully (more than LoRA would): it is not left out."""
    return any(name == "lm_head" or name.endswith(".lm_head") for name in ctx.setup.lora.modules_to_save or ())


def _without_model(ctx: CheckContext) -> list[Finding | Skipped]:
    """No model: only the names can be judged, and no share can be computed."""
    out: list[Finding | Skipped] = [Skipped(2, "MoE experts and unmatched target names",
                                            f"no model could be loaded ({ctx.model_note}); pass --model")]
    targets = ctx.setup.lora.target_modules
    if ctx.format == "tinker" or not targets:
        return out
    if set(targets) <= ATTENTION_NAMES and set(targets) - {"lm_head"} and not ctx.setup.lora.target_parameters:
        out.append(Finding("attention-only", 1, Severity.ERROR, "LoRA on attention only",
                           f"{_targets_seen(ctx)}: every name is an attention projection (give --model to see "
                           "the share of capacity kept)",
                           f"add the MLP projections (and MoE experts) to {ctx.key('lora.target_modules')}",
                           PLACEMENT_SOURCE, ("lora.target_modules",)))
    if ctx.setup.lora.unembed is False and not unembed_saved(ctx):
        out.append(Finding("unembed-not-adapted", 3, Severity.INFO, "the unembedding (lm_head) is not adapted",
                           f"{_targets_seen(ctx)} leaves lm_head out",
                           f"add lm_head to {ctx.key('lora.target_modules')}",
                           f"{SEED_DOCTRINE}: layer table (MLP + Attention + Unembed optimal)",
                           ("lora.target_modules",)))
    return out
