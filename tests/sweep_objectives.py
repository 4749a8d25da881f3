"""Synthetic sweep objectives: a held-out loss that is a known function of LR (no model, no data).

loss(lr, rank) = FLOOR + CURVATURE * (log(lr) - log(optimum))^2, optimum = OPTIMUM for LoRA and
OPTIMUM * FULL_RATIO for full fine-tuning, at every rank (rank-invariant by construction). A trial at
an LR in `common["raise_above"]` or beyond raises; `common["sleep_s"]` slows each trial down (for the
kill-and-resume test); `common["executions"]` names a file each finished execution appends its key to.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

FLOOR = 1.0
CURVATURE = 0.05
OPTIMUM = 1e-3
FULL_RATIO = 0.1


def planted_loss(method: str, lr: float, optimum: float = OPTIMUM) -> float:
    best = optimum * (FULL_RATIO if method == "full" else 1.0)
    return FLOOR + CURVATURE * (math.log(lr) - math.log(best)) ** 2


def synthetic(trial: dict[str, Any], common: dict[str, Any], report: Any) -> dict[str, Any]:
    if common.get("raise_above") and trial["lr"] >= common["raise_above"]:
        raise RuntimeError(f"planted failure at lr {trial['lr']:g}")
    final = planted_loss(trial["method"], trial["lr"], common.get("optimum") or OPTIMUM)
    steps = common["steps"]
    losses = [final + (steps - s) * 0.1 for s in range(1, steps + 1)]
    for s, loss in enumerate(losses, start=1):
        report({"step": s, "loss": loss, "eval_loss": None})
    time.sleep(common.get("sleep_s") or 0.0)
    if common.get("executions"):
        with Path(common["executions"]).open("a", encoding="utf-8") as fh:
            fh.write(trial["key"] + "\n")
    return {"metric": final, "losses": losses, "eval_curve": [[0, final + 1.0], [steps, final]],
            "tokens_per_s": 1000.0}


def slow(executions: str, sleep_s: float = 1.0) -> Any:
    """The synthetic objective, `sleep_s` per trial, logging each finished execution to `executions`."""

    def objective(trial: dict[str, Any], common: dict[str, Any], report: Any) -> dict[str, Any]:
        return synthetic(trial, {**common, "sleep_s": sleep_s, "executions": executions}, report)

    return objective


def failing(raise_above: float) -> Any:
    """The synthetic objective, raising at `raise_above` and every larger LR."""

    def objective(trial: dict[str, Any], common: dict[str, Any], report: Any) -> dict[str, Any]:
        return synthetic(trial, {**common, "raise_above": raise_above}, report)

    return objective
