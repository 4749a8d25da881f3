"""loraplan check: read a trainer config, say what will go wrong and how to fix it.

Exit 0 when no finding is an error, 1 when one is, 2 when the config (or --model) cannot be read.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loraplan.cli import CalibrationOpt, JsonOpt, TrustOpt
from loraplan.output import console, emit_json

if TYPE_CHECKING:
    from loraplan.doctor import Report
    from loraplan.formats.detect import Detected


def register(app: typer.Typer) -> None:
    app.command("check")(check)


def check(
    config: Annotated[Path, typer.Argument(help="trainer config: adapter_config.json, TRL/Axolotl/LLaMA-Factory/"
                                                "torchtune YAML, Unsloth script or tinker command line")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="model to check against (default: the "
                                                                   "config's own base model)")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="peft | trl | axolotl | llamafactory | torchtune | "
                                                            "unsloth | tinker (default: detected)")] = None,
    data: Annotated[list[str] | None, typer.Option("--data", help="dataset file(s) to count trained tokens")] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="tokenizer folder or hub id")] = None,
    tokens: Annotated[int | None, typer.Option("--tokens", min=0, help="trained tokens, if already counted")] = None,
    examples: Annotated[int | None, typer.Option("--examples", min=0, help="examples, to derive steps")] = None,
    devices: Annotated[int | None, typer.Option("--devices", min=1, help="data-parallel GPUs (for the batch)")] = None,
    calibration: CalibrationOpt = None,
    trust_remote_code: TrustOpt = False,
    sarif: Annotated[bool, typer.Option("--sarif", help="print SARIF 2.1.0 (for code scanning) and nothing else")]
    = False,
    fix: Annotated[bool, typer.Option("--fix", help="write the corrected config in the same format")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="where --fix writes (default: stdout)")]
    = None,
    json_out: JsonOpt = False,
) -> None:
    """Check a LoRA training config against the rules: placement, LR, batch, capacity, alpha/rank.

    Examples:

    $ loraplan check examples/axolotl-attention-only.yaml
    $ loraplan check examples/axolotl-attention-only.yaml --tokens 2000000 --fix -o fixed.yaml
    """
    from loraplan.errors import LoraplanError

    try:
        _check(config, model, fmt, data, tokenizer, tokens, examples, devices, calibration, trust_remote_code,
               sarif, fix, output, json_out)
    except LoraplanError as exc:
        if not (json_out or sarif):
            raise  # cli.main prints the one line
        # --json promises one JSON object on stdout: on exit 2 it is the error itself
        emit_json({"error": {"type": type(exc).__name__, "message": str(exc), "exit_code": 2}})
        sys.exit(2)


def _check(config: Path, model: str | None, fmt: str | None, data: list[str] | None, tokenizer: str | None,
           tokens: int | None, examples: int | None, devices: int | None, calibration: str | None,
           trust_remote_code: bool, sarif: bool, fix: bool, output: Path | None, json_out: bool) -> None:
    from loraplan.doctor import check_config
    from loraplan.doctor.inputs import count_tokens
    from loraplan.errors import LoraplanError
    from loraplan.formats.detect import read_config
    from loraplan.rules.calibration import resolve_calibration

    if output is not None and not fix:
        raise LoraplanError("-o/--output is where --fix writes; add --fix")
    detected = read_config(config, fmt)
    notes: tuple[str, ...] = ()
    if data:
        if tokens is not None:
            raise LoraplanError("give either --data (to count) or --tokens (already counted), not both")
        counted = count_tokens(data, tokenizer, detected.setup.data.max_length)
        tokens, examples, notes = counted.tokens, examples if examples is not None else counted.examples, counted.notes
    report = check_config(detected, model, tokens=tokens, examples=examples, devices=devices,
                          calibration=resolve_calibration(calibration), trust_remote_code=trust_remote_code)
    if notes:
        from dataclasses import replace

        report = replace(report, notes=report.notes + notes)
    others = [*(data or ()), *filter(None, (model, tokenizer, calibration))]  # in-place --fix of CONFIG: a feature
    edits = _fix(detected, report, output, others) if fix else None
    if sarif:
        from loraplan.doctor.sarif import to_sarif

        emit_json(to_sarif(report, detected.text))
    elif json_out:
        payload = report.as_dict()
        if edits is not None:
            payload["fix"] = {"edits": edits, "output": str(output) if output else None}
        emit_json(payload)
    elif not (fix and output is None):
        from loraplan.doctor.render import render

        render(console, report, edits, str(output) if output else None)
    if report.exit_code:
        # sys.exit rather than typer.Exit: cli.main runs click with standalone_mode=False, where Exit becomes a
        # return value that main does not pass on.
        sys.exit(report.exit_code)


def _fix(detected: Detected, report: Report, output: Path | None, inputs: list[str]) -> list[str]:
    """Apply the errors' and warnings' fixes; write atomically to `output`, or print the file."""
    from loraplan.atomicwrite import write_atomic
    from loraplan.doctor.fix import corrected_setup, fixed_text
    from loraplan.doctor.inputs import model_order

    fixed = corrected_setup(detected.setup, report.findings)
    text, edits = fixed_text(detected.text, detected.format, detected.setup, fixed, model_order(report))
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_atomic(output, text, inputs)
    return [e.describe() for e in edits]
