"""Capacity: does the adapter have room for what the data must teach?

- params rule (tinker-cookbook hyperparam_utils.py, default): LoRA params >= trained (weight-1) tokens.
- bits rule (LoRA Without Regret): params * 2 bits >= tokens * bits_per_token (default 1 bit per token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from loraplan.errors import LoraplanError
from loraplan.rules.numbers import positive_finite
from loraplan.rules.sources import SEED_DOCTRINE, SEED_RULES

BITS_PER_PARAM = 2.0


class CapacityRule(StrEnum):
    PARAMS = "params"
    BITS = "bits"


class CapacityStatus(StrEnum):
    OK = "OK"
    UNDERCAPACITY = "UNDERCAPACITY"


def required_params(tokens: int, rule: CapacityRule = CapacityRule.PARAMS, bits_per_token: float = 1.0) -> float:
    """LoRA parameters the data needs under a rule."""
    if tokens < 0:
        raise LoraplanError(f"token count must be non-negative, got {tokens}")
    if rule is CapacityRule.BITS:
        return tokens * positive_finite(bits_per_token, "bits per token (--bits-per-token)") / BITS_PER_PARAM
    return float(tokens)


def min_rank(tokens: int, per_rank_params: int, rule: CapacityRule = CapacityRule.PARAMS,
             bits_per_token: float = 1.0) -> int:
    """Smallest rank whose params cover the data: ceil(required / per_rank), at least 1."""
    if per_rank_params <= 0:
        raise LoraplanError("per-rank parameter count must be positive")
    return max(1, math.ceil(required_params(tokens, rule, bits_per_token) / per_rank_params))


def next_power_of_two(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, n))))


@dataclass(frozen=True)
class CapacityResult:
    """status, message, min_rank, suggested_rank (power of two >= min), headroom (params / need)."""

    status: CapacityStatus
    message: str
    rank: int
    params: int
    tokens: int
    min_rank: int
    suggested_rank: int
    headroom: float
    rule: CapacityRule
    source: str


def validate_capacity(tokens: int, per_rank_params: int, rank: int,
                      rule: CapacityRule | str = CapacityRule.PARAMS,
                      bits_per_token: float = 1.0) -> CapacityResult:
    """Check a rank against trained tokens; suggest the next power of two when short."""
    chosen = CapacityRule(rule)
    if rank <= 0:
        raise LoraplanError(f"rank must be positive, got {rank}")
    params = rank * per_rank_params
    need = required_params(tokens, chosen, bits_per_token)
    lowest = min_rank(tokens, per_rank_params, chosen, bits_per_token)
    headroom = params / need if need else math.inf
    ok = params >= need
    status = CapacityStatus.OK if ok else CapacityStatus.UNDERCAPACITY
    suggested = rank if ok else next_power_of_two(lowest)
    need_text = (f"{tokens:,} trained tokens" if chosen is CapacityRule.PARAMS
                 else f"{tokens:,} tokens x {bits_per_token:g} bit / {BITS_PER_PARAM:g} bits per param")
    if ok:
        message = f"rank {rank} gives {params:,} LoRA params for {need_text}: {headroom:.2f}x headroom"
    else:
        message = (f"rank {rank} gives {params:,} LoRA params, short of {need_text} "
                   f"({headroom:.2f}x); use rank >= {lowest} (suggested {suggested})")
    source = SEED_RULES if chosen is CapacityRule.PARAMS else SEED_DOCTRINE
    return CapacityResult(status, message, rank, params, tokens, lowest, suggested, headroom, chosen, source)
