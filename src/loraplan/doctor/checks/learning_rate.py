"""Checks 4 and 11: the learning rate against the recommended one, and families with no rule.

The recommendation is the planner's: the family formula x sqrt(batch/128) for SFT (seed 000), the
method's working default for RL, DPO and distillation. "Far" means more than 4x away, beyond the
2-3x the formula itself can be off when extrapolated (seed 000, failure modes). A full
fine-tuning LR reused for LoRA is about 10x too low (an error); for a full fine-tuning config a
LoRA-sized LR is about 10x too high (an error too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loraplan.doctor.context import CheckContext, number
from loraplan.doctor.findings import Finding, Severity, Skipped
from loraplan.errors import UncalibratedFamilyError
from loraplan.rules.batch import REFERENCE_BATCH, batch_lr_factor
from loraplan.rules.calibration import ModelTraits
from loraplan.rules.lr import LORA_MULTIPLIER, recommend_lr, rslora_lr_factor
from loraplan.rules.methods import DEFAULTS
from loraplan.rules.sources import SEED_ARTICLE, SEED_RULES
from loraplan.setup import Method

FAR = 4.0
LR_SOURCE = f"{SEED_RULES}; {SEED_ARTICLE}, rule 2: LoRA LR ~10x full fine-tuning"


@dataclass(frozen=True)
class Expected:
    """The recommended LR band for this setup and how it was computed.

    low / high: the band (equal for a calibrated formula); point: the value a fix writes.
    extrapolated: why no calibrated rule applied (None when one did).
    """

    low: float
    high: float
    point: float
    how: str
    source: str
    extrapolated: str | None = None


def expected_lr(ctx: CheckContext) -> Expected:
    """The planner's LR for this model, method and batch (LoRA or full fine-tuning).

    A config that does not say its method (a torchtune file without a loss, a bare adapter) is
    held to the widest band of all methods: an RL or DPO LR is not a mistake there.
    """
    if ctx.setup.method is not None:
        return _expected(ctx, ctx.setup.method)
    bands = {m: _expected(ctx, m) for m in Method}
    sft = bands[Method.SFT]
    low, high = min(b.low for b in bands.values()), max(b.high for b in bands.values())
    return Expected(low, high, sft.point, f"the config does not say which method, so any method's LR counts "
                    f"({number(low)}-{number(high)}); for SFT, {sft.how}", sft.source, sft.extrapolated)


def _expected(ctx: CheckContext, method: Method) -> Expected:
    is_lora = ctx.setup.is_lora
    scale = 1.0 if is_lora else 1 / LORA_MULTIPLIER
    kind = "LoRA" if is_lora else "full fine-tuning"
    if method is not Method.SFT:
        defaults = DEFAULTS[method]
        low, high = defaults.lr_range or (0.0, 0.0)
        point = (defaults.lr or math.sqrt(low * high)) * scale
        return Expected(low * scale, high * scale, point,
                        f"{method.value} working default {number(point)} for {kind} (range {number(low * scale)}-"
                        f"{number(high * scale)})", defaults.source)
    reason = "no model to read the hidden size from (pass --model)"
    if ctx.arch is not None:
        try:
            advice = recommend_lr(ctx.arch.family, ctx.arch.hidden_size, is_lora, ctx.calibration,
                                  total_params=ctx.arch.total_params, model_id=ctx.arch.model_id,
                                  traits=ModelTraits.of(ctx.arch))
        except UncalibratedFamilyError as exc:
            reason = str(exc)
        else:
            factor = batch_lr_factor(ctx.batch) if ctx.batch else 1.0
            point = advice.lr * factor
            how = (f"{advice.rule} gives {number(advice.lr)} for {kind} on {ctx.arch.model_id} (hidden "
                   f"{advice.hidden_size}, {ctx.arch.active_params / 1e9:.2f}B active params)")
            if factor != 1.0:
                how += (f", x sqrt({max(ctx.batch or 0, 32)}/{REFERENCE_BATCH}) = {number(point)} "
                        f"at batch {ctx.batch}")
            lora = ctx.setup.lora
            if is_lora and lora.use_rslora and lora.rank:  # alpha/sqrt(r) is sqrt(r) x stronger: the planner's LR
                point *= rslora_lr_factor(lora.rank)
                how += f", x 1/sqrt({lora.rank}) = {number(point)} for rsLoRA's alpha/sqrt(r) scale"
            return Expected(point, point, point, how, advice.source,
                            advice.answered_by if advice.extrapolated else None)
    low, high = DEFAULTS[Method.SFT].lr_range or (1e-4, 5e-4)
    low, high = low * scale, high * scale
    return Expected(low, high, math.sqrt(low * high),
                    f"the SFT working range {number(low)}-{number(high)} for {kind} (no calibrated rule: "
                    "extrapolated)",
                    SEED_RULES, reason)


def check_learning_rate(ctx: CheckContext) -> list[Finding | Skipped]:
    lr = ctx.setup.optim.learning_rate
    if lr is None:
        return [Skipped(4, "learning rate", f"{ctx.key('optim.learning_rate')} is not in this {ctx.format} config "
                                            "and the trainer has no default we know")]
    expected = expected_lr(ctx)
    out: list[Finding | Skipped] = []
    if expected.extrapolated is not None and ctx.arch is not None:
        out.append(Finding(
            "uncalibrated-family", 11, Severity.INFO,
            f"no calibrated LR rule for the `{ctx.arch.family}` family: the LR advice is extrapolated",
            f"{expected.extrapolated.split(';')[0]}; the check used {expected.how}",
            "fit a rule with a short LR sweep and pass it with --calibration FILE, or transfer a known-good LR "
            "from a calibrated model (loraplan plan MODEL --transfer-from M --transfer-lr LR)",
            f"{SEED_RULES}: recalibrate rather than extrapolate for families outside the fitted ones"))
    seen = ctx.seen("optim.learning_rate")
    fix = f"set {ctx.key('optim.learning_rate')}: {number(_round(expected.point))}"
    changes = {"optim.learning_rate": _round(expected.point)}
    if ctx.setup.is_lora and lr < expected.low / FAR:
        out.append(Finding(
            "lr-too-low", 4, Severity.ERROR,
            f"learning rate {number(lr)} is {expected.low / lr:.0f}x below the recommended LoRA LR "
            f"(a full fine-tuning LR reused?)",
            f"{seen}; recommended: {expected.how}. LoRA needs about 10x the full fine-tuning LR; far below it, "
            "LoRA learns slowly and looks worse than it is",
            fix, f"{LR_SOURCE}; {expected.source}", ("optim.learning_rate",), changes))
    elif ctx.setup.is_lora and lr > expected.high * FAR:
        out.append(Finding(
            "lr-too-high", 4, Severity.WARNING,
            f"learning rate {number(lr)} is {lr / expected.high:.0f}x above the recommended LoRA LR",
            f"{seen}; recommended: {expected.how}; far above it, runs diverge (72 of 80 diverged at 3e-3 in the "
            "tinker-cookbook sweep)", fix, f"{LR_SOURCE}; {expected.source}", ("optim.learning_rate",), changes))
    elif not ctx.setup.is_lora and lr > expected.high * FAR:
        out.append(Finding(
            "full-ft-lr-too-high", 4, Severity.ERROR,
            f"learning rate {number(lr)} is {lr / expected.high:.0f}x above the full fine-tuning LR "
            "(a LoRA LR reused?)",
            f"{seen} with {ctx.key('finetuning')} saying full fine-tuning; recommended: {expected.how}. A LoRA-sized "
            "LR (about 10x) on every weight diverges or forgets", fix, f"{LR_SOURCE}; {expected.source}",
            ("optim.learning_rate",), changes))
    elif not ctx.setup.is_lora and lr < expected.low / FAR:
        out.append(Finding(
            "full-ft-lr-too-low", 4, Severity.WARNING,
            f"learning rate {number(lr)} is {expected.low / lr:.0f}x below the recommended full fine-tuning LR",
            f"{seen}; recommended: {expected.how}", fix, f"{LR_SOURCE}; {expected.source}",
            ("optim.learning_rate",), changes))
    return out


def _round(lr: float) -> float:
    """Three significant digits: what a person would write in a config."""
    return float(f"{lr:.3g}")
