"""What a sweep measured: per (method, rank), the held-out loss per LR and the optimum fitted in log(lr).

Optimum: the best swept LR and its two neighbours bracket the optimum; a parabola in log(lr) through
the three gives the fitted optimum inside that bracket. A best LR at either end of the grid is not
bracketed: the optimum may lie beyond, and it is reported as such (never as found). Diverged trials
(non-finite loss) count as worse than any finite one; failed trials are left out.

Rank invariance ("LoRA Without Regret": with alpha fixed and alpha/r scaling the optimal LR barely
depends on rank): the spread max/min of the bracketed LoRA optima, called invariant when it stays
within one grid step (the largest ratio between neighbouring LRs swept), the finest the grid can tell.
LoRA/full ratio: each rank's optimum over full fine-tuning's, next to the doctrine's 10x.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from loraplan.calibrate.store import TrialRow
from loraplan.train.verdicts import log_parabola_vertex

DOCTRINE_RATIO = 10.0  # LoRA's optimal LR over full fine-tuning's (LoRA Without Regret; tinker-cookbook)


@dataclass(frozen=True)
class CurveFit:
    """One (method, rank)'s losses and optimum.

    lrs / losses: swept LRs ascending, final held-out loss at each (the mean over seeds; inf: diverged).
    best_lr: the swept LR with the lowest loss.
    optimum: fitted optimum (parabola vertex in log lr within the bracket); None when not bracketed.
    bracket: (lower, upper) swept LRs around the optimum; None when not bracketed.
    edge: `low` / `high` when the best LR is the smallest / largest swept (`both`: one LR), else None.
    """

    method: str
    rank: int
    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    best_lr: float
    optimum: float | None
    bracket: tuple[float, float] | None
    edge: str | None

    @property
    def label(self) -> str:
        return "full fine-tuning" if self.method == "full" else f"LoRA rank {self.rank}"

    def as_dict(self) -> dict[str, object]:
        return {"method": self.method, "rank": self.rank, "label": self.label,
                "loss_by_lr": [{"lr": lr, "loss": loss if math.isfinite(loss) else None}
                               for lr, loss in zip(self.lrs, self.losses, strict=True)],
                "best_lr": self.best_lr, "optimum": self.optimum, "bracket": self.bracket, "edge": self.edge}


def fit_curve(method: str, rank: int, points: Iterable[tuple[float, float]]) -> CurveFit:
    """Fit one curve from (lr, loss) pairs (several seeds at one LR are averaged)."""
    by_lr: dict[float, list[float]] = {}
    for lr, loss in points:
        by_lr.setdefault(lr, []).append(loss if math.isfinite(loss) else math.inf)
    lrs = tuple(sorted(by_lr))
    losses = tuple(sum(by_lr[lr]) / len(by_lr[lr]) for lr in lrs)
    best = min(range(len(lrs)), key=lambda i: (losses[i], i))
    if len(lrs) == 1:
        return CurveFit(method, rank, lrs, losses, lrs[0], None, None, "both")
    if best in (0, len(lrs) - 1):
        return CurveFit(method, rank, lrs, losses, lrs[best], None, None, "low" if best == 0 else "high")
    lo, hi = best - 1, best + 1
    return CurveFit(method, rank, lrs, losses, lrs[best], _vertex(lrs[lo:hi + 1], losses[lo:hi + 1]),
                    (lrs[lo], lrs[hi]), None)


def _vertex(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The parabola through three (log lr, loss) points, its minimum clamped to the outer two."""
    if not all(math.isfinite(v) for v in losses):  # a diverged neighbour: the best swept LR is all we know
        return lrs[1]
    return log_parabola_vertex(list(zip(lrs, losses, strict=True)))[0]


@dataclass(frozen=True)
class SweepSummary:
    """Every curve, the rank-invariance verdict and the LoRA/full ratios."""

    curves: tuple[CurveFit, ...]
    grid_step: float  # largest ratio between neighbouring swept LoRA LRs
    rank_spread: float | None  # max/min of the bracketed LoRA optima over ranks (None: fewer than two)
    rank_invariant: bool | None
    ratios: dict[int, float]  # rank -> LoRA optimum / full fine-tuning optimum (both bracketed)

    def as_dict(self) -> dict[str, object]:
        return {"curves": [c.as_dict() for c in self.curves], "grid_step": self.grid_step,
                "rank_spread": self.rank_spread, "rank_invariant": self.rank_invariant,
                "lora_over_full": {str(r): v for r, v in self.ratios.items()}, "doctrine_ratio": DOCTRINE_RATIO}


def summarize(rows: Iterable[TrialRow]) -> SweepSummary:
    """Fit every (method, rank) of the finished trials."""
    groups: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for row in rows:
        if row["status"] != "ok" or row["metric"] is None:
            continue
        groups.setdefault((row["method"], int(row["rank"])), []).append((float(row["lr"]), float(row["metric"])))
    curves = tuple(fit_curve(m, r, pts) for (m, r), pts in sorted(groups.items(), key=lambda kv: (kv[0][0] != "full",
                                                                                                   kv[0][1])))
    all_lrs = sorted({lr for c in curves if c.method == "lora" for lr in c.lrs})
    step = max((b / a for a, b in itertools.pairwise(all_lrs)), default=1.0)
    optima = [c.optimum for c in curves if c.method == "lora" and c.optimum is not None]
    spread = max(optima) / min(optima) if len(optima) >= 2 else None
    full = next((c for c in curves if c.method == "full" and c.optimum is not None), None)
    ratios = {c.rank: c.optimum / full.optimum for c in curves
              if full is not None and c.method == "lora" and c.optimum is not None}
    return SweepSummary(curves, step, spread, None if spread is None else spread <= step * (1 + 1e-9), ratios)


def next_lrs(summary: SweepSummary, step: float, low: float, high: float) -> dict[str, list[float]]:
    """LRs the adaptive search adds, per method: one grid step beyond each unbracketed optimum.

    A curve whose best LR sits at the grid's end gets the next LR past that end (in log space, at the
    grid's own step), within [low, high]; an LR the method already tried is not proposed again. The
    new LRs run at every rank of the method, so ranks stay comparable.
    """
    out: dict[str, list[float]] = {}
    for curve in summary.curves:
        tried = {round(math.log(v), 9) for c in summary.curves if c.method == curve.method for v in c.lrs}
        ends = {"low": [curve.lrs[0] / step], "high": [curve.lrs[-1] * step],
                "both": [curve.lrs[0] / step, curve.lrs[-1] * step]}.get(curve.edge or "", [])
        for candidate in (float(f"{v:.6g}") for v in ends):
            chosen = out.setdefault(curve.method, [])
            key = round(math.log(candidate), 9)
            if low <= candidate <= high and key not in tried and key not in {round(math.log(v), 9) for v in chosen}:
                chosen.append(candidate)
    return {m: sorted(v) for m, v in out.items() if v}
