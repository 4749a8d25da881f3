"""loraplan run and loraplan validate: short training runs on the user's own model and data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loraplan.cli import JsonOpt
from loraplan.commands.train_inputs import (
    AlphaOpt,
    BatchOpt,
    DataOpt,
    DeviceOpt,
    EvalOpt,
    HiddenOpt,
    LayersOpt,
    LrOpt,
    MaskOpt,
    ModelOpt,
    RandomOpt,
    RankOpt,
    SeedOpt,
    SeqLenOpt,
    StepsOpt,
    TargetArg,
    TokenizerOpt,
    resolve,
)
from loraplan.output import console, emit_json, err_console

if TYPE_CHECKING:
    from loraplan.train.engine import TrialRecord, TrialSpec


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("validate")(validate)


def run(
    target: TargetArg,
    data: DataOpt = None,  # type: ignore[assignment]  # required; checked with a one-line message
    model: ModelOpt = None,
    tokenizer: TokenizerOpt = None,
    rank: RankOpt = None,
    alpha: AlphaOpt = None,
    full_finetune: Annotated[bool, typer.Option("--full-finetune", help="train every weight (no LoRA)")] = False,
    lr: LrOpt = None,
    steps: StepsOpt = 50,
    batch_size: BatchOpt = None,
    seq_len: SeqLenOpt = None,
    eval_fraction: EvalOpt = 0.1,
    mask: MaskOpt = None,
    random_init: RandomOpt = False,
    layers: LayersOpt = None,
    hidden: HiddenOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    run_dir: Annotated[Path | None, typer.Option("--output", "-o", help="folder to write trial.json into")] = None,
    json_out: JsonOpt = False,
) -> None:
    """One short training run: loss per step, held-out loss, tokens/s, adapter health.

    Examples:

    $ loraplan run meta-llama/Llama-3.2-1B --random-init --layers 2 --hidden 64 --data examples/chat.jsonl --tokenizer examples/tokenizer --steps 5 --batch-size 4 --seq-len 128
    $ loraplan run examples/axolotl-attention-only.yaml --random-init --layers 2 --hidden 64 --data examples/chat.jsonl --tokenizer examples/tokenizer --steps 3 --batch-size 2 --seq-len 64 --json
    """
    from dataclasses import replace

    from loraplan.errors import LoraplanError
    from loraplan.train.engine import TrialSpec

    if full_finetune and (rank is not None or alpha is not None):
        raise LoraplanError("--full-finetune trains every weight; --rank/--alpha are LoRA options")
    from loraplan.train.engine import default_setup

    spec = TrialSpec(setup=default_setup(), model=target, data=tuple(data or ()), tokenizer=tokenizer, steps=steps,
                     lr=lr, rank=rank, alpha=alpha, full_finetune=full_finetune, batch_size=batch_size,
                     seq_len=seq_len, eval_fraction=eval_fraction, mask=mask, seed=seed, device=device)
    spec.validate()  # the numbers first: no model is loaded for a typo
    inputs = resolve(target, model, data, tokenizer, random_init, layers, hidden, seq_len)
    spec = replace(spec, setup=inputs.setup, model=inputs.model)
    record = run_with_progress(spec, quiet=json_out)
    if run_dir is not None:
        write_record(run_dir, record)
    if json_out:
        emit_json(dict(record))
        return
    render_record(record, inputs.source, run_dir)


def validate(
    target: TargetArg,
    data: DataOpt = None,  # type: ignore[assignment]  # required; checked with a one-line message
    model: ModelOpt = None,
    tokenizer: TokenizerOpt = None,
    steps: StepsOpt = 30,
    checks: Annotated[str, typer.Option("--checks", help="comma list of rank, lr, full, health (full is "
                                                        "opt-in: it costs full fine-tuning runs)")]
    = "rank,lr,health",
    alpha_rule: Annotated[str, typer.Option("--alpha-rule", help="rank check: fixed (keep alpha) | follows-rank "
                                                                 "(keep alpha/r)")] = "fixed",
    lr_sweep: Annotated[bool, typer.Option("--lr-sweep", help="with full: measure the LoRA/full optimal-LR "
                                                              "ratio")] = False,
    rank: RankOpt = None,
    alpha: AlphaOpt = None,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    seq_len: SeqLenOpt = None,
    eval_fraction: EvalOpt = 0.1,
    mask: MaskOpt = None,
    random_init: RandomOpt = False,
    layers: LayersOpt = None,
    hidden: HiddenOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    report: Annotated[Path | None, typer.Option("--report", help="write a self-contained HTML report here")] = None,
    json_out: JsonOpt = False,
) -> None:
    """The doctrine's short-run checks on your setup: rank invariance, LR bracket, LoRA vs full, adapter health.

    Exit 0 when every check passes (warnings included), 1 when one fails, 2 when the input cannot be used.

    Examples:

    $ loraplan validate meta-llama/Llama-3.2-1B --random-init --layers 2 --hidden 64 --data examples/chat.jsonl --tokenizer examples/tokenizer --steps 6 --batch-size 4 --seq-len 96 --checks health
    $ loraplan validate meta-llama/Llama-3.2-1B --random-init --layers 2 --hidden 64 --data examples/chat.jsonl --tokenizer examples/tokenizer --steps 6 --batch-size 4 --seq-len 96 --checks health --report report.html
    """
    import shlex
    import sys
    from dataclasses import replace

    from loraplan.commands.plan import _choice
    from loraplan.train.engine import TrialSpec, default_setup
    from loraplan.train.validate import AlphaRule, parse_checks
    from loraplan.train.validate import validate as run_checks

    chosen = parse_checks(checks)
    rule = _choice(AlphaRule, alpha_rule, "--alpha-rule")
    spec = TrialSpec(setup=default_setup(), model=target, data=tuple(data or ()), tokenizer=tokenizer, steps=steps,
                     lr=lr, rank=rank, alpha=alpha, batch_size=batch_size, seq_len=seq_len,
                     eval_fraction=eval_fraction, mask=mask, seed=seed, device=device)
    spec.validate()
    inputs = resolve(target, model, data, tokenizer, random_init, layers, hidden, seq_len)
    spec = replace(spec, setup=inputs.setup, model=inputs.model)
    if report is not None and report.is_dir():
        from loraplan.errors import LoraplanError

        raise LoraplanError(f"--report {report}: is a folder; name the HTML file to write")

    def runner(label: str, trial: TrialSpec) -> Any:
        return run_with_progress(trial, quiet=json_out, label=label)

    result = run_checks(spec, chosen, rule, lr_sweep, runner)
    if report is not None:
        from loraplan.train.report import write_report

        write_report(report, result, inputs.model.describe(), "loraplan " + shlex.join(sys.argv[1:]))
    if json_out:
        emit_json({**result, "trials": [{**t, "record": _slim(t["record"])} for t in result["trials"]]})
    else:
        render_validation(result, inputs.source, report)
    if result["exit_code"]:
        sys.exit(result["exit_code"])


def _slim(record: Any) -> dict[str, Any]:
    """A trial in validate's JSON: the measurements, not the setup and spec repeated for every trial."""
    return {k: v for k, v in record.items() if k not in ("setup", "spec", "versions")}


