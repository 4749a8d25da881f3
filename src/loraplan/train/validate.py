"""validate(): the doctrine's short-run checks on the user's own setup, model and data.

    rank-invariance  the configured LR at ranks r/4, r, 4r: near-identical curves, or a parametrisation problem
    lr-bracket       the configured LR x 1/3, 1, 3 (more when the minimum is not bracketed): fitted optimum vs config
    lora-vs-full     (opt-in) full fine-tuning at LR/10 next to LoRA at LR: within the doctrine's 5-10%
    adapter-health   the base trial's LoraHealthCallback: exploding or flat adapter norms

Every trial is a run_trial() of the same spec with one field changed (same seed, so the same batches in the same
order); identical trials run once. Verdict arithmetic lives in verdicts.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from enum import StrEnum
from typing import Any, TypedDict

from loraplan.errors import LoraplanError
from loraplan.train import verdicts as v
from loraplan.train.engine import TrialRecord, TrialSpec, run_trial

CHECKS = {"rank": "rank-invariance", "lr": "lr-bracket", "full": "lora-vs-full", "health": "adapter-health"}
DEFAULT_CHECKS = ("rank", "lr", "health")
LR_STEP = 3.0  # grid ratio of the LR bracket: the doctrine's x1/3, x1, x3
MAX_EXTRA_LR_POINTS = 4  # bracket search: at most this many LRs beyond the first three (3^4 = 81x further)
FULL_LR_RATIO = 10.0  # LoRA wants about 10x the full fine-tuning LR (LoRA Without Regret)


class AlphaRule(StrEnum):
    FIXED = "fixed"  # the config's alpha at every rank: the doctrine's parametrisation
    FOLLOWS_RANK = "follows-rank"  # alpha/r kept, as a user writing alpha = 2r does when changing rank


class CheckResult(TypedDict):
    """One check: `measured` and `threshold` are JSON objects of numbers; cause and fix are None on a pass."""

    id: str
    verdict: str
    summary: str
    measured: dict[str, Any]
    threshold: dict[str, Any]
    cause: str | None
    fix: str | None


class TrialEntry(TypedDict):
    label: str
    rank: int | None
    alpha: float | None
    lr: float
    full_finetune: bool
    record: TrialRecord


class Validation(TypedDict):
    checks: list[CheckResult]
    trials: list[TrialEntry]
    lr_fit: dict[str, Any] | None
    exit_code: int
    seconds: float
    setup: dict[str, Any]


Runner = Callable[[str, TrialSpec], TrialRecord]


def parse_checks(text: str) -> tuple[str, ...]:
    """'rank,lr,health' -> check keys; unknown names are one error naming the valid ones."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in CHECKS and n not in CHECKS.values()]
    if unknown or not names:
        raise LoraplanError(f"--checks: unknown {', '.join(unknown) or '(empty)'}; choose from "
                            f"{', '.join(CHECKS)}")
    by_id = {value: key for key, value in CHECKS.items()}
    return tuple(by_id.get(n, n) for n in names)


def validate(spec: TrialSpec, checks: Sequence[str] = DEFAULT_CHECKS, alpha_rule: AlphaRule = AlphaRule.FIXED,
             lr_sweep: bool = False, runner: Runner | None = None) -> Validation:
    """Run the trials the checks need and grade them. `runner(label, spec)` defaults to run_trial."""
    started = time.perf_counter()
    setup = spec.resolved_setup()
    if not setup.is_lora:
        raise LoraplanError("validate checks a LoRA setup; this one is full fine-tuning")
    trials = _Trials(spec, runner or (lambda label, s: run_trial(s)))
    rank, alpha, lr = int(setup.lora.rank or 1), float(setup.lora.alpha or 1), float(setup.optim.learning_rate or 0)
    base = trials.run("configured", rank, alpha, lr)
    results: list[CheckResult] = []
    lr_fit = None
    for check in checks:
        if check == "rank":
            results.append(_rank_check(trials, base, rank, alpha, lr, alpha_rule, setup))
        elif check == "lr":
            result, fit = _lr_check(trials, rank, alpha, lr)
            results.append(result)
            lr_fit = _fit_json(fit)
        elif check == "full":
            results.append(_full_check(trials, base, rank, alpha, lr, lr_sweep))
        elif check == "health":
            results.append(_health_check(base))
    failed = any(r["verdict"] == v.Verdict.FAIL for r in results)
    return Validation(checks=results, trials=trials.entries, lr_fit=lr_fit, exit_code=1 if failed else 0,
                      seconds=time.perf_counter() - started, setup=setup.model_dump(mode="json"))


