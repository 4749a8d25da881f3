"""models, lr, params, capacity: the core budget and rules."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from loraplan.cli import CalibrationOpt, JsonOpt, ModelArg, TrustOpt
from loraplan.output import console, emit_json, table
from loraplan.rules.batch import MIN_SCALED_BATCH, REFERENCE_BATCH, batch_lr_factor
from loraplan.rules.numbers import fmt_number


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("lr")(lr)
    app.command("params")(params)
    app.command("capacity")(capacity)


def models(json_out: JsonOpt = False) -> None:
    """List the bundled catalogue of real model configs.

    Examples:

    $ loraplan models
    $ loraplan models --json
    """
    from loraplan.arch.sources import catalog, load_architecture

    rows = []
    for entry in catalog().values():
        arch = load_architecture(entry.model_id)
        rows.append({
            "model": entry.model_id, "family": arch.family, "model_type": arch.model_type,
            "hidden_size": arch.hidden_size, "layers": arch.num_layers, "total_params": arch.total_params,
            "active_params": arch.active_params, "experts": arch.num_experts, "attention": arch.attention_type,
        })
    if json_out:
        emit_json({"models": rows})
        return
    console.print(table("Bundled catalogue (real config.json files)",
                        ["model", "family", "hidden", "layers", "params", "active", "experts"],
                        [[r["model"], r["family"], r["hidden_size"], r["layers"], _billions(r["total_params"]),
                          _billions(r["active_params"]), r["experts"] or "-"] for r in rows],
                        drop_first=("family", "layers", "hidden", "experts")))


def _billions(n: int) -> str:
    return f"{n / 1e9:.2f}B"


def lr(
    model: ModelArg,
    full_finetune: Annotated[bool, typer.Option("--full-finetune", help="LR for full fine-tuning")] = False,
    short_run: Annotated[bool, typer.Option("--short-run", help="use the ~15x ratio for runs under 100 steps")] = False,
    calibration: CalibrationOpt = None,
    rule: Annotated[str, typer.Option("--rule", help="calibrated (default: fitted on tinker-cookbook's sweep) | "
                                      "tinker (the published formula)")] = "calibrated",
    transfer_from: Annotated[str | None, typer.Option("--transfer-from", help="a model whose good LR you know")] = None,
    transfer_lr_value: Annotated[float | None, typer.Option("--transfer-lr", min=0.0,
                                                            help="that model's LR (with --transfer-from)")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="effective batch (sequences per optimizer "
                                            "step, all devices); the rules were fitted at 128")] = REFERENCE_BATCH,
    trust_remote_code: TrustOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Recommended peak learning rate for MODEL at --batch-size (default 128, the batch the rules were fitted at).

    Examples:

    $ loraplan lr meta-llama/Llama-3.1-8B
    $ loraplan lr Qwen/Qwen3-8B --batch-size 64 --json
    """
    from loraplan.calibrate.features import model_facts
    from loraplan.errors import LoraplanError, UncalibratedFamilyError
    from loraplan.rules.calibration import ModelTraits, published_calibration, resolve_calibration
    from loraplan.rules.lr import TRANSFER_SOURCE, recommend_lr, transfer_lr

    if rule not in ("calibrated", "tinker"):
        raise LoraplanError(f"--rule must be calibrated or tinker (got {rule!r})")
    if (transfer_from is None) != (transfer_lr_value is None):
        raise LoraplanError("--transfer-from MODEL and --transfer-lr LR go together")
    if rule == "tinker" and calibration:
        raise LoraplanError("--rule tinker is the published formula; it takes no --calibration")
    facts = model_facts(model, trust_remote_code)
    if transfer_from is not None and transfer_lr_value is not None:
        source = model_facts(transfer_from, trust_remote_code)
        value = transfer_lr(transfer_lr_value, source.total_params, facts.total_params)
        payload = {
            "model": facts.model_id, "lr": value, "is_lora": not full_finetune, "family": facts.family,
            "rule": f"transfer: {transfer_lr_value:g} x sqrt({source.total_params:,} / {facts.total_params:,})",
            "answered_by": f"transferred from {source.model_id}", "source": TRANSFER_SOURCE,
            "transfer_from": source.model_id, "transfer_lr": transfer_lr_value, "facts_source": facts.source,
        }
        if json_out:
            emit_json(payload)
            return
        console.print(f"[bold]{escape(facts.model_id)}[/]: LR [bold green]{fmt_number(value)}[/]", highlight=False)
        console.print(f"  {escape(str(payload['rule']))} (LR_B = LR_A * sqrt(params_A / params_B)); "
                      f"source: {TRANSFER_SOURCE}", highlight=False)
        return
    cal = published_calibration() if rule == "tinker" else resolve_calibration(calibration)
    traits = ModelTraits.of(facts)
    try:
        advice = recommend_lr(facts.family, facts.hidden_size, not full_finetune, cal, short_run, facts.total_params,
                              facts.model_id, traits)
    except UncalibratedFamilyError as exc:
        if rule != "tinker":
            raise
        covered = ", ".join(sorted(cal.rules))
        raise UncalibratedFamilyError(
            f"the published formula covers {covered} only, not `{facts.family}` ({facts.model_id}); use "
            "--rule calibrated (the default: fitted on tinker-cookbook's sweep, labelled extrapolated for a family it "
            "has no data on), --calibration FILE, or "
            "--transfer-from MODEL --transfer-lr LR") from exc
    factor = batch_lr_factor(batch_size)
    value = advice.lr * factor
    scaled = f" x sqrt({max(batch_size, MIN_SCALED_BATCH)}/{REFERENCE_BATCH}) = {factor:.3f}" if factor != 1.0 else ""
    payload = {
        "model": facts.model_id, "lr": value, "batch_size": batch_size, "lr_at_reference_batch": advice.lr,
        "reference_batch": REFERENCE_BATCH, "batch_factor": factor, "extrapolated": advice.extrapolated,
        "lr_full_ft": advice.lr_full_ft,
        "lora_over_full_ft": advice.lora_over_full_ft, "is_lora": advice.is_lora, "family": advice.family,
        "hidden_size": advice.hidden_size, "rule": advice.rule, "answered_by": advice.answered_by,
        "source": advice.source, "calibration": str(cal.path) if cal.path else cal.source,
        "facts_source": facts.source, "facts_only": facts.facts_only,
    }
    if json_out:
        emit_json(payload)
        return
    console.print(f"[bold]{escape(facts.model_id)}[/]: {'LoRA' if advice.is_lora else 'full fine-tuning'} "
                  f"LR [bold green]{fmt_number(value)}[/] at batch {batch_size}", highlight=False)
    console.print(f"  {escape(advice.explain())}", highlight=False)
    if scaled:
        console.print(f"  batch {batch_size}: {fmt_number(advice.lr)}{scaled} (LR scales with sqrt(batch) "
                      f"within 32-128; the rule was fitted at batch {REFERENCE_BATCH})", highlight=False)
    console.print(f"  model facts: {escape(facts.source)}", highlight=False)


