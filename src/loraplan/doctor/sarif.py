"""Findings as SARIF 2.1.0, the format GitHub code scanning (and most CI dashboards) upload.

One rule per finding id, one result per finding, located at the line of the config key involved
when it can be found. Levels map error -> error, warning -> warning, info -> note.
"""

from __future__ import annotations

from typing import Any

from loraplan import __version__
from loraplan.doctor.findings import Report, Severity
from loraplan.doctor.keys import key_for, line_of

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def to_sarif(report: Report, text: str = "", uri: str | None = None) -> dict[str, Any]:
    """The report as one SARIF log; `text` (the config) lets results point at lines."""
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for finding in report.findings:
        rules.setdefault(finding.id, {
            "id": finding.id,
            "name": "".join(part.capitalize() for part in finding.id.split("-")),
            "shortDescription": {"text": finding.title},
            "help": {"text": f"Fix: {finding.fix}\nSource: {finding.source}"},
            "defaultConfiguration": {"level": LEVELS[finding.severity]},
            "properties": {"check": finding.check, "source": finding.source},
        })
        location: dict[str, Any] = {"artifactLocation": {"uri": uri or report.path}}
        line = next((n for path in finding.fields
                     if (n := line_of(text, report.format, key_for(report.format, path))) is not None), None)
        if line is not None:
            location["region"] = {"startLine": line}
        results.append({
            "ruleId": finding.id,
            "ruleIndex": list(rules).index(finding.id),
            "level": LEVELS[finding.severity],
            "message": {"text": f"{finding.title}. {finding.evidence}. Fix: {finding.fix}."},
            "locations": [{"physicalLocation": location}],
            "properties": {"fix": finding.fix, "source": finding.source, "check": finding.check},
        })
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "loraplan", "version": __version__,
                                "informationUri": "https://thinkingmachines.ai/blog/lora/",
                                "rules": list(rules.values())}},
            "results": results,
            "properties": {"format": report.format, "model": report.model},
        }],
    }
