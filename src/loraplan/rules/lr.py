"""Learning-rate rules (tinker-cookbook hyperparam_utils.py and LoRA Without Regret are the references).

    LR = base * ratio * (2000 / hidden_size) ** P

base = 5e-5, ratio = 10 for LoRA and 1 for full fine-tuning, P per family (0.781 Llama, 0.0775
Qwen). Families without a rule raise UncalibratedFamilyError naming the remedies; a calibration
file can add or override families. Across models, LR_B = LR_A * mult(B) / mult(A) with the
full fine-tuning multiplier 1/sqrt(params) and the flat 10x for LoRA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loraplan.errors import LoraplanError, UncalibratedFamilyError
from loraplan.rules.calibration import Calibration, FamilyRule, ModelTraits, published_calibration
from loraplan.rules.display import fmt_number
from loraplan.rules.lr_range import LrRange, supported_range
from loraplan.rules.sources import SEED_ARTICLE, SEED_RULES

BASE_LR = 5e-5
LORA_MULTIPLIER = 10.0
SHORT_RUN_MULTIPLIER = 15.0  # LoRA Without Regret: runs under ~100 steps want about 15x
REFERENCE_HIDDEN = 2000


@dataclass(frozen=True)
class LrAdvice:
    """A recommended peak LR and everything that produced it."""

    lr: float
    lr_full_ft: float
    lora_over_full_ft: float
    family: str
    hidden_size: int
    rule: str
    source: str
    is_lora: bool = True
    answered_by: str = ""
    extrapolated: bool = False  # a cross-family rule answered: the calibration has no data for this family
    range: LrRange | None = None  # LoRA only: the LRs the calibration's data supports, and whether it reached lr

    @property
    def beyond_measured(self) -> bool:
        """The family's (or the model's own) sweeps never reached this LR."""
        return self.range is not None and self.range.beyond_measured

    def range_payload(self) -> dict[str, object] | None:
        """The range as JSON fields (None when the calibration carries no measurements)."""
        r = self.range
        return None if r is None else {
            "low": r.low, "high": r.high, "max_predicted_regret": r.tolerance,
            "regret_slope_per_log_lr": r.regret_slope,
            "measured_low": r.measured_low, "measured_high": r.measured_high, "measured_on": r.measured_on,
            "beyond_measured": r.beyond_measured, "note": r.describe()}

    def range_note(self, factor: float = 1.0) -> str:
        """The supported range (scaled like the LR, e.g. for batch size) and any extrapolation, or ''."""
        return "" if self.range is None else self.range.scaled(factor).describe()

    def explain(self) -> str:
        kind = "LoRA" if self.is_lora else "full fine-tuning"
        by = f" ({self.answered_by})" if self.answered_by else ""
        size = f" (hidden {self.hidden_size})" if self.uses_hidden else ""
        return (f"{kind} LR {fmt_number(self.lr)} for {self.family}{size} by {self.rule}{by}; "
                f"LoRA/full-FT ratio {self.lora_over_full_ft:g}; source: {self.source}")

    @property
    def uses_hidden(self) -> bool:
        """Whether the rule that answered reads the hidden size (a fitted rule may use active params instead)."""
        return "hidden" in self.rule


def formula_lr(hidden_size: int, exponent: float, base: float = BASE_LR, multiplier: float = 1.0) -> float:
    """base * multiplier * (2000 / hidden_size) ** exponent."""
    if hidden_size <= 0:
        raise LoraplanError(f"hidden size must be positive, got {hidden_size}")
    return base * multiplier * (REFERENCE_HIDDEN / hidden_size) ** exponent


def lora_over_full_ft(short_run: bool = False) -> float:
    """10 (tinker-cookbook hyperparam_utils.py); 15 only when the user asks for the short-run variant."""
    return SHORT_RUN_MULTIPLIER if short_run else LORA_MULTIPLIER


def recommend_lr(
    family: str,
    hidden_size: int,
    is_lora: bool = True,
    calibration: Calibration | None = None,
    short_run: bool = False,
    total_params: int | None = None,
    model_id: str | None = None,
    traits: ModelTraits | None = None,
) -> LrAdvice:
    """The peak LR for a model of `family` and `hidden_size`, or UncalibratedFamilyError.

    Without a calibration this is the published formula; `traits` feed fitted rules that use
    active parameters, hybrid attention or MoE.
    """
    cal = calibration or published_calibration()
    rule = cal.rule_for(family, model_id)
    if rule is None:
        raise UncalibratedFamilyError(
            f"no calibrated LR rule for family `{family}`"
            + (f" ({model_id})" if model_id else "")
            + "; give --lr, transfer from a calibrated model (--transfer-from MODEL --transfer-lr LR), "
            "or a calibration file (--calibration FILE)"
        )
    ratio = lora_over_full_ft(short_run)
    lr_full = rule.lr_full_ft(hidden_size, total_params, traits)
    lr_lora = rule.lr_lora(hidden_size, total_params, ratio, traits)
    return LrAdvice(
        lr=lr_lora if is_lora else lr_full,
        lr_full_ft=lr_full,
        lora_over_full_ft=lr_lora / lr_full,
        family=family,
        hidden_size=hidden_size,
        rule=rule.describe(traits, lr_lora / lr_full if is_lora else 1.0),
        source=rule.provenance or cal.source,
        is_lora=is_lora,
        answered_by=answered_by(rule, family),
        extrapolated=rule.family == "default",
        range=supported_range(rule, lr_lora, model_id) if is_lora else None,
    )


def answered_by(rule: FamilyRule, family: str) -> str:
    """Which kind of rule answered: fitted on the family's own data, extrapolated, or published."""
    if rule.family == "default":
        return f"cross-family rule: extrapolated, the calibration has no {family} data"
    if rule.models:
        return f"{family} rule fitted on {len(rule.models)} {family} models"
    return f"{family} rule"


def rslora_lr_factor(rank: int) -> float:
    """1/sqrt(r): rsLoRA scales the adapter by alpha/sqrt(r) where the rules assume alpha/r (sqrt(r) times
    stronger at the same alpha). Adam's step size sets the size of each update to B, so the update to the
    layer's output grows with the scale; dividing the LR by sqrt(r) keeps it where the rule put it
    (rsLoRA: https://arxiv.org/abs/2312.03732)."""
    if rank <= 0:
        raise LoraplanError(f"rank must be positive, got {rank}")
    return 1.0 / math.sqrt(rank)


def full_ft_multiplier(total_params: int) -> float:
    """tinker-cookbook's full fine-tuning LR multiplier: 1/sqrt(parameter count)."""
    if total_params <= 0:
        raise LoraplanError(f"parameter count must be positive, got {total_params}")
    return 1.0 / math.sqrt(total_params)


def lora_multiplier(total_params: int) -> float:
    """The LoRA multiplier: the flat 10x on top of the full fine-tuning multiplier."""
    return LORA_MULTIPLIER * full_ft_multiplier(total_params)


def transfer_lr(lr_a: float, params_a: int, params_b: int) -> float:
    """LR_B = LR_A * mult(B) / mult(A); the flat LoRA 10x cancels, so one formula serves both."""
    from loraplan.rules.numbers import positive_finite

    positive_finite(lr_a, "the transfer LR (--transfer-lr)")
    return lr_a * full_ft_multiplier(params_b) / full_ft_multiplier(params_a)


TRANSFER_SOURCE = f"{SEED_RULES}: LR_B = LR_A * mult(B) / mult(A), mult = 1/sqrt(params)"
RATIO_SOURCE = f"{SEED_RULES}; {SEED_ARTICLE}"
