"""From curves to a rule: each model's best swept LR, then weighted least squares in log(lr).

Optimum: the score's f is linear in log(lr) between swept LRs, so its minimum is a swept LR: the
best one is the target (a parabola vertex between grid points would aim where the score is not
lowest). How fast regret rises on either side of it (regret per unit of log lr, averaged over the
two sides) is the slope; a fit error e then costs about slope * |e| of regret.

Weights: slope squared, so the fit minimises the sum of squared (linearised) regrets: sharp curves
pull the rule, flat ones (where any LR is fine) barely do, and one large regret costs more than
several small ones, which keeps the worst model in check.

Censoring: a best LR at the end of the grid says only that the optimum lies there or beyond
(Llama-3.2-1B is best at the largest LR swept, 1e-3). Such a model adds no error while the rule
answers at or beyond that end: the fit is repeated, leaving out the censored models the rule
already satisfies, until that set stops changing (a squared-hinge, Tobit-style fit; a few rounds).

Rule: log lr_lora = c + d_family + sum_k b_k * x_k over the shape's features (see
ModelFacts.log_feature), slopes shared by every family. c is the cross-family term, the answer for a
family without data; the family offsets d are shrunk toward 0 by a ridge penalty (FAMILY_RIDGE), so
a family leaves the shared rule only as far as its own models agree on it, and a family with one
or two architectures does not chase them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loraplan.calibrate.features import ModelFacts
from loraplan.calibrate.regret import Curve
from loraplan.errors import CalibrationError

RIDGE = 1e-9  # keeps the normal equations solvable when a feature is constant in a fold
FAMILY_RIDGE = 1.0  # penalty on family offsets, per unit of the sweep's total weight
CENSOR_ROUNDS = 50


@dataclass(frozen=True)
class Optimum:
    """A model's best swept LR and how sharply regret rises around it.

    log_lr: natural log of the best swept LR (where f, hence the score, is lowest).
    weight: squared regret slope per unit of log lr (mean of both sides; one side at an edge).
    censored: `above` / `below` when the best LR is the largest / smallest swept (the optimum may
        lie beyond), else None.
    how: `grid` (interior), `edge` (best at the end of the grid) or `single` (one LR swept).
    """

    log_lr: float
    weight: float
    censored: str | None
    how: str


def optimum(curve: Curve) -> Optimum:
    xs = [math.log(lr) for lr in curve.lrs]
    regrets = [curve.regret(lr) for lr in curve.lrs]
    best = regrets.index(0.0)
    if len(xs) == 1:
        return Optimum(xs[0], 0.0, None, "single")
    slopes = [regrets[n] / abs(xs[n] - xs[best]) for n in (best - 1, best + 1) if 0 <= n < len(xs)]
    slope = sum(slopes) / len(slopes)
    censored = "above" if best == len(xs) - 1 else "below" if best == 0 else None
    return Optimum(xs[best], slope**2, censored, "grid" if censored is None else "edge")


@dataclass(frozen=True)
class RuleShape:
    """Which features a rule uses; `family_terms` gives each family its own (shrunk) intercept."""

    name: str
    features: tuple[str, ...]
    family_terms: bool = True


SHAPES: tuple[RuleShape, ...] = (
    RuleShape("family", ()),
    RuleShape("family + log hidden + hybrid + moe", ("hidden", "hybrid", "moe")),
    RuleShape("family + log active + hybrid + moe", ("active", "hybrid", "moe")),
    RuleShape("family + log total + hybrid", ("total", "hybrid")),
    RuleShape("family + log active (full attention) + hybrid", ("active_full", "hybrid")),
    RuleShape("family + log active (full attention) + hybrid + moe", ("active_full", "hybrid", "moe")),
)


@dataclass(frozen=True)
class FittedRule:
    """log lr_lora = intercept(family) + sum(slopes[k] * facts.log_feature(k)).

    intercepts: per family with data (cross-family term + the family's shrunk offset).
    default_intercept: for every other family (the cross-family term).
    slopes: per feature of the shape.
    models: the models fitted, per family.
    """

    shape: RuleShape
    intercepts: Mapping[str, float]
    default_intercept: float
    slopes: Mapping[str, float]
    models: Mapping[str, tuple[str, ...]]

    def log_lr(self, facts: ModelFacts) -> float:
        a = self.intercepts.get(facts.family, self.default_intercept)
        return a + sum(b * facts.log_feature(k) for k, b in self.slopes.items())

    def lr(self, facts: ModelFacts) -> float:
        return math.exp(self.log_lr(facts))

    def answers_with_family(self, family: str) -> bool:
        return family in self.intercepts


def _solve(matrix: list[list[float]], rhs: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the systems are at most ~10 x 10)."""
    n = len(rhs)
    m = [[*row, rhs[i]] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-15:
            raise CalibrationError("the sweep cannot determine this rule shape (singular system)")
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            factor = m[r][col] / m[col][col]
            for c in range(col, n + 1):
                m[r][c] -= factor * m[col][c]
    out = [0.0] * n
    for r in range(n - 1, -1, -1):
        out[r] = (m[r][n] - sum(m[r][c] * out[c] for c in range(r + 1, n))) / m[r][r]
    return out


def _weighted_ridge(rows: Sequence[Sequence[float]], targets: Sequence[float], weights: Sequence[float],
                    penalties: Sequence[float]) -> list[float]:
    """argmin sum w (row . beta - y)^2 + sum penalty_i * beta_i^2."""
    n = len(penalties)
    normal = [[0.0] * n for _ in range(n)]
    rhs = [0.0] * n
    for row, y, w in zip(rows, targets, weights, strict=True):
        for i in range(n):
            if row[i]:
                rhs[i] += w * row[i] * y
                for j in range(n):
                    normal[i][j] += w * row[i] * row[j]
    for i in range(n):
        normal[i][i] += penalties[i]
    return _solve(normal, rhs)


def _binds(censored: str | None, target: float, fitted: float) -> bool:
    """Whether a model's error counts: always, or for a censored one while the rule misses its side."""
    return censored is None or (fitted < target if censored == "above" else fitted > target)


def fit_rule(models: Sequence[str], facts: Mapping[str, ModelFacts], optima: Mapping[str, Optimum],
             shape: RuleShape, family_ridge: float = FAMILY_RIDGE) -> FittedRule:
    """Weighted ridge least squares of the best LRs in log(lr) on the shape's features, censored ends."""
    used = [m for m in models if optima[m].weight > 0]
    if not used:
        raise CalibrationError("no model in the sweep has a usable curve (two or more learning rates)")
    families = sorted({facts[m].family for m in used}) if shape.family_terms else []
    rows = [[1.0] + [1.0 if facts[m].family == f else 0.0 for f in families]
            + [facts[m].log_feature(k) for k in shape.features] for m in used]
    weights = [optima[m].weight for m in used]
    total = sum(weights)
    penalties = [0.0] + [family_ridge * total] * len(families) + [RIDGE * total] * len(shape.features)
    targets = [optima[m].log_lr for m in used]
    binding = [True] * len(used)  # censored models count only while the rule stops short of their edge
    for _ in range(CENSOR_ROUNDS):
        beta = _weighted_ridge(rows, targets, [w if b else 0.0 for w, b in zip(weights, binding, strict=True)],
                               penalties)
        fitted = [sum(a * b for a, b in zip(row, beta, strict=True)) for row in rows]
        now = [_binds(optima[m].censored, y, x) for m, y, x in zip(used, targets, fitted, strict=True)]
        if now == binding or not any(now):  # no model binds: every one is censored and already satisfied
            break
        binding = now
    default = beta[0]
    intercepts = {f: default + d for f, d in zip(families, beta[1:1 + len(families)], strict=True)}
    slopes = dict(zip(shape.features, beta[1 + len(families):], strict=True))
    by_family: dict[str, list[str]] = {}
    for m in models:
        by_family.setdefault(facts[m].family, []).append(m)
    return FittedRule(shape, intercepts, default, slopes, {f: tuple(ms) for f, ms in by_family.items()})