class _Trials:
    """Runs each distinct (rank, alpha, lr, full) once."""

    def __init__(self, spec: TrialSpec, runner: Runner) -> None:
        self.spec = spec
        self.runner = runner
        self.entries: list[TrialEntry] = []
        self._done: dict[tuple[Any, ...], TrialRecord] = {}

    def run(self, label: str, rank: int | None, alpha: float | None, lr: float, full: bool = False) -> TrialRecord:
        key = (None, None, _round(lr), True) if full else (rank, _round(alpha or 0), _round(lr), False)
        if key not in self._done:
            spec = replace(self.spec, rank=None if full else rank, alpha=None if full else alpha, lr=lr,
                           full_finetune=full)
            record = self.runner(label, spec)
            self._done[key] = record
            self.entries.append(TrialEntry(label=label, rank=None if full else rank, alpha=None if full else alpha,
                                           lr=lr, full_finetune=full, record=record))
        return self._done[key]


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def _rank_check(trials: _Trials, base: TrialRecord, rank: int, alpha: float, lr: float, rule: AlphaRule,
                setup: Any) -> CheckResult:
    cap = int(base.get("hidden_size") or 4 * rank)
    ranks = sorted({max(1, rank // 4), rank, min(4 * rank, cap)})
    gaps: dict[str, float] = {}
    for r in ranks:
        if r == rank:
            continue
        a = alpha if rule is AlphaRule.FIXED else alpha * r / rank
        record = trials.run(f"rank {r}", r, a, lr)
        gaps[str(r)] = v.progress_gap(record["losses"], base["losses"])
    worst = max(gaps.values(), default=0.0)
    if not math.isfinite(worst):  # the rank-r loss did not fall: no progress to measure the gap against
        return _rank_inconclusive(rank, ranks, lr, rule, len(base["losses"]))
    verdict = v.grade(worst, v.RANK_GAP_PASS, v.RANK_GAP_FAIL)
    measured = {"ranks": ranks, "alpha_rule": rule.value, "gap_by_rank": {k: _num(g) for k, g in gaps.items()},
                "largest_gap": _num(worst), "steps": len(base["losses"])}
    threshold = {"pass_at_most": v.RANK_GAP_PASS, "fail_above": v.RANK_GAP_FAIL,
                 "gap": "max |smoothed loss - rank-r loss| / how far the rank-r loss fell"}
    summary = (f"ranks {', '.join(map(str, ranks))} at lr {lr:.3g}: loss curves differ by up to "
               f"{worst:.0%} of the rank-{rank} run's progress")
    if verdict is v.Verdict.PASS:
        return CheckResult(id="rank-invariance", verdict=verdict.value, summary=summary, measured=measured,
                           threshold=threshold, cause=None, fix=None)
    return CheckResult(id="rank-invariance", verdict=verdict.value, summary=summary, measured=measured,
                       threshold=threshold, cause=_rank_causes(rule, alpha, rank, setup),
                       fix=_rank_fix(rule, alpha, rank, setup))


def _rank_inconclusive(rank: int, ranks: list[int], lr: float, rule: AlphaRule, steps: int) -> CheckResult:
    return CheckResult(
        id="rank-invariance", verdict=v.Verdict.WARN.value,
        summary=f"ranks {', '.join(map(str, ranks))} at lr {lr:.3g}: inconclusive, the rank-{rank} loss (moving "
                f"average) never fell below its first steps in {steps} steps",
        measured={"ranks": ranks, "alpha_rule": rule.value, "gap_by_rank": {}, "largest_gap": None, "steps": steps},
        threshold={"pass_at_most": v.RANK_GAP_PASS, "fail_above": v.RANK_GAP_FAIL},
        cause="per-batch noise is larger than the progress of so short a run",
        fix="rerun with more --steps or a larger --batch-size")


def _rank_causes(rule: AlphaRule, alpha: float, rank: int, setup: Any) -> str:
    """The doctrine's causes, in its order, the ones this setup shows marked as likely.

    Under the fixed rule every trial keeps the config's alpha, so an alpha that happens to equal r is not what
    the trials measured; alpha following rank is the likely cause only when the trials made it follow.
    """
    follows = rule is AlphaRule.FOLLOWS_RANK
    causes = [
        ("alpha that follows rank (alpha = r or 2r): the update scale alpha/r then grows with the rank", follows),
        ("rsLoRA at low rank (alpha/sqrt(r) does not cancel Adam's rank dependence)", bool(setup.lora.use_rslora)),
        ("a loss mask that differs between runs", False),
        ("dropout (a different random mask per rank)", bool(setup.lora.dropout)),
    ]
    likely = [text for text, applies in causes if applies]
    rest = [text for text, applies in causes if not applies]
    lead = f"likely: {'; '.join(likely)}" if likely else "no known cause shows in the setup"
    return f"{lead}. Other causes, in order: {'; '.join(rest)}" if rest else lead


def _rank_fix(rule: AlphaRule, alpha: float, rank: int, setup: Any) -> str:
    if rule is AlphaRule.FOLLOWS_RANK:
        return "keep alpha fixed (e.g. 32) when changing rank, so the scale is alpha/r"
    if setup.lora.use_rslora:
        return "turn rsLoRA off (use_rslora: false) and keep alpha fixed"
    if setup.lora.dropout:
        return "set LoRA dropout to 0 for short runs"
    return "check that every run uses the same loss mask and data; rerun with more --steps"


def _lr_check(trials: _Trials, rank: int, alpha: float, lr: float) -> tuple[CheckResult, v.LrFit]:
    points: dict[float, float] = {}
    for factor in (1 / LR_STEP, 1.0, LR_STEP):
        points[lr * factor] = _final_loss(trials.run(f"lr x{factor:.3g}", rank, alpha, lr * factor))
    for _ in range(MAX_EXTRA_LR_POINTS):
        direction = v.needs_more_points(list(points.items()))
        if direction == 0:
            break
        edge = (min(points) / LR_STEP) if direction < 0 else (max(points) * LR_STEP)
        points[edge] = _final_loss(trials.run(f"lr x{edge / lr:.3g}", rank, alpha, edge))
    fit = v.fit_lr_optimum(list(points.items()))
    factor = v.lr_factor(lr, fit)
    size = max(factor, 1 / factor)
    flat = v.is_flat(list(points.values()))
    verdict = v.Verdict.PASS if flat else v.grade(size, v.LR_FACTOR_PASS, v.LR_FACTOR_FAIL)
    bound = "at least " if fit.at_edge else "about "
    direction = "raise" if factor > 1 else "lower"
    measured = {"configured_lr": lr, "best_lr": fit.best_lr, "factor_to_best": _num(factor), "at_edge": fit.at_edge,
                "flat": flat,
                "points": [{"lr": p, "loss": loss} for p, loss in fit.points]}
    threshold = {"pass_within_factor": v.LR_FACTOR_PASS, "fail_beyond_factor": v.LR_FACTOR_FAIL,
                 "loss": "held-out loss at the end of each trial (train loss when nothing is held out)"}
    where = "the edge of the LRs tried" if fit.at_edge else "fitted in log LR"
    summary = f"best lr {fit.best_lr:.3g} ({where}); configured {lr:.3g} is {size:.1f}x too " + (
        "low" if factor > 1 else "high")
    if verdict is v.Verdict.PASS:
        summary = f"best lr {fit.best_lr:.3g} ({where}); configured {lr:.3g} is within {v.LR_FACTOR_PASS:g}x of it"
        if flat:
            summary = f"loss is flat (within 0.2%) over lr {min(points):.3g}-{max(points):.3g}; configured {lr:.3g}"
        return CheckResult(id="lr-bracket", verdict=verdict.value, summary=summary, measured=measured,
                           threshold=threshold, cause=None, fix=None), fit
    if factor > 1:
        why = (" (a full fine-tuning LR reused for LoRA is about 10x too low)" if size >= 6 else
               " (short runs favour somewhat higher LRs than long ones: confirm with more --steps)")
    else:
        why = " (alpha/r >= 4 with a high LR overshoots)"
    cause = f"the configured LR is {size:.1f}x too {'low' if factor > 1 else 'high'}{why}"
    fix = f"{direction} the learning rate {bound}{size:.0f}x, to {fit.best_lr:.2g}"
    return CheckResult(id="lr-bracket", verdict=verdict.value, summary=summary, measured=measured,
                       threshold=threshold, cause=cause, fix=fix), fit


def _full_check(trials: _Trials, base: TrialRecord, rank: int, alpha: float, lr: float,
                lr_sweep: bool) -> CheckResult:
    full = trials.run("full fine-tuning", None, None, lr / FULL_LR_RATIO, full=True)
    gap = v.tracking_gap(base["losses"], full["losses"])
    verdict = v.grade(abs(gap), v.TRACK_PASS, v.TRACK_FAIL)
    measured: dict[str, Any] = {"lora_lr": lr, "full_lr": lr / FULL_LR_RATIO, "relative_gap": _num(gap),
                                "lora_final_loss": _num(v.smooth(base["losses"])[-1]),
                                "full_final_loss": _num(v.smooth(full["losses"])[-1])}
    if lr_sweep:
        full_points = {lr / FULL_LR_RATIO * f: _final_loss(trials.run(f"full lr x{f:.3g}", None, None,
                                                                      lr / FULL_LR_RATIO * f, full=True))
                       for f in (1 / LR_STEP, 1.0, LR_STEP)}
        lora_points = {lr * f: _final_loss(trials.run(f"lr x{f:.3g}", rank, alpha, lr * f))
                       for f in (1 / LR_STEP, 1.0, LR_STEP)}
        full_fit, lora_fit = v.fit_lr_optimum(list(full_points.items())), v.fit_lr_optimum(list(lora_points.items()))
        measured["optimal_lr_ratio"] = lora_fit.best_lr / full_fit.best_lr
        measured["ratio_at_edge"] = full_fit.at_edge or lora_fit.at_edge
    threshold = {"pass_within": v.TRACK_PASS, "fail_beyond": v.TRACK_FAIL,
                 "gap": "(LoRA - full) / full, final smoothed train loss"}
    lags = "above" if gap > 0 else "below"
    summary = f"LoRA at lr {lr:.3g} ends {abs(gap):.1%} {lags} full fine-tuning at lr {lr / FULL_LR_RATIO:.3g}"
    if verdict is v.Verdict.PASS:
        return CheckResult(id="lora-vs-full", verdict=verdict.value, summary=summary, measured=measured,
                           threshold=threshold, cause=None, fix=None)
    if gap > 0:
        cause, fix = ("LoRA lags full fine-tuning: capacity (rank too low for the data), layers left out, or the LR",
                      "apply LoRA to all linear layers (MLP included), raise the rank, and check lr-bracket")
    else:
        cause, fix = ("LoRA beats full fine-tuning at LR/10: the full fine-tuning LR is off, not the LoRA setup",
                      "compare with --lr-sweep to measure both optima")
    return CheckResult(id="lora-vs-full", verdict=verdict.value, summary=summary, measured=measured,
                       threshold=threshold, cause=cause, fix=fix)


def _health_check(base: TrialRecord) -> CheckResult:
    health = base["health"]
    status = health.get("status", "not-applicable")
    verdict = {"healthy": v.Verdict.PASS, "flat": v.Verdict.WARN}.get(status, v.Verdict.FAIL)
    if status == "not-applicable":
        verdict = v.Verdict.WARN
    from loraplan.train import health as h

    measured = {"status": status, "update_ratio": health.get("update_ratio"),
                "update_ratio_max": health.get("update_ratio_max"), "scale": health.get("scale"),
                "layers_sampled": len(health.get("layers", []))}
    threshold = {"explode_ratio": h.EXPLODE_RATIO, "explode_growth_per_check": h.EXPLODE_GROWTH,
                 "flat_ratio": h.FLAT_RATIO, "ratio": "||(alpha/r) B A||_F / ||W||_F"}
    ratio = health.get("update_ratio_max")
    summary = f"adapter update {status}" + (f" (largest ||sBA||/||W|| {ratio:.3g})" if ratio is not None else "")
    warnings = health.get("warnings") or []
    cause = warnings[0].split(" Fix: ")[0] if warnings else None
    fix = warnings[0].split(" Fix: ")[1] if warnings and " Fix: " in warnings[0] else None
    return CheckResult(id="adapter-health", verdict=verdict.value, summary=summary, measured=measured,
                       threshold=threshold, cause=cause, fix=fix)


def _final_loss(record: TrialRecord) -> float:
    if record["eval_loss"] is not None:
        return float(record["eval_loss"])
    smoothed = v.smooth(record["losses"])
    return smoothed[-1] if smoothed else math.nan


def _fit_json(fit: v.LrFit) -> dict[str, Any]:
    return {"best_lr": fit.best_lr, "at_edge": fit.at_edge, "curvature": fit.curvature,
            "points": [list(p) for p in fit.points]}


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None
