"""Batch size and steps: moderate batches, at least 100 optimizer steps (seeds 000, 001).

LoRA pays a loss penalty above a batch-size threshold that rank does not fix (LoRA Without Regret: visible
above 128); the doctrine's range is 32-128 with 64 as our default. The LR rules were fitted at
batch 128 (the tinker-cookbook sweep), and below that threshold LR scales with sqrt(batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loraplan.rules.sources import SEED_ARTICLE, SEED_RULES

DEFAULT_BATCH = 64
MIN_BATCH = 8
LORA_BATCH_LIMIT = 128  # above: warning (LoRA Without Regret)
LORA_BATCH_HARD_LIMIT = 512  # above: error in check (LoRA Without Regret: gap widens 10-20% at 512)
MIN_STEPS = 100  # LoRA Without Regret: aim for at least 100 optimizer steps (1000+ for best results)
REFERENCE_BATCH = 128  # batch of the sweep the LR rules were fitted on
MAX_EPOCHS_FOR_STEPS = 3


@dataclass(frozen=True)
class BatchChoice:
    batch_size: int
    epochs: float
    steps: int | None
    reason: str
    source: str
    warnings: tuple[str, ...] = ()


def _pow2_floor(n: float) -> int:
    return 1 << max(0, math.floor(math.log2(max(1.0, n))))


def choose_batch(examples: int | None, epochs: float = 1.0, requested: int | None = None) -> BatchChoice:
    """Default 64, reduced (not below 8) so the run gets >= 100 steps; epochs raised up to 3 if needed."""
    warnings: list[str] = []
    if requested is not None:
        batch = requested
        reason = "chosen by the user"
        if requested > LORA_BATCH_LIMIT:
            warnings.append(f"batch {requested} is above {LORA_BATCH_LIMIT}: LoRA loses to full fine-tuning at "
                            "large batches and a higher rank does not fix it; prefer more steps at batch <= 128")
    else:
        batch = DEFAULT_BATCH
        reason = f"default {DEFAULT_BATCH} (moderate: 32-128)"
        if examples is not None and examples * epochs / batch < MIN_STEPS:
            batch = max(MIN_BATCH, min(DEFAULT_BATCH, _pow2_floor(examples * epochs / MIN_STEPS)))
            reason = f"reduced from {DEFAULT_BATCH} so {examples:,} examples give >= {MIN_STEPS} steps"
    steps = None
    if examples is not None:
        steps = math.ceil(examples * epochs / batch)
        if steps < MIN_STEPS and requested is None:
            needed = min(float(MAX_EPOCHS_FOR_STEPS), math.ceil(MIN_STEPS * batch / max(examples, 1)))
            if needed > epochs:
                epochs = needed
                steps = math.ceil(examples * epochs / batch)
                reason += f"; {epochs:g} epochs to approach {MIN_STEPS} steps"
        if steps < MIN_STEPS:
            warnings.append(f"only {steps} optimizer steps (< {MIN_STEPS}): the LR rules assume longer runs; "
                            "consider more data, or the short-run LR ratio (--short-run)")
    return BatchChoice(batch, epochs, steps, reason, f"{SEED_RULES}; {SEED_ARTICLE}", tuple(warnings))


MIN_SCALED_BATCH = 32  # the low end of the moderate range; the sqrt heuristic is not applied below it


def batch_lr_factor(batch_size: int) -> float:
    """sqrt(batch / 128) inside the moderate range [32, 128]; 1 above 128, sqrt(32/128) below 32."""
    if batch_size >= REFERENCE_BATCH:
        return 1.0
    return math.sqrt(max(batch_size, MIN_SCALED_BATCH) / REFERENCE_BATCH)


def warmup_steps(steps: int, ratio: float = 0.03) -> int:
    """A short warmup: 3% of the run, at least one step."""
    return max(1, math.ceil(steps * ratio))


@dataclass(frozen=True)
class BatchSplit:
    """How one effective batch is laid out: micro batch x accumulation x devices, and why if it moved."""

    micro_batch_size: int
    accumulation: int
    devices: int
    requested: int
    note: str | None = None

    @property
    def effective(self) -> int:
        return self.micro_batch_size * self.accumulation * self.devices


def split_batch(batch: int, micro: int, devices: int) -> BatchSplit:
    """Split `batch` into micro x accumulation x devices exactly when it can be done.

    The micro batch may shrink (never below half the one asked for) to a divisor of the per-device
    batch; otherwise the batch moves to the nearest multiple of micro x devices, and the note says so.
    The effective batch is then the one shown, explained, used for steps and LR, and exported.
    """
    micro = max(1, min(micro, batch))
    if batch % devices == 0:
        per_device = batch // devices
        divisor = next(m for m in range(min(micro, per_device), 0, -1) if per_device % m == 0)
        if divisor * 2 >= micro:
            note = None if divisor == micro else (
                f"micro batch {micro} -> {divisor} so batch {batch} splits exactly over {devices} device(s)")
            return BatchSplit(divisor, per_device // divisor, devices, batch, note)
    unit = micro * devices
    steps = max(1, round(batch / unit))
    split = BatchSplit(micro, steps, devices, batch)
    return BatchSplit(micro, steps, devices, batch,
                      f"batch {batch} cannot be split into micro batch {micro} x accumulation x {devices} device(s); "
                      f"using {split.effective} = {micro} x {steps} x {devices}, the nearest that can")
