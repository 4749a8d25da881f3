"""Scores of a rule on a sweep: in-sample, leave-one-group-out, and the two baselines.

Groups: models whose catalogue facts are equal (family, hidden size, layers, total and active
parameters, experts, attention type) share one architecture: a base and its instruct variants,
a re-release, a VL model's text tower and its text-only sibling. Leave-one-group-out holds all of
them out together, fits on the rest and scores the held-out ones, so no model is scored by a
rule that saw its twin.

Honest coverage: the score holds f at its end value outside the swept range, so a recommendation
beyond every LR swept for a model scores as if it were measured (the tinker sweep ran gpt-oss-20b
at 4e-5 and 1e-4 only). Each row says whether its LR lies inside the model's swept range, and the
summaries are repeated over the in-range models with the out-of-range count beside them.

The rule shape is the candidate (fit.SHAPES) with the lowest leave-one-group-out mean regret, so
that figure is slightly optimistic; the nested figure (`nested=True`) repeats the choice inside
every fold, on the other groups only, and scores the held-out group with the shape chosen there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loraplan.calibrate.features import ModelFacts
from loraplan.calibrate.fit import SHAPES, FittedRule, Optimum, RuleShape, fit_rule, optimum
from loraplan.calibrate.regret import Curve
from loraplan.errors import UncalibratedFamilyError
from loraplan.rules.calibration import Calibration, published_calibration
from loraplan.rules.lr import recommend_lr


@dataclass(frozen=True)
class ModelScore:
    """One model's row of the evaluation table (regrets are fractions: 0.01 = 1%)."""

    model: str
    group: str
    family: str
    fitted_lr: float
    fitted_regret: float
    fitted_by_family: bool
    in_sample_lr: float
    in_sample_regret: float
    published_lr: float | None
    published_regret: float | None
    constant_regret: float
    swept_low: float = 0.0
    swept_high: float = math.inf
    regret_slope: float = 0.0  # regret per unit of log(lr) around the best swept LR (0: one LR swept)
    censored: str | None = None  # `above` / `below`: the best swept LR is the grid's end, the optimum may lie beyond

    @property
    def fitted_in_range(self) -> bool:
        """The leave-one-group-out LR lies inside the LRs swept for this model (its regret is measured)."""
        return in_swept_range(self.fitted_lr, self.swept_low, self.swept_high)

    @property
    def in_sample_in_range(self) -> bool:
        return in_swept_range(self.in_sample_lr, self.swept_low, self.swept_high)


RANGE_TOLERANCE = 1e-9  # relative: an LR equal to a swept end (up to float noise) is inside


def in_swept_range(lr: float, low: float, high: float) -> bool:
    return low * (1 - RANGE_TOLERANCE) <= lr <= high * (1 + RANGE_TOLERANCE)


@dataclass(frozen=True)
class Summary:
    mean: float | None  # None when no model is covered (a sweep with no Llama or Qwen for the published rule)
    max: float | None
    worst: str
    covered: int


@dataclass(frozen=True)
class Evaluation:
    """Everything `calibrate --evaluate` reports."""

    shape: RuleShape
    rule: FittedRule
    rows: tuple[ModelScore, ...]
    logo: Summary
    in_sample: Summary
    published: Summary
    constant_lr: float
    constant: Summary
    shapes_tried: tuple[tuple[str, float, float], ...]  # (shape, LOGO mean, LOGO max)
    nested: Summary | None = None  # LOGO with the shape chosen inside each fold
    nested_shapes: tuple[str, ...] = ()  # the shapes the folds chose, distinct

    def _in_range(self, lr_in_range: str) -> tuple[Summary | None, tuple[str, ...]]:
        scored = [r for r in self.rows if not math.isnan(r.fitted_lr if lr_in_range == "fitted_in_range"
                                                         else r.in_sample_lr)]
        inside = {r.model: r for r in scored if getattr(r, lr_in_range)}
        outside = tuple(r.model for r in scored if r.model not in inside)
        regret = "fitted_regret" if lr_in_range == "fitted_in_range" else "in_sample_regret"
        return (_summary({m: getattr(r, regret) for m, r in inside.items()}) if inside else None), outside

    @property
    def logo_in_range(self) -> tuple[Summary | None, tuple[str, ...]]:
        """LOGO regret over the models whose held-out LR lies in their swept range, and the others."""
        return self._in_range("fitted_in_range")

    @property
    def in_sample_in_range(self) -> tuple[Summary | None, tuple[str, ...]]:
        return self._in_range("in_sample_in_range")


def groups_of(models: Sequence[str], facts: Mapping[str, ModelFacts]) -> dict[str, str]:
    """Model -> group name (the first model, in sweep order, with the same architecture)."""
    first: dict[tuple[object, ...], str] = {}
    return {m: first.setdefault(facts[m].architecture_key(), m) for m in models}


def _summary(regrets: Mapping[str, float]) -> Summary:
    regrets = {m: r for m, r in regrets.items() if not math.isnan(r)}
    if not regrets:
        return Summary(math.nan, math.nan, "-", 0)
    worst = max(regrets, key=lambda m: regrets[m])
    return Summary(sum(regrets.values()) / len(regrets), regrets[worst], worst, len(regrets))