TargetsOpt = Annotated[
    str, typer.Option("--targets", help="all | attn | mlp | experts | dense-mlp, comma-joined, or module names")
]


def params(
    model: ModelArg,
    rank: Annotated[int, typer.Option("--rank", "-r", min=1, help="LoRA rank")] = 32,
    convention: Annotated[str, typer.Option("--convention", help="tinker | peft | per-expert")] = "tinker",
    targets: TargetsOpt = "all",
    unembed: Annotated[bool, typer.Option("--unembed/--no-unembed", help="adapt the unembedding (lm_head)")] = True,
    trust_remote_code: TrustOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Exact LoRA parameter counts for MODEL, per rank and at --rank.

    Examples:

    $ loraplan params Qwen/Qwen3-30B-A3B --rank 8
    $ loraplan params meta-llama/Llama-3.1-8B --targets attn
    """
    from loraplan.arch.conventions import Convention, budget
    from loraplan.arch.sources import load_architecture
    from loraplan.errors import LoraplanError

    try:
        conv = Convention(convention)
    except ValueError as exc:
        raise LoraplanError(f"--convention must be one of tinker, peft, per-expert (got {convention!r})") from exc
    arch = load_architecture(model, trust_remote_code)
    result = budget(arch, conv, targets, unembed)
    per_rank = result.as_dict()
    total = result.params(rank)
    payload = {
        "model": arch.model_id, "convention": conv.value, "rank": rank, "per_rank": per_rank,
        "per_rank_total": result.per_rank_total, "total": total, "model_params": arch.total_params,
        "trainable_share": total / arch.total_params, "targets": targets, "unembed": unembed,
        "source": arch.source,
    }
    if json_out:
        emit_json(payload)
        return
    rows = [[name, per_rank[name], per_rank[name] * rank] for name in ("attn", "mlp", "experts", "unembed")]
    rows.append(["total", result.per_rank_total, total])
    console.print(table(f"{arch.model_id}: LoRA params ({conv.value} convention)", ["component", "per rank",
                                                                                    f"rank {rank}"], rows))
    console.print(f"{total:,} trainable = {100 * total / arch.total_params:.3f}% of {arch.total_params:,} "
                  f"(architecture from {escape(arch.source)})", highlight=False)


def capacity(
    model: ModelArg,
    tokens: Annotated[int | None, typer.Option("--tokens", min=0, help="trained (loss-carrying) tokens")] = None,
    data: Annotated[list[str] | None, typer.Option("--data", help="count this data set instead of --tokens")] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="for --data (default: the model's)")] = None,
    chat_template: Annotated[str | None, typer.Option("--chat-template", help="Jinja file for --data")] = None,
    record_format: Annotated[str, typer.Option("--data-format", help="--data record layout (see `tokens`)")] = "auto",
    mask: Annotated[str, typer.Option("--mask", help="auto | assistant | last | all | completion")] = "auto",
    max_length: Annotated[int | None, typer.Option("--max-length", min=1, help="truncate --data")] = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="skip malformed --data records")] = False,
    sample: Annotated[int | None, typer.Option("--sample", min=1, help="estimate --data from N records")] = None,
    rank: Annotated[int, typer.Option("--rank", "-r", min=1, help="LoRA rank to check")] = 32,
    rule: Annotated[str, typer.Option("--rule", help="params (LoRA params >= trained tokens) | "
                                      "bits (2 bits per param >= --bits-per-token x tokens)")] = "params",
    bits_per_token: Annotated[float, typer.Option("--bits-per-token", min=0.0,
                                                  help="information per trained token (--rule bits)")] = 1.0,
    convention: Annotated[str, typer.Option("--convention", help="tinker | peft | per-expert")] = "tinker",
    targets: TargetsOpt = "all",
    unembed: Annotated[bool, typer.Option("--unembed/--no-unembed", help="adapt the unembedding (lm_head)")] = True,
    json_out: JsonOpt = False,
) -> None:
    """Does rank R have room for N trained tokens (--tokens N, or counted from --data)? Minimum and suggested rank.

    Examples:

    $ loraplan capacity Qwen/Qwen3-8B --tokens 500000000
    $ loraplan capacity meta-llama/Llama-3.1-8B --data examples/chat.jsonl --tokenizer examples/tokenizer
    """
    from loraplan.arch.sources import load_architecture
    from loraplan.capacity import check_capacity
    from loraplan.errors import LoraplanError

    if rule not in ("params", "bits"):
        raise LoraplanError(f"--rule must be params or bits (got {rule!r})")
    if (tokens is None) == (not data):
        raise LoraplanError("give exactly one of --tokens N (already counted) or --data FILE (to count)")
    arch = load_architecture(model)  # a bad model reference fails before a long count
    count = None
    if data:
        from pathlib import Path

        from loraplan.commands.tokens import count_data

        count = count_data(data, tokenizer, model, Path(chat_template) if chat_template else None, record_format,
                           mask, max_length, skip_invalid, sample, show_progress=not json_out)
    checked = check_capacity(arch, tokens=count if count is not None else tokens, rank=rank, rule=rule,
                             bits_per_token=bits_per_token, convention=convention, targets=targets, unembed=unembed)
    result = checked.result
    tokens = result.tokens
    payload = {
        "model": checked.model_id, "status": result.status.value, "message": result.message, "rank": rank,
        "tokens": tokens, "params": result.params, "per_rank": checked.per_rank,
        "min_rank": result.min_rank, "suggested_rank": result.suggested_rank, "headroom": result.headroom,
        "rule": result.rule.value, "source": result.source,
    }
    if count is not None:
        payload["tokens_estimated"] = count.estimated
        payload["token_count"] = count.as_dict()
    if json_out:
        emit_json(payload)
        return
    if count is not None:
        how = f"ESTIMATE from {count.method}: {count.note}" if count.method == "bytes" else (
            f"ESTIMATE from {count.method}" if count.estimated else "counted")
        console.print(escape(f"{tokens:,} trained tokens in {count.examples:,} examples ({how}, mask {count.mask}, "
                             f"tokenizer {count.tokenizer or 'none'})"), highlight=False)
    color = "green" if result.status.value == "OK" else "red"
    console.print(f"[bold {color}]{result.status.value}[/] {escape(result.message)}", highlight=False)
