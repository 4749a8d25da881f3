"""loraplan check: a config in, findings out (id, severity, evidence, fix, source).

    formats.detect.read_config -> TrainingSetup (+ format, text)
    doctor.context.CheckContext.build: trainer defaults, model, adaptation
    doctor.checks.run_checks -> Findings (and the checks that could not run)
    doctor.sarif / doctor.fix: SARIF for code scanning; the corrected config in the same format
"""

from __future__ import annotations

from loraplan.doctor.findings import Finding, Report, Severity, Skipped
from loraplan.doctor.run import check_config, check_setup

__all__ = ["Finding", "Report", "Severity", "Skipped", "check_config", "check_setup"]
