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
COMMAND_MODULES = ["core", "plan", "tokens", "check", "calibrate"]


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f"loraplan.commands.{name}").register(app)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"loraplan {version('loraplan')}")
        except PackageNotFoundError:  # a source checkout that was never installed
            typer.echo("loraplan (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="print the version and exit")] = False,
) -> None:
    """Plan, check and count LoRA fine-tuning runs by the rules of 'LoRA Without Regret'."""


def _click_exception_types() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(usage errors, exits, aborts) of every click that may raise. typer >= 0.29 vendors its own click as
    `typer._click` (usage errors) with Exit/Abort in `typer`; a standalone `click` raises its own classes.
    Catching only one of them let the other's usage errors through as tracebacks."""
    import importlib

    errors: list[type] = []
    exits: list[type] = [typer.Exit]
    aborts: list[type] = [typer.Abort]
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        errors.append(module.ClickException)
        exits.append(getattr(module, "Exit", typer.Exit))
        aborts.append(getattr(module, "Abort", typer.Abort))
    return tuple(errors), tuple(exits), tuple(aborts)


def _usage_line(exc: Exception) -> str:
    """One line for a usage error: the message, and where help is."""
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None and getattr(exc, "cmd", True) else ""
    return f"{message}{where}"


def _model_hint(exc: LoraplanError) -> str:
    """"; did you mean ..." for a model reference that resolved to nothing and is close to a catalogue id."""
    from loraplan.errors import ModelNotFoundError

    if not isinstance(exc, ModelNotFoundError):
        return ""
    from loraplan.commands.choices import model_suggestions

    message = str(exc)
    for token in sys.argv[1:]:
        if not token.startswith("-") and f"{token}" in message and (close := model_suggestions(token)):
            return f"; did you mean {' or '.join(close)}?"
    return ""


def main() -> None:
    """Entry point: one clear line on stderr and exit 2 for anything the user can fix; never a traceback."""
    _register()
    click_errors, click_exits, click_aborts = _click_exception_types()
    try:
        app(standalone_mode=False)
    except LoraplanError as exc:
        from rich.text import Text

        from loraplan.output import err_console

        # the message carries user text (paths, model ids): printed as text, never parsed as Rich markup, and
        # on one line (a parser's message may span several)
        message = " ".join(f"{exc}{_model_hint(exc)}".split())
        err_console.print(Text.assemble(("error:", "bold red"), f" {message}"), highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except click_exits as exc:
        sys.exit(exc.exit_code)
    except click_aborts:
        sys.exit(130)
    except click_errors as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `loraplan` or a command without its arguments
            exc.show()
            sys.exit(2)
        from rich.markup import escape

        from loraplan.output import err_console

        err_console.print(f"[bold red]error:[/] {escape(_usage_line(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code if exc.exit_code else 2)
