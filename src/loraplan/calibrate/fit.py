"""From curves to a rule: each model's optimum, then weighted least squares in log(lr).

Optimum: a parabola in log(lr) through the best swept LR and its two neighbours gives the
vertex (the model's optimum between grid points) and the curvature. At the edge of the grid the
best LR is the optimum and the curvature comes from the secant to its one neighbour.

Weights: regret near the optimum is about curvature/2 * (log lr - log lr*)^2 / min f, so a least
squares fit weighted by curvature/min f minimises a second-order estimate of total regret: sharp
curves pull the rule, flat ones (where any LR is fine) do not.

Rule: log lr_lora = a_family + sum_k b_k * x_k over the shape's features (log hidden/2000,
log active/1e9, log total/1e9, hybrid attention, MoE), slopes shared by every family. A family
without data gets the cross-family intercept: the mean of the fitted family intercepts (one vote
per family, so the family with most models does not decide for the unseen one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loraplan.calibrate.features import ModelFacts
from loraplan.calibrate.regret import Curve
from loraplan.errors import CalibrationError

RIDGE = 1e-9  # keeps the normal equations solvable when a feature is constant in a fold


@dataclass(frozen=True)
class Optimum:
    """A model's estimated best LR and how sharply its NLL rises around it.

    log_lr: natural log of the estimated optimum.
    weight: curvature of f in log(lr) divided by min f (regret per squared log-LR error, x2).
    how: `parabola` (interior), `edge` (best at the end of the grid) or `single` (one LR swept).
    """

    log_lr: float
    weight: float
    how: str


def optimum(curve: Curve) -> Optimum:
    xs = [math.log(lr) for lr in curve.lrs]
    ys = list(curve.values)
    best = ys.index(min(ys))
    if len(xs) == 1:
        return Optimum(xs[0], 0.0, "single")
    if 0 < best < len(xs) - 1:
        (x0, x1, x2), (y0, y1, y2) = xs[best - 1:best + 2], ys[best - 1:best + 2]
        d01, d12 = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
        a = (d12 - d01) / (x2 - x0)  # f = a x^2 + b x + c
        if a > 0:
            b = d01 - a * (x0 + x1)
            vertex = min(max(-b / (2 * a), x0), x2)
            return Optimum(vertex, 2 * a / min(ys), "parabola")
        return Optimum(x1, 0.0, "parabola")
    neighbour = best + 1 if best == 0 else best - 1
    rise = ys[neighbour] - ys[best]
    return Optimum(xs[best], max(2 * rise / (xs[neighbour] - xs[best]) ** 2 / min(ys), 0.0), "edge")


@dataclass(frozen=True)
class RuleShape:
    """Which features a rule uses; `family_terms` gives each family its own intercept."""

    name: str
    features: tuple[str, ...]
    family_terms: bool = True


SHAPES: tuple[RuleShape, ...] = (
    RuleShape("family", ()),
    RuleShape("family + log hidden", ("hidden",)),
    RuleShape("family + log active", ("active",)),
    RuleShape("family + log total", ("total",)),
    RuleShape("family + log hidden + hybrid + moe", ("hidden", "hybrid", "moe")),
    RuleShape("family + log active + hybrid + moe", ("active", "hybrid", "moe")),
    RuleShape("family + log total + hybrid", ("total", "hybrid")),
    RuleShape("log active + hybrid + moe", ("active", "hybrid", "moe"), family_terms=False),
    RuleShape("log total + hybrid", ("total", "hybrid"), family_terms=False),
)


@dataclass(frozen=True)
class FittedRule:
    """log lr_lora = intercept(family) + sum(slopes[k] * facts.log_feature(k)).

    intercepts: per family with data.
    default_intercept: for every other family (cross-family term).
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


def fit_rule(models: Sequence[str], facts: Mapping[str, ModelFacts], optima: Mapping[str, Optimum],
             shape: RuleShape) -> FittedRule:
    """Weighted least squares of the optima in log(lr) on the shape's features."""
    used = [m for m in models if optima[m].weight > 0]
    if not used:
        raise CalibrationError("no model in the sweep has a usable curve (two or more learning rates)")
    families = sorted({facts[m].family for m in used}) if shape.family_terms else ["*"]
    columns = len(families) + len(shape.features)
    normal = [[0.0] * columns for _ in range(columns)]
    rhs = [0.0] * columns
    for m in used:
        fam = facts[m].family if shape.family_terms else "*"
        row = [1.0 if f == fam else 0.0 for f in families] + [facts[m].log_feature(k) for k in shape.features]
        w, y = optima[m].weight, optima[m].log_lr
        for i in range(columns):
            rhs[i] += w * row[i] * y
            for j in range(columns):
                normal[i][j] += w * row[i] * row[j]
    scale = max(normal[i][i] for i in range(columns))
    for i in range(len(families), columns):
        normal[i][i] += RIDGE * scale
    beta = _solve(normal, rhs)
    slopes = dict(zip(shape.features, beta[len(families):], strict=True))
    by_family: dict[str, list[str]] = {}
    for m in models:
        by_family.setdefault(facts[m].family, []).append(m)
    if shape.family_terms:
        intercepts = dict(zip(families, beta[:len(families)], strict=True))
        default = sum(intercepts.values()) / len(intercepts)
        return FittedRule(shape, intercepts, default, slopes, {f: tuple(ms) for f, ms in by_family.items()})
    return FittedRule(shape, {}, beta[0], slopes, {f: tuple(ms) for f, ms in by_family.items()})
