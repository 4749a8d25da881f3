"""Check 6: does the adapter have room for what the data must teach?

LoRA matches full fine-tuning while its trainable parameters are at least the trained (loss
carrying) tokens (LoRA Without Regret); past that it quietly loses efficiency. The parameter count is what
the trainer really trains for these targets (PEFT's per-expert LoRA for PEFT-based trainers, the
shared-outer count for Tinker), not a convention chosen by loraplan.
"""

from __future__ import annotations

from loraplan.doctor.context import CheckContext
from loraplan.doctor.findings import Finding, Severity, Skipped
from loraplan.rules.capacity import CapacityStatus, next_power_of_two, validate_capacity
from loraplan.rules.methods import MAX_RANK
from loraplan.setup import Method

SEVERE_HEADROOM = 0.5  # under half the params the data needs: an error, not a warning


def check_capacity(ctx: CheckContext) -> list[Finding | Skipped]:
    if ctx.tokens is None:
        return [Skipped(6, "capacity", "no token count: pass --tokens N, or --data FILE --tokenizer TOK to count")]
    if not ctx.setup.is_lora:
        return []
    if ctx.method is Method.RL:
        return [Skipped(6, "capacity", "RL learns about one bit per episode: small ranks suffice "
                                        "(LoRA Without Regret)")]
    rank = ctx.setup.lora.rank
    if ctx.arch is None or ctx.adapted is None or rank is None:
        missing = "the model" if ctx.arch is None else ("the targets" if ctx.adapted is None else "the rank")
        return [Skipped(6, "capacity", f"{missing} unknown, so the LoRA parameter count is unknown")]
    per_rank = ctx.adapted.trainable_per_rank(ctx.arch, ctx.format)
    if per_rank == 0:
        return [Skipped(6, "capacity", "the targets adapt no weight (see the placement findings)")]
    result = validate_capacity(ctx.tokens, per_rank, rank)
    if result.status is CapacityStatus.OK:
        return []
    suggested = next_power_of_two(result.min_rank)
    counted = "Tinker's count" if ctx.format == "tinker" else "what PEFT trains for these targets"
    evidence = (f"{ctx.seen('lora.rank')} gives {result.params:,} LoRA params ({per_rank:,} per rank, {counted}) "
                f"for {ctx.tokens:,} trained tokens: {result.headroom:.2f}x of what the data needs; "
                f"rank >= {result.min_rank} fits")
    if suggested > MAX_RANK:
        fix = (f"even rank {MAX_RANK} is short (rank {result.min_rank} needed): full fine-tuning is recommended "
               "for this corpus, or train on less data")
        changes: dict[str, object] = {}
    else:
        fix = f"set {ctx.key('lora.rank')}: {suggested} (the next power of two >= {result.min_rank})"
        changes = {"lora.rank": suggested}
    severity = Severity.ERROR if result.headroom < SEVERE_HEADROOM else Severity.WARNING
    return [Finding("under-capacity", 6, severity,
                    f"rank {rank} is too small for the data: {result.headroom:.2f}x the parameters it needs",
                    evidence, fix, result.source, ("lora.rank",), changes)]