def render_validation(result: Any, source: str, report: Path | None) -> None:
    from rich.table import Table

    colours = {"pass": "green", "warn": "yellow", "fail": "red"}
    table = Table(show_lines=True)
    for column in ("check", "verdict", "measured", "cause / fix"):
        table.add_column(column, overflow="fold")
    for check in result["checks"]:
        verdict = check["verdict"]
        advice = "\n".join(x for x in (check["cause"], f"fix: {check['fix']}" if check["fix"] else None) if x)
        table.add_row(check["id"], f"[{colours[verdict]}]{verdict}[/]", check["summary"], advice or "-")
    console.print(f"validate ({source}): {len(result['trials'])} trials in {result['seconds']:.0f} s",
                  highlight=False)
    console.print(table)
    if report is not None:
        console.print(f"[green]wrote[/] {report}")


def run_with_progress(spec: TrialSpec, quiet: bool = False, label: str = "training") -> TrialRecord:
    """run_trial with a Rich progress bar on stderr (loss, tokens/s, ETA); none when `quiet`."""
    from dataclasses import replace

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from loraplan.train.engine import run_trial

    if quiet or not err_console.is_terminal:
        return run_trial(spec)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} tok/s"),
                        TimeRemainingColumn(), console=err_console, transient=True)
    task = progress.add_task(f"{label} (loading)", total=spec.steps, loss="-", speed="-")

    def on_step(report: Any) -> None:
        fields: dict[str, Any] = {"description": label}
        if report["loss"] is not None:
            fields["loss"] = f"{report['loss']:.3f}"
        if report["tokens_per_s"]:
            fields["speed"] = f"{report['tokens_per_s']:,.0f}"
        progress.update(task, completed=report["step"], **fields)

    with progress:
        return run_trial(replace(spec, on_step=on_step))


def write_record(run_dir: Path, record: TrialRecord) -> None:
    import json

    from loraplan.errors import LoraplanError
    from loraplan.formats import write_atomic

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run_dir / "trial.json", json.dumps(record, indent=2, default=str) + "\n")
    except OSError as exc:
        raise LoraplanError(f"{run_dir}: cannot write the trial record ({exc.strerror})") from exc


def render_record(record: TrialRecord, source: str, run_dir: Path | None) -> None:
    from loraplan.output import table

    setup = record["setup"]
    lora = setup["lora"]
    what = "full fine-tuning" if setup["finetuning"] == "full" else f"LoRA rank {lora['rank']}, alpha {lora['alpha']:g}"
    console.print(f"[bold]{setup['model']}[/]: {what}, lr {setup['optim']['learning_rate']:.3g}, "
                  f"{len(record['losses'])} steps of {setup['optim']['micro_batch_size']} x <= "
                  f"{setup['data']['max_length']} tokens ({source})", highlight=False)
    losses = record["losses"]
    curve = record["eval_curve"]
    rows = [["train loss (first -> last step)", f"{losses[0]:.4f} -> {losses[-1]:.4f}" if losses else "-"],
            ["held-out loss (before -> after)", f"{curve[0][1]:.4f} -> {curve[-1][1]:.4f}" if curve else "none"],
            ["trained tokens (label tokens with loss)", record["trained_tokens"]],
            ["tokens/s", f"{record['tokens_per_s']:,.0f}"],
            ["train time", f"{record['train_seconds']:.1f} s"],
            ["peak memory", f"{record['peak_memory_bytes'] / 2**20:,.0f} MiB ({record['peak_memory_kind']})"],
            ["trainable / total params", f"{record['trainable_params']:,} / {record['total_params']:,}"],
            ["adapter health", record["health"]["status"]]]
    console.print(table("Trial", ["measure", "value"], rows))
    for warning in record["health"]["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if run_dir is not None:
        console.print(f"[green]wrote[/] {run_dir / 'trial.json'}")
