"""loraplan plan: model + data -> an explained setup, written in the trainer's own format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from loraplan.cli import CalibrationOpt, JsonOpt, ModelArg, TrustOpt
from loraplan.output import console, emit_json


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)


def plan(
    model: ModelArg,
    data: Annotated[list[str] | None, typer.Option("--data", help="dataset file(s), folder or glob to count")] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="tokenizer folder or hub id")] = None,
    tokens: Annotated[int | None, typer.Option("--tokens", min=0, help="trained tokens, if already counted")] = None,
    examples: Annotated[int | None, typer.Option("--examples", min=0, help="number of examples")] = None,
    total_tokens: Annotated[int | None, typer.Option("--total-tokens", min=0, help="all tokens, for compute")] = None,
    task: Annotated[str, typer.Option("--task", help="sft | rl | dpo | distill")] = "sft",
    rank: Annotated[int | None, typer.Option("--rank", "-r", min=1, help="LoRA rank (default: from capacity)")] = None,
    max_rank: Annotated[int, typer.Option("--max-rank", min=1, help="past this rank, recommend full "
                                          "fine-tuning")] = 256,
    lr: Annotated[float | None, typer.Option("--lr", min=0.0, help="peak learning rate (default: the "
                                             "calibrated rule)")] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", min=0.0, help="LoRA alpha (default 32)")] = None,
    rslora: Annotated[bool, typer.Option("--rslora", help="scale by alpha/sqrt(r)")] = False,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="effective batch: sequences per "
                                                   "optimizer step over all devices (micro x accumulation x "
                                                   "devices; default 64, fewer for small data)")] = None,
    micro_batch_size: Annotated[int, typer.Option("--micro-batch-size", min=1, help="sequences per device per "
                                                  "forward pass")] = 4,
    devices: Annotated[int, typer.Option("--devices", min=1, help="data-parallel GPUs")] = 1,
    epochs: Annotated[float | None, typer.Option("--epochs", min=0.0, help="passes over the data (default 1, "
                                                 "up to 3 for small data)")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1, help="optimizer steps (default: from "
                                                  "examples, epochs and batch)")] = None,
    schedule: Annotated[str | None, typer.Option("--schedule", help="linear | cosine")] = None,
    seq_len: Annotated[int, typer.Option("--seq-len", min=1, help="max sequence length")] = 2048,
    gpu: Annotated[str, typer.Option("--gpu", help="h100 | h200 | a100 | l40s | ...")] = "h100",
    convention: Annotated[str, typer.Option("--convention", help="tinker | peft | per-expert")] = "tinker",
    targets: Annotated[str, typer.Option("--targets", help="all | attn | mlp | experts | dense-mlp, comma-joined, "
                                         "or module names")] = "all",
    unembed: Annotated[bool, typer.Option("--unembed/--no-unembed", help="adapt the unembedding (lm_head)")] = True,
    transfer_from: Annotated[str | None, typer.Option("--transfer-from", help="model with a known-good LR")] = None,
    transfer_lr: Annotated[float | None, typer.Option("--transfer-lr", min=0.0, help="that model's LR (with "
                                                      "--transfer-from)")] = None,
    teacher: Annotated[str | None, typer.Option("--teacher", help="distillation teacher")] = None,
    short_run: Annotated[bool, typer.Option("--short-run", help="~15x LoRA/full-FT ratio (< 100 steps)")] = False,
    capacity_rule: Annotated[str, typer.Option("--capacity-rule", help="params | bits")] = "params",
    calibration: CalibrationOpt = None,
    trust_remote_code: TrustOpt = False,
    explain: Annotated[bool, typer.Option("--explain", help="show the rule and source of every number")] = False,
    fmt: Annotated[str | None, typer.Option("--format", help="peft | peft-python | trl | axolotl | llamafactory "
                                                             "| torchtune | unsloth | tinker")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the export here (atomically)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """A complete, explained LoRA setup for MODEL and DATA, optionally written for your trainer.

    Examples:

    $ loraplan plan meta-llama/Llama-3.1-8B --data examples/chat.jsonl --tokenizer examples/tokenizer --explain
    $ loraplan plan Qwen/Qwen3-30B-A3B --tokens 20000000 --examples 40000 --format trl -o sft.yaml
    """
    from loraplan.arch.conventions import Convention
    from loraplan.arch.sources import load_architecture
    from loraplan.commands import plan_render
    from loraplan.commands.choices import choose
    from loraplan.errors import LoraplanError
    from loraplan.formats import EXPORT_FORMATS
    from loraplan.plan import DataFacts, PlanRequest, make_plan
    from loraplan.rules.calibration import resolve_calibration
    from loraplan.rules.capacity import CapacityRule
    from loraplan.setup import Method, Schedule

    if fmt is not None:
        choose(fmt, EXPORT_FORMATS, "--format")
    method = _choice(Method, task, "--task")
    chosen_schedule = _choice(Schedule, schedule, "--schedule") if schedule else (
        Schedule.COSINE if fmt == "torchtune" else Schedule.LINEAR)
    arch = load_architecture(model, trust_remote_code)
    facts = DataFacts(trained_tokens=tokens, examples=examples, total_tokens=total_tokens)
    if data:
        if tokens is not None:
            raise LoraplanError("give either --data (to count) or --tokens (already counted), not both")
        facts = plan_render.count_data(data, tokenizer, model, seq_len)
    request = PlanRequest(
        method=method, data=facts, convention=_choice(Convention, convention, "--convention"), targets=targets,
        unembed=unembed, rank=rank, max_rank=max_rank, alpha=alpha, rslora=rslora, lr=lr,
        transfer_from=load_architecture(transfer_from) if transfer_from else None, transfer_lr=transfer_lr,
        batch_size=batch_size, micro_batch_size=micro_batch_size, num_devices=devices, epochs=epochs,
        max_steps=max_steps, schedule=chosen_schedule, seq_len=seq_len, gpu=gpu.lower(),
        calibration=resolve_calibration(calibration), capacity_rule=_choice(CapacityRule, capacity_rule,
                                                                            "--capacity-rule"),
        short_run=short_run, teacher=teacher,
    )
    result = make_plan(arch, request)
    export = plan_render.export_text(result.setup, fmt, arch) if fmt else None
    if output is not None:
        if export is None:
            raise LoraplanError("-o needs --format (which trainer's config to write)")
        plan_render.write_export(output, export, [model, *(data or ()), *filter(None, (tokenizer, calibration))])
    if json_out:
        emit_json(plan_render.as_json(result, fmt, output))
        return
    if export is not None and output is None:
        typer.echo(export, nl=False)
        return
    plan_render.render(console, arch, result, explain)
    if output is not None:
        console.print(f"[green]wrote[/] {escape(str(output))} ({fmt})")


def _choice(enum: type, value: str, option: str):  # returns a member of `enum`
    from loraplan.commands.choices import choose_enum

    return choose_enum(enum, value, option)