def leave_one_group_out(models: Sequence[str], facts: Mapping[str, ModelFacts], optima: Mapping[str, Optimum],
                        shape: RuleShape) -> dict[str, tuple[float, bool]]:
    """Model -> (LR from the rule fitted without its group, whether its family had data); NaN when the
    sweep has one group only (nothing is left to fit on)."""
    groups = groups_of(models, facts)
    if len(set(groups.values())) < 2:
        return {m: (math.nan, False) for m in models}
    out: dict[str, tuple[float, bool]] = {}
    for group in dict.fromkeys(groups.values()):
        held = [m for m in models if groups[m] == group]
        rule = fit_rule([m for m in models if groups[m] != group], facts, optima, shape)
        for m in held:
            out[m] = (rule.lr(facts[m]), rule.answers_with_family(facts[m].family))
    return out


def _choose_shape(models: Sequence[str], curves: Mapping[str, Curve], facts: Mapping[str, ModelFacts],
                  optima: Mapping[str, Optimum], shapes: Sequence[RuleShape],
                  ) -> tuple[RuleShape, list[tuple[float, float, RuleShape, dict[str, tuple[float, bool]]]]]:
    """The shape with the lowest LOGO mean regret (then max) on `models`, and every shape's scores."""
    tried = []
    for shape in shapes:
        logo = leave_one_group_out(models, facts, optima, shape)
        regrets = [curves[m].regret(logo[m][0]) for m in models]
        tried.append((sum(regrets) / len(regrets), max(regrets), shape, logo))
    best = min(tried, key=lambda t: (round(t[0], 12), t[1]))
    return best[2], tried


def nested_leave_one_group_out(curves: Mapping[str, Curve], facts: Mapping[str, ModelFacts],
                               optima: Mapping[str, Optimum], shapes: Sequence[RuleShape],
                               ) -> tuple[dict[str, float], list[str]]:
    """Model -> regret when its group is held out of the shape choice as well as the fit."""
    models = list(curves)
    groups = groups_of(models, facts)
    regrets: dict[str, float] = {}
    chosen: list[str] = []
    for group in dict.fromkeys(groups.values()):
        rest = [m for m in models if groups[m] != group]
        shape, _ = _choose_shape(rest, curves, facts, optima, shapes)
        chosen.append(shape.name)
        rule = fit_rule(rest, facts, optima, shape)
        regrets |= {m: curves[m].regret(rule.lr(facts[m])) for m in models if groups[m] == group}
    return regrets, chosen


def published_lr(facts: ModelFacts, calibration: Calibration | None = None) -> float | None:
    """The published formula's LoRA LR, or None for a family it does not cover."""
    try:
        return recommend_lr(facts.family, facts.hidden_size, calibration=calibration or published_calibration()).lr
    except UncalibratedFamilyError:
        return None


def best_constant(curves: Mapping[str, Curve]) -> float:
    """The one LR with the lowest mean regret. Mean regret is piecewise linear in log(lr) with
    kinks at swept LRs only, so its minimum is at one of them: the search is exact."""
    candidates = sorted({lr for c in curves.values() for lr in c.lrs})
    return min(candidates, key=lambda lr: (sum(c.regret(lr) for c in curves.values()), lr))


def evaluate(curves: Mapping[str, Curve], facts: Mapping[str, ModelFacts],
             shapes: Sequence[RuleShape] = SHAPES, nested: bool = False) -> Evaluation:
    """Try every shape, keep the one with the lowest leave-one-group-out mean regret (then max);
    `nested` also scores that choice honestly (about 20x the work)."""
    models = list(curves)
    optima = {m: optimum(curves[m]) for m in models}
    if len(set(groups_of(models, facts).values())) < 2:
        shapes, nested = shapes[:1], False  # one architecture: no size term to fit, no fold to score it on
    shape, tried = _choose_shape(models, curves, facts, optima, shapes)
    logo = next(t[3] for t in tried if t[2] is shape)
    rule = fit_rule(models, facts, optima, shape)
    groups = groups_of(models, facts)
    constant = best_constant(curves)
    rows = []
    for m in models:
        pub = published_lr(facts[m])
        rows.append(ModelScore(
            model=m, group=groups[m], family=facts[m].family, fitted_lr=logo[m][0],
            fitted_regret=curves[m].regret(logo[m][0]), fitted_by_family=logo[m][1],
            in_sample_lr=rule.lr(facts[m]), in_sample_regret=curves[m].regret(rule.lr(facts[m])),
            published_lr=pub, published_regret=None if pub is None else curves[m].regret(pub),
            constant_regret=curves[m].regret(constant),
            swept_low=curves[m].lrs[0], swept_high=curves[m].lrs[-1], regret_slope=math.sqrt(optima[m].weight),
            censored=optima[m].censored,
        ))
    nested_regrets, nested_chosen = (nested_leave_one_group_out(curves, facts, optima, shapes) if nested
                                     else ({}, []))
    return Evaluation(
        shape=shape, rule=rule, rows=tuple(rows),
        logo=_summary({r.model: r.fitted_regret for r in rows}),
        in_sample=_summary({r.model: r.in_sample_regret for r in rows}),
        published=_summary({r.model: r.published_regret for r in rows if r.published_regret is not None}),
        constant_lr=constant, constant=_summary({r.model: r.constant_regret for r in rows}),
        shapes_tried=tuple((s.name, mn, mx) for mn, mx, s, _ in tried),
        nested=_summary(nested_regrets) if nested_regrets else None,
        nested_shapes=tuple(dict.fromkeys(nested_chosen)),
    )
