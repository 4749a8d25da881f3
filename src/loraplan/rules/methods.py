"""Working defaults by method (tinker-cookbook recipes; LoRA Without Regret).

SFT: LR from the family formula at rank 32. RL: LR 1e-5 to 4e-5 at rank 32, group size 4-16;
rank 1-8 already matches full fine-tuning for RL (LoRA Without Regret: RL carries O(1) bits per episode).
DPO: LR ~1e-5, beta 0.1, rank 32. Distillation: LR ~1e-4 at rank 128.
"""

from __future__ import annotations

from dataclasses import dataclass

from loraplan.rules.sources import SEED_ARTICLE, SEED_RULES
from loraplan.setup import Method


@dataclass(frozen=True)
class MethodDefaults:
    rank: int
    lr: float | None  # None: the family formula decides
    lr_range: tuple[float, float] | None
    dpo_beta: float | None = None
    group_size: int | None = None
    groups_per_batch: int | None = None
    note: str = ""
    source: str = SEED_RULES


DEFAULTS: dict[Method, MethodDefaults] = {
    Method.SFT: MethodDefaults(rank=32, lr=None, lr_range=(1e-4, 5e-4)),
    Method.RL: MethodDefaults(
        rank=32, lr=2e-5, lr_range=(1e-5, 4e-5), group_size=8, groups_per_batch=16,
        note="RL learns ~1 bit per episode: rank 1-8 already matches full fine-tuning; 32 is the "
             "recipe default at which the LR range was measured",
        source=f"{SEED_RULES}; {SEED_ARTICLE}",
    ),
    Method.DPO: MethodDefaults(rank=32, lr=1e-5, lr_range=(5e-6, 2e-5), dpo_beta=0.1),
    Method.DISTILL: MethodDefaults(rank=128, lr=1e-4, lr_range=(5e-5, 2e-4)),
}

DEFAULT_ALPHA = 32.0  # fixed alpha with alpha/r scaling keeps the optimal LR independent of rank
RSLORA_MIN_RANK = 8  # rsLoRA (Kalajdzievski 2023): alpha/sqrt(r) is too aggressive below rank 8
MAX_RANK = 256  # beyond this, recommend full fine-tuning (LoRA Without Regret: capacity)
