"""sweep: LR x rank (and full fine-tuning) grids on Ray Tune into a store `calibrate` reads."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loraplan.cli import JsonOpt
from loraplan.commands.train_inputs import (
    BatchOpt,
    DataOpt,
    HiddenOpt,
    LayersOpt,
    ModelOpt,
    RandomOpt,
    SeqLenOpt,
    StepsOpt,
    TargetArg,
    TokenizerOpt,
    resolve,
)
from loraplan.output import console, emit_json, table

if TYPE_CHECKING:
    from loraplan.train.sweep import SweepOutcome, SweepSpec

DEFAULT_LRS = "1e-4,3e-4,1e-3"
DEFAULT_RANKS = "4,32"


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)


def sweep(
    target: TargetArg,
    data: DataOpt = None,  # type: ignore[assignment]  # required; checked with a one-line message
    lrs: Annotated[str, typer.Option("--lrs", help="LoRA learning rates, comma-separated")] = DEFAULT_LRS,
    ranks: Annotated[str, typer.Option("--ranks", help="LoRA ranks, comma-separated")] = DEFAULT_RANKS,
    full_finetune_too: Annotated[bool, typer.Option("--full-finetune-too",
                                                    help="also sweep full fine-tuning (LRs: --full-lrs)")] = False,
    full_lrs: Annotated[str | None, typer.Option("--full-lrs", help="full fine-tuning LRs (default: --lrs / 10)")
                        ] = None,
    steps: StepsOpt = 50,
    adaptive: Annotated[bool, typer.Option("--adaptive", help="add LRs until every optimum is bracketed")] = False,
    max_rounds: Annotated[int, typer.Option("--max-rounds", help="search rounds with --adaptive")] = 4,
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster: auto or ray://HOST:PORT "
                                                "(default: a local Ray started for this sweep)")] = None,
    store: Annotated[Path | None, typer.Option("--store", help="store folder (default: sweeps/<model>)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the sweep in --store (re-running the "
                                         "same command does too)")] = False,
    report: Annotated[Path | None, typer.Option("--report", help="write a self-contained HTML report")] = None,
    model: ModelOpt = None,
    tokenizer: TokenizerOpt = None,
    batch_size: BatchOpt = None,
    seq_len: SeqLenOpt = None,
    random_init: RandomOpt = False,
    layers: LayersOpt = None,
    hidden: HiddenOpt = None,
    seed: Annotated[list[int] | None, typer.Option("--seed", help="trial seed (repeat for several)")] = None,
    gpus_per_trial: Annotated[float | None, typer.Option("--gpus-per-trial", min=0.0,
                                                         help="GPUs per trial where the cluster has GPUs "
                                                         "(default 1; 0 = CPU only)")] = None,
    cpus_per_trial: Annotated[int | None, typer.Option(
        "--cpus-per-trial", min=1, help="CPUs per trial without GPUs (default: the CPUs shared out among the "
        "round's trials, at least 1, at most one machine's)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Sweep LR x rank (and full fine-tuning) with the trial engine on Ray Tune; fit each optimum.

    Examples:

    $ loraplan sweep meta-llama/Llama-3.2-1B --random-init --layers 2 --hidden 64 --data examples/chat.jsonl --tokenizer examples/tokenizer --lrs 1e-3,1e-2 --ranks 4 --steps 3 --batch-size 4 --seq-len 64 --store runs/demo
    $ loraplan sweep meta-llama/Llama-3.2-1B --random-init --layers 2 --hidden 64 --data examples/chat.jsonl --tokenizer examples/tokenizer --lrs 3e-3 --ranks 2,8 --steps 3 --batch-size 4 --seq-len 64 --store runs/demo --json
    """
    from loraplan.train.sweep import FULL_OVER_LORA, SweepSpec, run_sweep

    lora_lrs = _floats(lrs, "--lrs")
    # Trials run in Ray workers whose working folder is not this one: local paths travel absolute.
    data = [_absolute(item) for item in data or ()]
    tokenizer = _absolute(tokenizer) if tokenizer else tokenizer
    grid = SweepSpec(
        model=target, data=tuple(data or ()), lrs=lora_lrs, ranks=_ints(ranks, "--ranks"),
        full_lrs=(_floats(full_lrs, "--full-lrs") if full_lrs else tuple(float(f"{v * FULL_OVER_LORA:.6g}")
                                                                         for v in lora_lrs))
        if full_finetune_too else (),
        steps=steps, seeds=tuple(seed or (0,)), tokenizer=tokenizer, batch_size=batch_size, seq_len=seq_len,
        random_init=random_init, layers=layers, hidden=hidden, adaptive=adaptive, max_rounds=max_rounds)
    grid.validate()  # the numbers first: nothing is loaded for a typo
    _check_data(grid.data)
    inputs = resolve(target, model, list(grid.data), tokenizer, random_init, layers, hidden, seq_len)
    spec = replace(grid, model=inputs.model.reference, setup=inputs.setup.model_dump(mode="json"),
                   source=inputs.source)
    folder = store or Path("sweeps") / _slug(spec)
    outcome = run_sweep(spec, folder, address=address, resume=resume, gpus_per_trial=gpus_per_trial,
                        cpus_per_trial=cpus_per_trial, echo=not json_out)
    rules = rules_lr(spec, outcome)
    if report is not None:
        from loraplan.train.sweep_report import write_report

        write_report(report, outcome, rules)
    if json_out:
        emit_json(payload(outcome, rules, report))
        return
    render(outcome, rules)
    if report is not None:
        console.print(f"wrote {report}", highlight=False)


