"""Checks 4 and 11: the learning rate against the recommended one, and families with no rule.

The recommendation is the planner's: the family formula x sqrt(batch/128) for SFT (tinker-cookbook), the
method's working default for RL, DPO and distillation. The LR is judged on its effect: LR x the
adapter's scale relative to alpha 32 / r, the convention the rule was fitted under. More than 4x off,
in either direction, is a warning (beyond the 2-3x the formula itself can be off); 6x or more (toward
10x) is an error: a full fine-tuning LR reused for LoRA, a LoRA LR reused for full fine-tuning, or
an LR that diverges. An extrapolated rule alone never makes an error.
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
from loraplan.rules.methods import DEFAULT_ALPHA, DEFAULTS
from loraplan.rules.sources import SEED_ARTICLE, SEED_RULES
from loraplan.setup import Method

# More than 4x off the recommended LR is a warning: beyond the 2-3x the formula can be off (tinker-cookbook) and the
# 4x between a distillation LR and the SFT rule (every trainer runs distillation as SFT, so no file says which).
WARN_FACTOR = 4.0
ERROR_FACTOR = 6.0  # past the warning band, toward 10x: a full fine-tuning LR reused for LoRA (or a LoRA LR for
# full fine-tuning), or an LR that diverges: an error
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
            if note := advice.range_note(factor):
                how += f"; {note}"
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
        if "optim.learning_rate" in ctx.unresolved:
            return [Skipped(4, "learning rate", f"`{ctx.unresolved['optim.learning_rate']}` is an expression "
                                                "loraplan does not evaluate; not checked")]
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
    out.extend(_judge(ctx, lr, expected))
    return out


def effective_factor(ctx: CheckContext) -> tuple[float, str]:
    """How much larger the adapter's update is than under the convention the LR rule assumes, and why.

    With Adam the update of B @ A per step is set by the LR; its effect on the output is that times the scale
    (alpha/r, or alpha/sqrt(r) with rsLoRA). The rules were fitted at alpha 32 with alpha/r (Tinker's
    convention), so an LR is judged as LR x scale / (32 / r): rank 256, alpha 256 with rsLoRA is scale 16
    against 0.125, an update 128x larger than the same LR under the convention.
    """
    lora = ctx.setup.lora
    if not ctx.setup.is_lora or ctx.format == "tinker" or lora.scale is None or not lora.rank:
        return 1.0, ""
    reference = DEFAULT_ALPHA / lora.rank
    factor = lora.scale / reference
    if math.isclose(factor, 1.0, rel_tol=1e-9):
        return 1.0, ""
    how = "alpha/sqrt(r)" if lora.use_rslora else "alpha/r"
    return factor, (f"scale {lora.scale:.4g} ({how}: {ctx.seen('lora.alpha')}, {ctx.seen('lora.rank')}"
                    f"{', rsLoRA' if lora.use_rslora else ''}) is {factor:.3g}x the {reference:.4g} of alpha "
                    f"{DEFAULT_ALPHA:g} / r that the LR rule assumes")


def _judge(ctx: CheckContext, lr: float, expected: Expected) -> list[Finding]:
    """One finding when the (effective) LR is WARN_FACTOR or more off the recommended band, in either direction.

    ERROR_FACTOR or more is an error (a full fine-tuning LR reused, or an LR that diverges), unless the rule was
    extrapolated for this family: then a warning, since the rule alone cannot carry an error.
    """
    factor, scale_text = effective_factor(ctx)
    effective = lr * factor
    kind = "LoRA" if ctx.setup.is_lora else "full fine-tuning"
    if effective < expected.low / WARN_FACTOR:
        times, below = expected.low / effective, True
    elif effective > expected.high * WARN_FACTOR:
        times, below = effective / expected.high, False
    else:
        return []
    severity = Severity.ERROR if times >= ERROR_FACTOR else Severity.WARNING
    capped = severity is Severity.ERROR and expected.extrapolated is not None
    if capped:
        severity = Severity.WARNING
    seen = ctx.seen("optim.learning_rate")
    if scale_text:
        seen += f"; {scale_text}, so the effective LR is {number(effective)}"
    point = _round(expected.point / factor)
    fix = f"set {ctx.key('optim.learning_rate')}: {number(point)}"
    if factor != 1.0:
        at_rule = number(_round(expected.point))
        fix += (f" (the recommended {at_rule} at the rule's scale, divided by {factor:.3g}), or set "
                f"{ctx.key('lora.alpha')}: {DEFAULT_ALPHA:g} without rsLoRA and use {at_rule}")
    direction = "below" if below else "above"
    if ctx.setup.is_lora:
        fid = "lr-too-low" if below else "lr-too-high"
        why = ("LoRA needs about 10x the full fine-tuning LR; far below it, LoRA learns slowly and looks worse than "
               "it is" if below else "far above it, runs diverge (72 of 80 diverged at 3e-3 in the tinker-cookbook "
               "sweep)")
        title = f"learning rate {number(lr)} is {times:.0f}x {direction} the recommended LoRA LR"
        if below and times >= ERROR_FACTOR:
            title += " (a full fine-tuning LR reused?)"
    else:
        fid = "full-ft-lr-too-low" if below else "full-ft-lr-too-high"
        why = ("far below it, full fine-tuning barely moves" if below else
               f"with {ctx.key('finetuning')} saying full fine-tuning, a LoRA-sized LR (about 10x) on every weight "
               "diverges or forgets")
        title = f"learning rate {number(lr)} is {times:.0f}x {direction} the recommended {kind} LR"
        if not below and times >= ERROR_FACTOR:
            title += " (a LoRA LR reused?)"
    evidence = f"{seen}; recommended: {expected.how}; {why}"
    if capped:
        evidence += (f"; {times:.0f}x would be an error, but the rule for this family is extrapolated, so this "
                     "stays a warning")
    return [Finding(fid, 4, severity, title, evidence, fix, f"{LR_SOURCE}; {expected.source}",
                    ("optim.learning_rate",), {"optim.learning_rate": point})]


def _round(lr: float) -> float:
    """Three significant digits: what a person would write in a config."""
    return float(f"{lr:.3g}")
