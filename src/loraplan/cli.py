"""The `loraplan` command. Each command parses, calls the library, renders; nothing else."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from loraplan.errors import LoraplanError

app = typer.Typer(
    name="loraplan",
    help="Plan, check and count LoRA fine-tuning runs by the rules of 'LoRA Without Regret'.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ModelArg = Annotated[str, typer.Argument(help="catalogue id, local folder, config.json path or hub id")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object and nothing else")]
CalibrationOpt = Annotated[
    str | None, typer.Option("--calibration", help="calibration TOML (default: $LORAPLAN_CALIBRATION)")
]
TrustOpt = Annotated[bool, typer.Option("--trust-remote-code", help="allow the model's own code (off by default)")]


# Command modules under loraplan.commands; each has register(app). Imported lazily at start.
COMMAND_MODULES = ["core", "plan", "tokens", "check", "calibrate", "train", "sweep"]


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"loraplan.commands.{name}").register(app)


def main() -> None:
    """Entry point: one clear line on stderr and a non-zero exit for anything the user can fix."""
    _register()
    try:
        app(standalone_mode=False)
    except LoraplanError as exc:
        from loraplan.output import err_console

        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        raise