def _floats(text: str, option: str) -> tuple[float, ...]:
    from loraplan.errors import LoraplanError

    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError as exc:
            raise LoraplanError(f"{option}: `{part}` is not a number (give e.g. {DEFAULT_LRS})") from exc
        if not (math.isfinite(value) and value > 0):
            raise LoraplanError(f"{option}: learning rates must be positive numbers (got {part})")
        values.append(value)
    if not values:
        raise LoraplanError(f"{option} is empty: give at least one value (e.g. {DEFAULT_LRS})")
    return tuple(dict.fromkeys(values))


def _ints(text: str, option: str) -> tuple[int, ...]:
    from loraplan.errors import LoraplanError

    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise LoraplanError(f"{option}: `{part}` is not a whole number of at least 1 (give e.g. {DEFAULT_RANKS})")
        values.append(int(part))
    if not values:
        raise LoraplanError(f"{option} is empty: give at least one value (e.g. {DEFAULT_RANKS})")
    return tuple(dict.fromkeys(values))


def _absolute(item: str) -> str:
    """`item` as an absolute path when it names something here; a hub id or glob stays as written."""
    path = Path(item).expanduser()
    return str(path.resolve()) if path.exists() else item


def _check_data(data: tuple[str, ...]) -> None:
    """A missing local data file is one line before any model or Ray starts (hub data sets pass through)."""
    import glob
    import os

    from loraplan.errors import LoraplanError

    if not data:
        raise LoraplanError("--data is required (the file to train on)")
    for item in data:
        local = item.startswith((".", "/", "~")) or bool(Path(item).suffix) or item.count("/") != 1
        if local and not glob.glob(os.path.expanduser(item)):
            raise LoraplanError(f"--data {item}: no such file")


def _slug(spec: SweepSpec) -> str:
    name = Path(spec.model).name if spec.model.lower().endswith(".gguf") else spec.model.replace("/", "--")
    return name + ("-random-init" if spec.random_init else "")


def rules_lr(spec: SweepSpec, outcome: SweepOutcome) -> dict[str, Any] | None:
    """The rules' LoRA LR for the model swept (its store config for random-init/GGUF), to mark on the plots."""
    from loraplan.calibrate.features import model_facts
    from loraplan.calibrate.store import MODEL_DIR
    from loraplan.errors import LoraplanError
    from loraplan.rules.calibration import ModelTraits, default_calibration
    from loraplan.rules.lr import recommend_lr

    reference = str(outcome.store / MODEL_DIR) if (outcome.store / MODEL_DIR / "config.json").is_file() else spec.model
    try:
        facts = model_facts(reference, spec.trust_remote_code)
        advice = recommend_lr(facts.family, facts.hidden_size, True, default_calibration(), False,
                              facts.total_params, facts.model_id, ModelTraits.of(facts))
    except (LoraplanError, OSError):
        return None
    return {"lr": advice.lr, "lr_full_ft": advice.lr_full_ft, "rule": advice.rule, "answered_by": advice.answered_by}


def _finite(value: Any) -> Any:
    """JSON has no inf/NaN: a diverged loss is null (its row keeps status and key)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def payload(outcome: SweepOutcome, rules: dict[str, Any] | None, report: Path | None) -> dict[str, Any]:
    return _finite({"store": str(outcome.store), "resumed": outcome.resumed, "rounds": outcome.rounds,
            "wall_s": outcome.wall_s, "trials": outcome.rows, "summary": outcome.summary.as_dict(),
            "rules": rules, "notes": outcome.notes, "report": str(report) if report else None})


def _lr(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def render(outcome: SweepOutcome, rules: dict[str, Any] | None) -> None:
    summary = outcome.summary
    failed = [r for r in outcome.rows if r["status"] != "ok"]
    console.print(f"{len(outcome.rows)} trials in {outcome.store} ({len(failed)} failed, {outcome.rounds} round(s)"
                  f"{', resumed' if outcome.resumed else ''}, {outcome.wall_s:.0f} s)", highlight=False)
    for curve in summary.curves:
        best = curve.lrs.index(curve.best_lr)
        rows = [[_lr(lr), "diverged" if not math.isfinite(loss) else f"{loss:.4f}" + (" <- best" if i == best else "")]
                for i, (lr, loss) in enumerate(zip(curve.lrs, curve.losses, strict=True))]
        console.print(table(f"{curve.label}: final held-out loss per LR", ["LR", "held-out loss"], rows))
        if curve.optimum is not None and curve.bracket is not None:
            console.print(f"  optimum {curve.optimum:.3g} (fitted in log LR), bracketed by {curve.bracket[0]:.3g} and "
                          f"{curve.bracket[1]:.3g}", highlight=False)
        else:
            side = {"low": "at or below", "high": "at or above", "both": "unknown around"}[curve.edge or "both"]
            console.print(f"  optimum NOT bracketed: {side} {curve.best_lr:.3g} (the grid's edge); widen --lrs or "
                          "use --adaptive", highlight=False)
    if summary.rank_spread is not None:
        verdict = "rank-invariant" if summary.rank_invariant else "NOT rank-invariant"
        console.print(f"LoRA optima across ranks: {verdict} (spread x{summary.rank_spread:.2f}; one grid step is "
                      f"x{summary.grid_step:.2f})", highlight=False)
    for rank, ratio in summary.ratios.items():
        console.print(f"LoRA rank {rank} / full fine-tuning optimal LR: {ratio:.1f}x (the rules say 10x)",
                      highlight=False)
    if rules:
        console.print(f"rules' LoRA LR for this model: {rules['lr']:.3g} ({rules['answered_by'] or rules['rule']})",
                      highlight=False)
    for row in failed:
        console.print(f"[red]failed[/] {row['key']}: {row['error']}", highlight=False, soft_wrap=True)
    for note in outcome.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print(f"next: loraplan calibrate {outcome.store} -o cal.toml", highlight=False)
