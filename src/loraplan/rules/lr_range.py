"""How far the LR advice can be trusted: the LRs the calibration's data supports around it.

A fitted rule answers with one LR, but the sweep it was fitted on says more:
- how fast regret rises away from a model's best LR (`regret_slope`: the median, over the family's
  models, of regret per unit of log(lr) around the best swept LR), so the LRs whose predicted regret
  stays under REGRET_TOLERANCE are lr * exp(+-REGRET_TOLERANCE / slope);
- which LRs were ever measured (`swept_lr`: lowest and highest LR swept per model). A rule can answer
  beyond all of them (tinker-cookbook's sweep ran gpt-oss-20b at 4e-5 and 1e-4 only; the fitted rule
  says about 8.7e-4): the regret there is not measured, and the honest advice is to measure it.

The measured range is the model's own sweep when the calibration swept it, else the union of the
family's sweeps. Regret is linear in |log(lr / lr_best)| near the optimum only to first order, and the
rule's own error adds to it: the range is a guide to how sharp the optimum is, not a guarantee.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from loraplan.rules.calibration import FamilyRule
from loraplan.rules.display import fmt_number

REGRET_TOLERANCE = 0.005  # 0.5% regret: well under the spread between seeds in the tinker sweep
SWEEP_HINT = "run `loraplan sweep` to measure it"


@dataclass(frozen=True)
class LrRange:
    """The LRs around a recommendation that the calibration's data supports.

    lr: the recommended LR the range is centred on (log space).
    low, high: predicted regret under `tolerance` (None when the calibration has no regret slope).
    regret_slope: regret per unit of log(lr) the range comes from.
    measured_low, measured_high: the LRs the data ever reached for this model or family (None: unknown).
    measured_on: whose sweeps those are, in words.
    beyond_measured: the recommendation lies outside [measured_low, measured_high].
    """

    lr: float
    low: float | None
    high: float | None
    regret_slope: float | None
    measured_low: float | None
    measured_high: float | None
    measured_on: str
    beyond_measured: bool
    slope_on: str = ""
    at_grid_edge: bool = False  # the model's own best swept LR was the end of its grid
    tolerance: float = REGRET_TOLERANCE

    def scaled(self, factor: float) -> LrRange:
        """The same range after the LR is scaled (batch size): the measured LRs stay as measured."""
        return LrRange(self.lr * factor, None if self.low is None else self.low * factor,
                       None if self.high is None else self.high * factor, self.regret_slope,
                       self.measured_low, self.measured_high, self.measured_on, self.beyond_measured,
                       self.slope_on, self.at_grid_edge, self.tolerance)

    def describe(self) -> str:
        """One sentence: the supported range, then the extrapolation warning when it applies."""
        parts = []
        if self.low is not None and self.high is not None and self.regret_slope is not None:
            parts.append(f"LRs {fmt_number(self.low)} to {fmt_number(self.high)} "
                         f"keep predicted regret under {self.tolerance:.1%} "
                         f"(regret rises {self.regret_slope * math.log(2):.2%} per doubling of LR, median of "
                         f"{self.slope_on})")
        if self.beyond_measured and self.measured_low is not None and self.measured_high is not None:
            parts.append(f"extrapolated beyond the measured range ({self.measured_on} swept "
                         f"{fmt_number(self.measured_low)} to {fmt_number(self.measured_high)}); {SWEEP_HINT}")
        elif self.at_grid_edge:
            parts.append(f"{self.measured_on}'s best swept LR is the end of its grid, so the optimum may lie beyond; "
                         "run `loraplan sweep --adaptive` to bracket it")
        return "; ".join(parts)


def _same_model(swept: str, model_id: str | None) -> bool:
    """Ids compare case-insensitively; a store's local model folder is recorded as an absolute path."""
    if not model_id:
        return False
    return swept.lower() == model_id.lower() or (os.path.isabs(swept) and swept == os.path.abspath(model_id))


def supported_range(rule: FamilyRule, lr: float, model_id: str | None = None) -> LrRange | None:
    """The range for `lr` answered by `rule` (None when the rule carries neither a slope nor swept LRs)."""
    if rule.regret_slope is None and not rule.swept_lr:
        return None
    own = next((pair for m, pair in rule.swept_lr.items() if _same_model(m, model_id)), None)
    if own is not None:
        measured: tuple[float, float] | None = own
        whose = str(model_id)
    elif rule.swept_lr:
        measured = (min(lo for lo, _ in rule.swept_lr.values()), max(hi for _, hi in rule.swept_lr.values()))
        whose = f"the {len(rule.swept_lr)} {rule.family} models" if rule.family != "default" else "the models"
    else:
        measured, whose = None, f"the {rule.family} models"
    low = high = None
    if rule.regret_slope:
        half_width = REGRET_TOLERANCE / rule.regret_slope
        low, high = lr * math.exp(-half_width), lr * math.exp(half_width)
    beyond = measured is not None and not (measured[0] * (1 - 1e-9) <= lr <= measured[1] * (1 + 1e-9))
    slope_on = "every model's sweep" if rule.family == "default" else f"the {rule.family} models' sweeps"
    edge = own is not None and any(_same_model(m, model_id) for m in rule.censored_models)
    return LrRange(lr, low, high, rule.regret_slope, *(measured or (None, None)), whose, beyond, slope_on, edge)
