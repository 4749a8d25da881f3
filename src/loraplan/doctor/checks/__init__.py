"""The checks, in the order of the README's list of checks; each is a pure function CheckContext -> findings."""

from __future__ import annotations

from collections.abc import Callable

from loraplan.doctor.checks.adapter import check_adapter
from loraplan.doctor.checks.batch import check_batch, check_steps
from loraplan.doctor.checks.capacity import check_capacity
from loraplan.doctor.checks.learning_rate import check_learning_rate
from loraplan.doctor.checks.placement import check_placement
from loraplan.doctor.checks.startup import check_startup
from loraplan.doctor.context import CheckContext
from loraplan.doctor.findings import Finding, Skipped

Check = Callable[[CheckContext], list[Finding | Skipped] | list[Finding]]
CHECKS: tuple[Check, ...] = (check_placement, check_learning_rate, check_batch, check_capacity, check_adapter,
                             check_steps, check_startup)


def run_checks(ctx: CheckContext) -> tuple[list[Finding], list[Skipped]]:
    """Every check on one context: findings sorted by severity, then check number."""
    findings: list[Finding] = []
    skipped: list[Skipped] = []
    for check in CHECKS:
        for item in check(ctx):
            (findings if isinstance(item, Finding) else skipped).append(item)
    findings.sort(key=lambda f: (f.severity.order, f.check))
    skipped.sort(key=lambda s: s.check)
    return findings, skipped
