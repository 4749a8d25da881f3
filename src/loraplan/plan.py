"""Architecture + data facts + task + overrides -> Plan (a TrainingSetup with its reasons).

Each number is set by one rule and recorded with that rule's reason and source; a user override
replaces the rule and the explanation says so. Nothing here does I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from loraplan.arch.conventions import AdapterBudget, Component, Convention, budget, parse_targets, peft_spec
from loraplan.arch.model import Architecture
from loraplan.errors import LoraplanError
from loraplan.estimates import ComputeEstimate, MemoryEstimate, compute, memory
from loraplan.rules import batch as batch_rules
from loraplan.rules.calibration import Calibration, ModelTraits
from loraplan.rules.capacity import CapacityResult, CapacityRule, next_power_of_two, validate_capacity
from loraplan.rules.lr import TRANSFER_SOURCE, recommend_lr, rslora_lr_factor, transfer_lr
from loraplan.rules.methods import DEFAULT_ALPHA, DEFAULTS, MAX_RANK, RSLORA_MIN_RANK
from loraplan.rules.numbers import fmt_number, positive_finite
from loraplan.rules.sources import SEED_DOCTRINE, SEED_RANK_ALPHA, SEED_RULES
from loraplan.setup import DataSpec, LoraSpec, LossMask, Method, MethodExtras, Optimization, Schedule, TrainingSetup

USER = "your override"


@dataclass(frozen=True)
class Explanation:
    """Why one field has its value."""

    field: str
    value: object
    reason: str
    source: str


@dataclass(frozen=True)
class DataFacts:
    """What the token counter (or the user) says about the data."""

    path: str | None = None
    examples: int | None = None
    trained_tokens: int | None = None
    total_tokens: int | None = None
    format: str | None = None
    loss_mask: LossMask | None = None
    estimated: bool = False


@dataclass(frozen=True)
class PlanRequest:
    method: Method = Method.SFT
    data: DataFacts = DataFacts()
    convention: Convention = Convention.TINKER
    targets: str = "all"
    unembed: bool = True
    rank: int | None = None
    max_rank: int = MAX_RANK
    alpha: float | None = None
    rslora: bool = False
    lr: float | None = None
    transfer_from: Architecture | None = None
    transfer_lr: float | None = None
    batch_size: int | None = None
    micro_batch_size: int = 4
    num_devices: int = 1
    epochs: float | None = None
    max_steps: int | None = None
    schedule: Schedule = Schedule.LINEAR
    seq_len: int = 2048
    gpu: str = "h100"
    calibration: Calibration | None = None
    capacity_rule: CapacityRule = CapacityRule.PARAMS
    short_run: bool = False
    teacher: str | None = None


@dataclass(frozen=True)
class Plan:
    setup: TrainingSetup
    explanations: tuple[Explanation, ...]
    warnings: tuple[str, ...]
    budget: AdapterBudget
    capacity: CapacityResult | None
    memory: MemoryEstimate
    compute: ComputeEstimate
    trainable_params: int
    model_params: int
    peft_target_modules: tuple[str, ...] = ()
    peft_target_parameters: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    lr_rule: str = ""  # one line: which rule answered, extrapolated or not, and the factors applied

    def why(self, name: str) -> Explanation:
        return next(e for e in self.explanations if e.field == name)


class _Recorder:
    def __init__(self) -> None:
        self.explanations: list[Explanation] = []
        self.warnings: list[str] = []
        self.lr_rule = "chosen by the user"

    def set(self, name: str, value: object, reason: str, source: str) -> None:
        self.explanations.append(Explanation(name, value, reason, source))


def _choose_rank(req: PlanRequest, per_rank: int, rec: _Recorder) -> tuple[int, CapacityResult | None]:
    defaults = DEFAULTS[req.method]
    tokens = req.data.trained_tokens
    if req.rank is not None:
        result = validate_capacity(tokens, per_rank, req.rank, req.capacity_rule) if tokens is not None else None
        rec.set("lora.rank", req.rank, "chosen by the user", USER)
        if result is not None and result.status.value == "UNDERCAPACITY" and req.method is not Method.RL:
            rec.warnings.append(f"capacity: {result.message}")
        return req.rank, result
    rank = defaults.rank
    if tokens is None or req.method is Method.RL:
        reason = f"{req.method.value} default" + (f" ({defaults.note})" if defaults.note else "")
        if tokens is None and req.method is not Method.RL:
            reason += "; no token count given, so capacity is unchecked"
        rec.set("lora.rank", rank, reason, defaults.source)
        return rank, (validate_capacity(tokens, per_rank, rank, req.capacity_rule) if tokens is not None else None)
    result = validate_capacity(tokens, per_rank, rank, req.capacity_rule)
    if result.status.value == "OK":
        rec.set("lora.rank", rank, f"{req.method.value} default; capacity holds: {result.message}", result.source)
        return rank, result
    suggested = next_power_of_two(result.min_rank)
    if suggested > req.max_rank:
        rec.warnings.append(
            f"capacity: even rank {req.max_rank} gives {req.max_rank * per_rank:,} params for {tokens:,} trained "
            f"tokens (needs rank {result.min_rank}); full fine-tuning is recommended for this corpus")
        rank = req.max_rank
    else:
        rank = suggested
    final = validate_capacity(tokens, per_rank, rank, req.capacity_rule)
    rec.set("lora.rank", rank,
            f"raised from {defaults.rank}: {tokens:,} trained tokens need rank >= {result.min_rank} at "
            f"{per_rank:,} params per rank; next power of two (capped at {req.max_rank})", result.source)
    return rank, final


def _choose_lr(arch: Architecture, req: PlanRequest, batch: int, rec: _Recorder, rank: int) -> float:
    defaults = DEFAULTS[req.method]
    if req.lr is not None:
        rec.set("optim.learning_rate", req.lr, "chosen by the user", USER)
        return req.lr
    if req.method is not Method.SFT:
        assert defaults.lr is not None and defaults.lr_range is not None
        low, high = defaults.lr_range
        rec.lr_rule = f"{req.method.value} working default"
        rec.set("optim.learning_rate", defaults.lr,
                f"{req.method.value} working default (range {fmt_number(low)}-{fmt_number(high)} at rank "
                f"{defaults.rank})",
                defaults.source)
        return defaults.lr
    if req.transfer_from is not None:
        if req.transfer_lr is None:
            raise LoraplanError("--transfer-from needs --transfer-lr (the LR known to work on that model)")
        lr = transfer_lr(req.transfer_lr, req.transfer_from.total_params, arch.total_params)
        rec.lr_rule = f"transferred from {req.transfer_from.model_id}"
        rec.set("optim.learning_rate", lr,
                f"transferred from {req.transfer_from.model_id} at {fmt_number(req.transfer_lr)}: "
                f"x sqrt({req.transfer_from.total_params:,} / {arch.total_params:,})", TRANSFER_SOURCE)
        return lr
    traits = ModelTraits.of(arch)
    advice = recommend_lr(arch.family, arch.hidden_size, True, req.calibration, req.short_run,
                          arch.total_params, arch.model_id, traits)
    factor = batch_rules.batch_lr_factor(batch)
    lr = advice.lr * factor
    inputs = f" with hidden {arch.hidden_size}" if advice.uses_hidden else ""
    reason = (f"{advice.rule} ({advice.answered_by}){inputs} gives {fmt_number(advice.lr)} "
              f"(full fine-tuning {fmt_number(advice.lr_full_ft)} x {advice.lora_over_full_ft:g})")
    summary = f"{advice.answered_by}{'' if advice.extrapolated else ' (calibrated)'}"
    if factor != 1.0:
        scaled = max(batch, batch_rules.MIN_SCALED_BATCH)
        reason += (f"; x sqrt({scaled}/{batch_rules.REFERENCE_BATCH}) = {factor:.3f} because the rule was fitted "
                   f"at batch {batch_rules.REFERENCE_BATCH} and LR scales with sqrt(batch) within 32-128")
        summary += f", x {factor:.3f} for batch {batch} (rule fitted at {batch_rules.REFERENCE_BATCH})"
    if req.rslora:
        rs = rslora_lr_factor(rank)
        lr *= rs
        reason += (f"; x 1/sqrt({rank}) = {rs:.3g} for rsLoRA: alpha/sqrt(r) makes the adapter sqrt(r) times "
                   f"stronger than the alpha/r the rule was fitted with, so the LR shrinks by the same factor")
        summary += f", x 1/sqrt({rank}) for rsLoRA"
    rec.set("optim.learning_rate", lr, reason, advice.source)
    rec.lr_rule = summary
    return lr


def _lora_spec(arch: Architecture, req: PlanRequest, rank: int, result: AdapterBudget, rec: _Recorder) -> LoraSpec:
    alpha = req.alpha if req.alpha is not None else DEFAULT_ALPHA
    rec.set("lora.alpha", alpha, "chosen by the user" if req.alpha is not None else
            "fixed at 32 with alpha/r scaling, so the optimal LR does not depend on rank",
            USER if req.alpha is not None else SEED_RULES)
    if req.rslora:
        rec.set("lora.use_rslora", True, "chosen by the user: scale alpha/sqrt(r)", SEED_RANK_ALPHA)
        if rank < RSLORA_MIN_RANK:
            rec.warnings.append(f"rsLoRA at rank {rank}: alpha/sqrt(r) = {alpha / math.sqrt(rank):.1f} is too "
                                f"aggressive below rank {RSLORA_MIN_RANK}; use standard alpha/r")
    comps, names = parse_targets(req.targets)
    spec = peft_spec(arch, comps | ({Component.UNEMBED} if req.unembed else frozenset()), names)
    modules = tuple(dict.fromkeys(n.rsplit(".", 1)[-1] for n, _ in result.adapted if "experts" not in n))
    params = spec.target_parameters
    rec.set("lora.target_modules", list(modules),
            "every linear weight the convention adapts (attention, MLP, shared experts"
            + (", unembedding" if req.unembed else "") + ")", SEED_RULES)
    if params:
        rec.set("lora.target_parameters", list(params), "routed MoE experts (stacked 3-D parameters)", SEED_RULES)
    return LoraSpec(rank=rank, alpha=alpha, use_rslora=req.rslora, dropout=0.0, target_modules=modules,
                    target_parameters=params or None, unembed=req.unembed, init_lora_weights=True, use_dora=False)


MAX_EPOCHS = 10_000.0  # far past any fine-tuning run; keeps steps = examples x epochs / batch a finite integer


def _check_numbers(req: PlanRequest) -> None:
    """Overrides are positive and finite before any rule uses them (`--epochs inf`, `--lr inf`, 0 examples)."""
    for value, name in ((req.lr, "--lr"), (req.alpha, "--alpha"), (req.transfer_lr, "--transfer-lr")):
        if value is not None:
            positive_finite(value, name)
    if req.epochs is not None:
        positive_finite(req.epochs, "--epochs", MAX_EPOCHS)
    if req.data.examples is not None and req.data.examples < 1:
        raise LoraplanError(f"{req.data.path or '--examples'}: no examples to train on (need at least one)")


def make_plan(arch: Architecture, req: PlanRequest) -> Plan:
    """The whole setup for `arch` and the request, every number with its reason."""
    _check_numbers(req)
    rec = _Recorder()
    result = budget(arch, req.convention, req.targets, req.unembed)
    rank, capacity = _choose_rank(req, result.per_rank_total, rec)
    lora = _lora_spec(arch, req, rank, result, rec)
    default_epochs = req.epochs or 1.0
    choice = batch_rules.choose_batch(req.data.examples, default_epochs, req.batch_size)
    split = batch_rules.split_batch(choice.batch_size, req.micro_batch_size, req.num_devices)
    batch = split.effective
    if batch != choice.batch_size:  # steps and warnings follow the batch that is actually trained
        choice = batch_rules.choose_batch(req.data.examples, choice.epochs, batch)
        rec.warnings.append(split.note or "")
    rec.warnings.extend(choice.warnings)
    reason = choice.reason if req.batch_size is None else "chosen by the user"
    reason += f" = {split.micro_batch_size} micro x {split.accumulation} accumulation x {split.devices} device(s)"
    if split.note:
        reason += f"; {split.note}"
    rec.set("optim.batch_size", batch, reason, choice.source if req.batch_size is None else USER)
    micro, accumulation = split.micro_batch_size, split.accumulation
    lr = _choose_lr(arch, req, batch, rec, lora.rank)
    steps = req.max_steps or choice.steps
    if steps is not None:
        rec.set("optim.max_steps", steps, "chosen by the user" if req.max_steps else
                f"ceil({req.data.examples:,} examples x {choice.epochs:g} epochs / batch {choice.batch_size})",
                USER if req.max_steps else SEED_RULES)
    warmup = batch_rules.warmup_steps(steps) if steps else None
    rec.set("optim.schedule", req.schedule.value, "decay to zero over the planned steps", SEED_RULES)
    if warmup:
        rec.set("optim.warmup_steps", warmup, f"short warmup: 3% of {steps} steps", SEED_RULES)
    defaults = DEFAULTS[req.method]
    extras = MethodExtras(dpo_beta=defaults.dpo_beta, group_size=defaults.group_size,
                          groups_per_batch=defaults.groups_per_batch, teacher=req.teacher)
    if defaults.dpo_beta:
        rec.set("extras.dpo_beta", defaults.dpo_beta, "DPO working default", SEED_RULES)
    if defaults.group_size:
        rec.set("extras.group_size", defaults.group_size, "RL group size (4-16 in the recipes)", SEED_RULES)
    setup = TrainingSetup(
        model=arch.model_id, method=req.method, finetuning="lora",
        lora=lora,
        optim=Optimization(learning_rate=lr, schedule=req.schedule, warmup_steps=warmup, weight_decay=0.0,
                           micro_batch_size=micro, gradient_accumulation_steps=accumulation,
                           num_devices=req.num_devices, epochs=choice.epochs, max_steps=steps,
                           optimizer="adamw", max_grad_norm=1.0),
        data=DataSpec(path=req.data.path, format=req.data.format, loss_mask=req.data.loss_mask,
                      max_length=req.seq_len, examples=req.data.examples, trained_tokens=req.data.trained_tokens),
        extras=extras,
    )
    trainable = result.params(rank)
    tokens_processed = None
    if req.data.total_tokens is not None:
        tokens_processed = int(req.data.total_tokens * choice.epochs)
    rule_source = SEED_RULES if req.capacity_rule is CapacityRule.PARAMS else SEED_DOCTRINE
    notes = [f"capacity rule: {req.capacity_rule.value} ({rule_source})"]
    if req.data.estimated:
        notes.append("trained tokens are an estimate from bytes, not a count")
    return Plan(
        setup=setup, explanations=tuple(rec.explanations), warnings=tuple(rec.warnings), budget=result,
        capacity=capacity, memory=memory(arch, trainable, req.seq_len, micro),
        compute=compute(arch, tokens_processed, req.gpu), trainable_params=trainable,
        model_params=arch.total_params, peft_target_modules=lora.target_modules or (),
        peft_target_parameters=lora.target_parameters or (), notes=tuple(notes), lr_rule=rec.lr_rule,
    )
