"""calibrate: fit the LR rule from sweep tables and write a calibration file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from loraplan.cli import JsonOpt
from loraplan.output import console, emit_json, table

if TYPE_CHECKING:
    from loraplan.calibrate.evaluate import Evaluation, Summary


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)


def calibrate(
    sweeps: Annotated[list[str], typer.Argument(help="sweep files: tinker-cookbook sft_sweep .md, .csv or .jsonl")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="calibration TOML to write")] = None,
    evaluate_out: Annotated[bool, typer.Option(
        "--evaluate", help="print the leave-one-group-out table and the nested score (shape chosen in each fold)",
    )] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="PNG of every model's f(lr) with both rules")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Fit the LR rule to sweep results; score it leave-one-group-out against the published formula.

    Examples:

    $ loraplan calibrate data/tinker_cookbook_sft_sweep.md -o cal.toml
    $ loraplan calibrate data/tinker_cookbook_sft_sweep.md --evaluate
    """
    from loraplan.atomicwrite import write_atomic
    from loraplan.calibrate.calfile import calibration_toml
    from loraplan.calibrate.evaluate import evaluate
    from loraplan.calibrate.features import model_facts
    from loraplan.calibrate.regret import curves
    from loraplan.calibrate.sweep import read_sweeps

    sweep = read_sweeps(sweeps)
    by_model = curves(sweep.points)
    facts = {m: model_facts(m) for m in by_model}
    result = evaluate(by_model, facts, nested=evaluate_out)
    if output is not None:
        write_atomic(output, calibration_toml(result, sweeps), inputs=sweeps)
    if plot is not None:
        from loraplan.calibrate.plot import plot_curves

        plot_curves(by_model, result, plot, inputs=[*sweeps, *([output] if output else [])])
    if json_out:
        emit_json(_payload(result, output, plot, evaluate_out))
        return
    if evaluate_out:
        _render_table(result)
    _render_summary(result)
    if output is not None:
        console.print(f"wrote {escape(str(output))}", highlight=False)
    if plot is not None:
        console.print(f"wrote {escape(str(plot))}", highlight=False)


def _pct(value: float | None) -> str:
    return "not covered" if value is None else f"{100 * value:.2f}%"


def _payload(result: Evaluation, output: Path | None, plot: Path | None, rows: bool) -> dict[str, object]:
    def summary(s: Summary) -> dict[str, object]:
        return {"mean_regret": s.mean, "max_regret": s.max, "worst": s.worst, "models": s.covered}

    payload: dict[str, object] = {
        "rule_shape": result.shape.name,
        "logo": summary(result.logo), "in_sample": summary(result.in_sample),
        "published": summary(result.published),
        "best_constant": {"lr": result.constant_lr, **summary(result.constant)},
        "shapes_tried": [{"shape": n, "logo_mean_regret": mn, "logo_max_regret": mx}
                         for n, mn, mx in result.shapes_tried],
        "output": str(output) if output else None, "plot": str(plot) if plot else None,
    }
    if result.nested is not None:
        payload["nested_logo"] = {**summary(result.nested), "shapes_chosen": list(result.nested_shapes)}
    if rows:
        payload["models"] = [{
            "model": r.model, "group": r.group, "family": r.family, "fitted_lr": r.fitted_lr,
            "fitted_regret": r.fitted_regret, "fitted_by_family_rule": r.fitted_by_family,
            "in_sample_lr": r.in_sample_lr, "in_sample_regret": r.in_sample_regret,
            "published_lr": r.published_lr, "published_regret": r.published_regret,
            "best_constant_regret": r.constant_regret,
        } for r in result.rows]
    return payload


def _render_table(result: Evaluation) -> None:
    rows = [[r.model, r.group if r.group != r.model else "", r.family,
             f"{r.fitted_lr:.3g}" + ("" if r.fitted_by_family else " (x-family)"), _pct(r.fitted_regret),
             "-" if r.published_lr is None else f"{r.published_lr:.3g}", _pct(r.published_regret),
             _pct(r.constant_regret)] for r in result.rows]
    console.print(table(f"Leave-one-group-out ({result.shape.name}); regret = (f(lr) - min f) / min f",
                        ["model", "group (held out with)", "family", "fitted LR", "regret", "published LR",
                         "regret", f"constant {result.constant_lr:g}"], rows))


def _render_summary(result: Evaluation) -> None:
    rows = [
        ["fitted rule, leave-one-group-out", result.logo.covered, _pct(result.logo.mean), _pct(result.logo.max),
         result.logo.worst],
        *([["fitted rule, nested leave-one-group-out (shape chosen in each fold)", result.nested.covered,
             _pct(result.nested.mean), _pct(result.nested.max), result.nested.worst]] if result.nested else []),
        ["fitted rule, in-sample", result.in_sample.covered, _pct(result.in_sample.mean),
         _pct(result.in_sample.max), result.in_sample.worst],
        ["published formula (tinker-cookbook)", result.published.covered, _pct(result.published.mean),
         _pct(result.published.max), result.published.worst],
        [f"best constant ({result.constant_lr:g})", result.constant.covered, _pct(result.constant.mean),
         _pct(result.constant.max), result.constant.worst],
    ]
    console.print(table(f"Summary: rule shape `{result.shape.name}`", ["rule", "models", "mean regret",
                                                                       "max regret", "worst"], rows))
