"""The human report: findings grouped by severity, each with what was seen, the fix and the source."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from loraplan.doctor.findings import Report, Severity

STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "bold yellow", Severity.INFO: "bold cyan"}
HEADING = {Severity.ERROR: "Errors", Severity.WARNING: "Warnings", Severity.INFO: "Info"}


def render(console: Console, report: Report, edits: list[str] | None = None, written: str | None = None) -> None:
    console.print(f"[bold]{escape(report.path)}[/]: {report.format} config; model {escape(report.model_note)}",
                  highlight=False)
    for severity in Severity:
        findings = report.of(severity)
        if not findings:
            continue
        console.print(f"\n[{STYLE[severity]}]{HEADING[severity]} ({len(findings)})[/]")
        for f in findings:
            console.print(f"  [{STYLE[severity]}]{f.id}[/] (check {f.check}): {escape(f.title)}", highlight=False)
            console.print(f"    [dim]seen[/]    {escape(f.evidence)}", highlight=False)
            console.print(f"    [dim]fix[/]     {escape(f.fix)}", highlight=False)
            console.print(f"    [dim]source[/]  {escape(f.source)}", highlight=False)
    if report.skipped:
        console.print("\n[dim]Not checked[/]")
        for s in report.skipped:
            console.print(f"  [dim]{escape(s.what)} (check {s.check}): {escape(s.reason)}[/]", highlight=False)
    if report.assumed:
        shown = "; ".join(f"{a.key} = {a.value}" for a in report.assumed)
        sources = "; ".join(dict.fromkeys(a.source for a in report.assumed))
        console.print(f"\n[dim]Trainer defaults used (not in the file): {escape(shown)} ({escape(sources)})[/]",
                      highlight=False)
    for note in report.notes:
        console.print(f"[dim]note: {escape(note)}[/]", highlight=False)
    if edits is not None:
        console.print(f"\n[green]--fix[/] {len(edits)} change(s)" + (f", written to {escape(written)}" if written
                                                                      else "") + ":", highlight=False)
        for edit in edits:
            console.print(f"  {escape(edit)}", highlight=False)
    counts = ", ".join(_count(len(report.of(s)), s) for s in Severity)
    verdict = "[bold red]fails[/]" if report.exit_code else "[bold green]passes[/]"
    console.print(f"\n{verdict}: {counts}", highlight=False)


def _count(n: int, severity: Severity) -> str:
    plural = "s" if n != 1 and severity is not Severity.INFO else ""
    return f"{n} {severity.value}{plural}"
