"""What a check returns: findings (id, severity, evidence, fix, source) and the checks it could not run.

A finding speaks the user's language: `evidence` names the config's own keys and the values seen
(and, with a model, the computed numbers); `fix` says the value to use; `changes` holds the same
fix as TrainingSetup paths so `--fix` can write it. `source` cites the rule, always.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"  # the run will underperform or fail: exit 1
    WARNING = "warning"  # likely to cost quality; worth changing
    INFO = "info"  # worth knowing; no change needed

    @property
    def order(self) -> int:
        return {"error": 0, "warning": 1, "info": 2}[self.value]


@dataclass(frozen=True)
class Finding:
    """One problem found in a config.

    id: stable slug (also the SARIF rule id), e.g. `attention-only`.
    check: the number of the check in the README's list, for traceability.
    title: one line: what will go wrong.
    evidence: the values seen (in the config's own key names) and the numbers computed from them.
    fix: what to set, in the config's own key names.
    source: the rule's source (a seed document, a trainer's code, a paper).
    fields: TrainingSetup paths involved, used to point at lines of the file.
    changes: TrainingSetup path -> corrected value; `--fix` writes these for errors and warnings.
    """

    id: str
    check: int
    severity: Severity
    title: str
    evidence: str
    fix: str
    source: str
    fields: tuple[str, ...] = ()
    changes: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "check": self.check, "severity": self.severity.value, "title": self.title,
                "evidence": self.evidence, "fix": self.fix, "source": self.source, "fields": list(self.fields),
                "changes": {k: _plain(v) for k, v in self.changes.items()}}


@dataclass(frozen=True)
class Skipped:
    """A check that could not run, and what it would need (never a guess)."""

    check: int
    what: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "what": self.what, "reason": self.reason}


@dataclass(frozen=True)
class Assumed:
    """A value the config does not state but the trainer uses (its default), shown as evidence."""

    path: str
    key: str
    value: Any
    source: str


@dataclass(frozen=True)
class Report:
    """Everything `check` found about one config."""

    path: str
    format: str
    model: str | None
    model_note: str
    findings: tuple[Finding, ...]
    skipped: tuple[Skipped, ...] = ()
    assumed: tuple[Assumed, ...] = ()
    notes: tuple[str, ...] = ()

    def of(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity is severity]

    @property
    def exit_code(self) -> int:
        """0 when no finding is an error, 1 otherwise (2, unreadable, never reaches a report)."""
        return 1 if self.of(Severity.ERROR) else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "format": self.format, "model": self.model, "model_note": self.model_note,
            "summary": {s.value: len(self.of(s)) for s in Severity},
            "exit_code": self.exit_code,
            "findings": [f.as_dict() for f in self.findings],
            "not_checked": [s.as_dict() for s in self.skipped],
            "notes": list(self.notes),
            "assumed_defaults": [{"path": a.path, "key": a.key, "value": _plain(a.value), "source": a.source}
                                 for a in self.assumed],
        }


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, StrEnum):
        return value.value
    return value
