"""loraplan tokens: how many tokens a trainer would train on a data set (its loss mask applied)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from loraplan.cli import JsonOpt
from loraplan.output import console, emit_json, err_console, table

if TYPE_CHECKING:
    from loraplan.data import TokenCount

DataArg = Annotated[list[str], typer.Argument(help="files (.jsonl/.json/.parquet/.csv, .gz/.zst), folders, globs "
                                                   "or a hub data set")]
TokenizerOpt = Annotated[str | None, typer.Option("--tokenizer", "-t", help="tokenizer folder, tokenizer.json or "
                                                                             "hub id")]
TemplateOpt = Annotated[Path | None, typer.Option("--chat-template", help="Jinja file that overrides the template")]
FormatOpt = Annotated[str, typer.Option("--data-format", help="record layout of DATA: auto | messages | sharegpt | "
                                                              "prompt-completion | alpaca | text | preference")]
MaskOpt = Annotated[str, typer.Option("--mask", help="auto | assistant | last | all | completion")]
MaxLengthOpt = Annotated[int | None, typer.Option("--max-length", min=1, help="truncate like the trainer")]
SkipOpt = Annotated[bool, typer.Option("--skip-invalid", help="skip malformed records, count and report them")]
SampleOpt = Annotated[int | None, typer.Option("--sample", min=1, help="estimate from N random records (95% CI)")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", min=1, help="processes to count with (default: every "
                                                                         "core for files over 32 MiB, else 1)")]


def register(app: typer.Typer) -> None:
    app.command("tokens")(tokens)


def tokens(
    data: DataArg,
    tokenizer: TokenizerOpt = None,
    model: Annotated[str | None, typer.Option("--model", help="use this model's own tokenizer")] = None,
    chat_template: TemplateOpt = None,
    record_format: FormatOpt = "auto",
    mask: MaskOpt = "auto",
    max_length: MaxLengthOpt = None,
    split: Annotated[str, typer.Option("--split", help="split of a hub data set")] = "train",
    subset: Annotated[str | None, typer.Option("--subset", help="subset (config) of a hub data set")] = None,
    skip_invalid: SkipOpt = False,
    sample: SampleOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of --sample")] = 0,
    workers: WorkersOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Count examples, total and trained tokens of DATA under the trainer's loss mask.

    Examples:

    $ loraplan tokens examples/chat.jsonl --tokenizer examples/tokenizer
    $ loraplan tokens examples/chat.jsonl --tokenizer examples/tokenizer --mask last --max-length 1024 --json
    """
    result = count_data(data, tokenizer, model, chat_template, record_format, mask, max_length, skip_invalid,
                        sample, show_progress=not json_out, split=split, subset=subset, seed=seed, workers=workers)
    if json_out:
        emit_json(result.as_dict())
        return
    print_count(result, ", ".join(data))


def count_data(data: list[str], tokenizer: str | None, model: str | None, chat_template: Path | None,
               record_format: str, mask: str, max_length: int | None, skip_invalid: bool, sample: int | None,
               show_progress: bool, split: str = "train", subset: str | None = None, seed: int = 0,
               workers: int | None = None) -> TokenCount:
    """Parse the data options and count; the tokenizer defaults to the model's own when a model is named.

    workers: None lets count_trained_tokens decide (every core once the files are big enough to pay for it).
    """
    from loraplan.data import count_trained_tokens
    from loraplan.data.tokenizer import tokenizer_for_model

    tok = tokenizer or (tokenizer_for_model(model) if model else None)
    with ProgressBar(enabled=show_progress) as progress:
        return count_trained_tokens(
            data, tok, chat_template=chat_template, record_format=choice("RecordFormat", record_format, "--format"),
            mask=choice("MaskMode", mask, "--mask"), max_length=max_length, split=split, subset=subset,
            skip_invalid=skip_invalid, sample=sample, seed=seed, progress=progress, workers=workers)


def choice(enum_name: str, value: str, option: str) -> Any:
    """A StrEnum member of loraplan.data by value, or one clear error naming the option and its choices."""
    import loraplan.data as data_pkg
    from loraplan.errors import LoraplanError

    enum: type[StrEnum] = getattr(data_pkg, enum_name)
    try:
        return enum(value)
    except ValueError as exc:
        raise LoraplanError(f"{option} must be one of {' | '.join(m.value for m in enum)} (got {value!r})") from exc


class ProgressBar:
    """A Rich progress bar on stderr (bytes read, tokens/s, ETA) when stderr is a terminal; else a no-op."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("counting"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                  console=err_console, transient=True)
        self._progress.start()
        self._task = self._progress.add_task("count", total=None, rate="")
        return self._update

    def _update(self, done: int, total: int | None, tokens_so_far: int) -> None:
        elapsed = self._progress.tasks[0].elapsed or 0.0
        rate = f"{tokens_so_far / elapsed / 1e6:.2f} M tok/s" if elapsed > 0 else ""
        self._progress.update(self._task, completed=done, total=total, rate=rate)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def print_count(result: TokenCount, label: str) -> None:
    """The count as a table, with estimates labelled as such and skips explained."""
    share = f" ({100 * result.trained_tokens / result.total_tokens:.1f}% of all)" if result.total_tokens else ""
    rows: list[list[Any]] = [["examples", result.examples], ["total tokens", result.total_tokens],
                             ["trained tokens", f"{result.trained_tokens:,}{share}"]]
    rows += [[f"  {role}", n] for role, n in result.trained_by_role.items()]
    rows += [[f"  {side} side", f"{s.trained_tokens:,} trained of {s.total_tokens:,}"]
             for side, s in result.sides.items()]
    if result.max_length is not None:
        rows += [[f"truncated (> {result.max_length:,})", f"{result.truncated_examples:,} examples, "
                  f"{result.truncated_tokens:,} tokens cut, {result.truncated_trained_tokens:,} of them trained"]]
    rows += [["length p50 / p95 / max", f"{result.length_p50:,} / {result.length_p95:,} / {result.length_max:,}"]]
    if result.untrained_examples:
        rows += [["examples training nothing", result.untrained_examples]]
    if result.skipped:
        reasons = ", ".join(f"{k}: {v:,}" for k, v in result.skip_reasons.items())
        rows += [["skipped", f"{result.skipped:,} ({reasons})"]]
    title = f"{label}: format {result.format}, mask {result.mask}, tokenizer {result.tokenizer or 'none'}"
    console.print(table(title, ["", "count"], rows))
    for message in result.skip_examples:
        console.print(f"  skipped {escape(message)}", highlight=False)
    if result.method == "bytes":
        console.print(f"[bold yellow]ESTIMATE[/] from UTF-8 bytes (~{result.estimate_error:.0%} expected error), "
                      f"not a count ({result.note}): pass a --tokenizer that loads for exact numbers", highlight=False)
    elif result.ci is not None:
        lo, hi = result.ci.trained_tokens
        console.print(f"[bold yellow]ESTIMATE[/] from {result.ci.sample_size:,} of {result.ci.population:,} records: "
                      f"trained tokens {lo:,}-{hi:,} ({result.ci.level:.0%} interval)", highlight=False)
