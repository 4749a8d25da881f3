"""Checks 5 and 9: batch size, optimizer steps and the LR schedule.

LoRA pays a loss penalty above batch ~128 that rank does not fix (LoRA Without Regret: the gap widens by
10-20% at 512); the rules assume at least 100 optimizer steps and an LR that decays to zero.
"""

from __future__ import annotations

import math

from loraplan.doctor.context import CheckContext
from loraplan.doctor.findings import Finding, Severity, Skipped
from loraplan.rules.batch import LORA_BATCH_HARD_LIMIT, LORA_BATCH_LIMIT, MIN_STEPS
from loraplan.rules.sources import SEED_ARTICLE, SEED_DOCTRINE, SEED_RULES
from loraplan.setup import Method, Schedule

BATCH_SOURCE = (f"{SEED_ARTICLE}, rule 3: LoRA degrades above batch 128, the gap widens 10-20% at 512, "
                f"independent of rank; {SEED_DOCTRINE}: not mitigated by increasing rank")


def check_batch(ctx: CheckContext) -> list[Finding | Skipped]:
    batch = ctx.batch
    if batch is None:
        return [Skipped(5, "effective batch size", f"{ctx.key('optim.micro_batch_size')} is not stated")]
    if ctx.method is Method.RL:
        return [Skipped(5, "effective batch size", "RL batches count sampled completions; the LoRA batch limit "
                                                   "was measured on supervised batches")]
    if not ctx.setup.is_lora or batch <= LORA_BATCH_LIMIT:
        return []
    # A warning at any size, as `plan` warns at the same limit: a large batch costs quality (the gap to full
    # fine-tuning widens 10-20% by 512), it does not break the run.
    severity = Severity.WARNING
    widened = ""
    if batch > LORA_BATCH_HARD_LIMIT:
        widened = f"; at {batch} (above {LORA_BATCH_HARD_LIMIT}) the gap widens by 10-20%"
    changes = _smaller_batch(ctx)
    fix_keys = ", ".join(f"{ctx.key(p)}: {v}" for p, v in changes.items())
    return [Finding(
        "batch-too-large", 5, severity,
        f"effective batch {batch} is above LoRA's tolerance of {LORA_BATCH_LIMIT}",
        f"{_arithmetic(ctx, batch)}; above {LORA_BATCH_LIMIT} LoRA falls behind full fine-tuning and a higher rank "
        f"does not fix it: the penalty comes from the B·A product itself, not from capacity{widened}",
        f"set {fix_keys} (batch {LORA_BATCH_LIMIT}) and train more steps instead; keep the batch in 32-128",
        BATCH_SOURCE, tuple(changes), changes)]


def _arithmetic(ctx: CheckContext, batch: int) -> str:
    optim = ctx.setup.optim
    if optim.batch_size is not None:
        return ctx.seen("optim.batch_size")
    devices = ctx.devices or optim.num_devices
    device_text = f"{devices} device(s)" if devices else "1 device (not in the config; pass --devices N)"
    micro, accumulation = optim.micro_batch_size, optim.gradient_accumulation_steps or 1
    return (f"effective batch {batch} = {micro} ({_named(ctx, 'optim.micro_batch_size')}) x {accumulation} "
            f"({_named(ctx, 'optim.gradient_accumulation_steps')}) x {device_text}")


def _named(ctx: CheckContext, path: str) -> str:
    source = ctx.assumed_source(path)
    return ctx.key(path) + (f", default of {source}" if source else "")


def _smaller_batch(ctx: CheckContext) -> dict[str, int]:
    """The fewest changes that bring the effective batch to 128."""
    optim = ctx.setup.optim
    if optim.batch_size is not None:
        return {"optim.batch_size": LORA_BATCH_LIMIT}
    devices = ctx.devices or optim.num_devices or 1
    micro = optim.micro_batch_size or 1
    if micro * devices <= LORA_BATCH_LIMIT:
        return {"optim.gradient_accumulation_steps": max(1, LORA_BATCH_LIMIT // (micro * devices))}
    return {"optim.micro_batch_size": max(1, LORA_BATCH_LIMIT // devices), "optim.gradient_accumulation_steps": 1}


def check_steps(ctx: CheckContext) -> list[Finding | Skipped]:
    out: list[Finding | Skipped] = []
    optim = ctx.setup.optim
    steps, how = optim.max_steps, ctx.seen("optim.max_steps") if optim.max_steps else ""
    examples = ctx.examples if ctx.examples is not None else ctx.setup.data.examples
    if steps is None and examples is not None and ctx.batch and optim.epochs:
        steps = math.ceil(examples * optim.epochs / ctx.batch)
        how = (f"ceil({examples:,} examples x {optim.epochs:g} epochs / batch {ctx.batch}) = {steps} "
               f"({ctx.seen('optim.epochs')})")
    if steps is None:
        out.append(Skipped(9, "optimizer steps", f"{ctx.key('optim.max_steps')} is not set and the number of "
                                                 "examples is unknown (pass --examples N or --data)"))
    elif steps < MIN_STEPS:
        out.append(Finding(
            "too-few-steps", 9, Severity.WARNING, f"only {steps} optimizer steps (fewer than {MIN_STEPS})",
            f"{how}; the LR rules were fitted on runs of hundreds of steps or more (1000+ for best results)",
            f"train at least {MIN_STEPS} steps: a smaller batch (down to 32) or more epochs; for a deliberately "
            "short run, plan it with `loraplan plan --short-run` (about 15x the full fine-tuning LR)",
            SEED_RULES, ("optim.max_steps", "optim.epochs")))
    if optim.schedule in (Schedule.CONSTANT, Schedule.CONSTANT_WITH_WARMUP):
        out.append(Finding(
            "constant-lr", 9, Severity.WARNING, "constant learning rate: no decay",
            f"{ctx.seen('optim.schedule')}; the rules and the sweeps behind them decay the LR to zero "
            "(linear or cosine) over the planned steps",
            f"set {ctx.key('optim.schedule')}: linear", SEED_RULES, ("optim.schedule",),
            {"optim.schedule": Schedule.LINEAR}))
    return out
