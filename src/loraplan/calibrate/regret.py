"""The calibration score: how much worse than the model's best swept LR an LR is.

For a model, f(lr) is its metric (test NLL) minimised over the LoRA ranks swept at that lr
(duplicate rows: the lower value), interpolated linearly in log(lr) between swept LRs and held
at the end value outside the swept range. regret(lr) = (f(lr) - min f) / min f.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass

from loraplan.calibrate.sweep import SweepError, SweepPoint


@dataclass(frozen=True)
class Curve:
    """f(lr) of one model on its swept grid.

    model: model id.
    lrs: swept learning rates, ascending, distinct.
    values: f at each of `lrs` (the best metric over ranks and duplicates).
    best_rank: the rank that gave each value (the lowest rank on a tie).
    """

    model: str
    lrs: tuple[float, ...]
    values: tuple[float, ...]
    best_rank: tuple[int, ...]

    @property
    def best(self) -> float:
        """min f: the piecewise-linear f reaches its minimum at a grid point."""
        return min(self.values)

    @property
    def best_lr(self) -> float:
        return self.lrs[self.values.index(self.best)]

    def f(self, lr: float) -> float:
        """Linear in log(lr) between grid points, constant outside (NaN for a NaN lr: no rule answered)."""
        if math.isnan(lr):
            return math.nan
        if lr <= self.lrs[0]:
            return self.values[0]
        if lr >= self.lrs[-1]:
            return self.values[-1]
        hi = bisect.bisect_left(self.lrs, lr)
        if self.lrs[hi] == lr:
            return self.values[hi]
        lo = hi - 1
        t = (math.log(lr) - math.log(self.lrs[lo])) / (math.log(self.lrs[hi]) - math.log(self.lrs[lo]))
        return self.values[lo] + t * (self.values[hi] - self.values[lo])

    def regret(self, lr: float) -> float:
        """(f(lr) - min f) / min f, a fraction (0.01 = 1%)."""
        return (self.f(lr) - self.best) / self.best


def curve(model: str, points: Iterable[SweepPoint]) -> Curve:
    """f on the grid from a model's runs: the minimum over ranks and duplicate rows at each lr."""
    best: dict[float, tuple[float, int]] = {}
    for p in points:
        seen = best.get(p.lr)
        if seen is None or (p.metric, p.rank) < seen:
            best[p.lr] = (p.metric, p.rank)
    if not best:
        raise SweepError(f"{model}: no runs")
    lrs = tuple(sorted(best))
    return Curve(model, lrs, tuple(best[lr][0] for lr in lrs), tuple(best[lr][1] for lr in lrs))


def curves(points: Iterable[SweepPoint]) -> dict[str, Curve]:
    """One curve per model, in first-seen order."""
    by_model: dict[str, list[SweepPoint]] = {}
    for p in points:
        by_model.setdefault(p.model, []).append(p)
    return {model: curve(model, runs) for model, runs in by_model.items()}
