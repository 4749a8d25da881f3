"""One self-contained HTML file per sweep: plots inlined as base64 PNG, no script, no network.

Panels: training loss vs step for every trial (one panel per method and rank, a colour per LR);
final held-out loss vs LR with the ranks overlaid, each fitted optimum and the rules' LR marked; and
LoRA against full fine-tuning with the measured ratio of optimal LRs next to the rules' 10x.
Needs matplotlib (the `plot` extra), imported only here.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loraplan.errors import require
from loraplan.formats.base import write_atomic

if TYPE_CHECKING:
    from loraplan.train.sweep import SweepOutcome


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _curves_by_step(outcome: SweepOutcome) -> str:
    import matplotlib.pyplot as plt

    curves = outcome.summary.curves
    fig, axes = plt.subplots(1, max(1, len(curves)), figsize=(4.2 * max(1, len(curves)), 3.2), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, curve in zip(axes.flat, curves, strict=False):
        rows = [r for r in outcome.rows if r["method"] == curve.method and r["rank"] == curve.rank and r["losses"]]
        lrs = sorted({r["lr"] for r in rows})
        for row in sorted(rows, key=lambda r: r["lr"]):
            shade = lrs.index(row["lr"]) / max(1, len(lrs) - 1)
            ax.plot(range(1, len(row["losses"]) + 1), row["losses"], color=cmap(shade), lw=1,
                    label=f"lr {row['lr']:.2g}" if row["seed"] == min(r["seed"] for r in rows) else None)
        ax.set_title(curve.label, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("training loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    return _png(fig)


def _final_vs_lr(outcome: SweepOutcome, rules: dict[str, Any] | None, methods: tuple[str, ...]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for curve in (c for c in outcome.summary.curves if c.method in methods):
        finite = [(lr, loss) for lr, loss in zip(curve.lrs, curve.losses, strict=True) if math.isfinite(loss)]
        if not finite:
            continue
        line = ax.plot(*zip(*finite, strict=True), marker="o", ms=4, lw=1.2, label=curve.label,
                       ls="--" if curve.method == "full" else "-")[0]
        if curve.optimum is not None:
            ax.axvline(curve.optimum, color=line.get_color(), lw=0.8, ls=":")
            ax.annotate(f"opt {curve.optimum:.2g}", (curve.optimum, min(v for _, v in finite)), fontsize=7,
                        color=line.get_color(), xytext=(3, 3), textcoords="offset points")
    if rules:
        ax.axvline(rules["lr"], color="tab:red", lw=1.2, label=f"rules' LoRA LR {rules['lr']:.2g}")
        if "full" in methods:
            ax.axvline(rules["lr_full_ft"], color="tab:red", lw=1.2, ls="--",
                       label=f"rules' full FT LR {rules['lr_full_ft']:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate", fontsize=8)
    ax.set_ylabel("final held-out loss", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    return _png(fig)


def _trial_table(outcome: SweepOutcome) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("method", "rank", "lr", "seed", "held-out loss", "status", "wall s",
                                             "tokens/s"))
    body = []
    for r in sorted(outcome.rows, key=lambda r: (r["method"], r["rank"], r["lr"], r["seed"])):
        loss = "-" if r["metric"] is None else f"{r['metric']:.4f}"
        status = "ok" if r["status"] == "ok" else f"error: {r['error']}"
        speed = "-" if not r.get("tokens_per_s") else f"{r['tokens_per_s']:.0f}"
        cells = (r["method"], r["rank"] or "-", f"{r['lr']:.3g}", r["seed"], loss, status, f"{r['wall_s']:.1f}", speed)
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _verdicts(outcome: SweepOutcome) -> str:
    s = outcome.summary
    items = []
    for c in s.curves:
        if c.optimum is not None and c.bracket is not None:
            items.append(f"{c.label}: optimum {c.optimum:.3g} (bracket {c.bracket[0]:.3g}-{c.bracket[1]:.3g})")
        else:
            items.append(f"{c.label}: optimum not bracketed (best {c.best_lr:.3g} at the grid's edge)")
    if s.rank_spread is not None:
        items.append(f"rank invariance: spread x{s.rank_spread:.2f} across ranks "
                     f"({'within' if s.rank_invariant else 'beyond'} one grid step, x{s.grid_step:.2f})")
    items += [f"LoRA rank {r} / full fine-tuning: {v:.1f}x (rules: 10x)" for r, v in s.ratios.items()]
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:1em auto;color:#222}img{max-width:100%}"
         "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}")


def write_report(path: Path, outcome: SweepOutcome, rules: dict[str, Any] | None) -> None:
    """Write the HTML atomically."""
    require("matplotlib", "plot", "--report")
    import matplotlib

    matplotlib.use("Agg")
    model = outcome.rows[0]["model"] if outcome.rows else "?"
    parts = [f"<h1>loraplan sweep: {html.escape(model)}</h1>",
             f"<p>{len(outcome.rows)} trials, {outcome.rounds} round(s), store <code>{html.escape(str(outcome.store))}"
             "</code></p>", _verdicts(outcome)]
    if outcome.summary.curves:
        parts += ["<h2>Training loss per step</h2>", f'<img alt="loss vs step" src="data:image/png;base64,'
                  f'{_curves_by_step(outcome)}">',
                  "<h2>Final held-out loss vs LR (ranks overlaid)</h2>",
                  f'<img alt="loss vs lr" src="data:image/png;base64,{_final_vs_lr(outcome, rules, ("lora",))}">']
        if any(c.method == "full" for c in outcome.summary.curves):
            parts += ["<h2>LoRA vs full fine-tuning</h2>", f'<img alt="lora vs full" src="data:image/png;base64,'
                      f'{_final_vs_lr(outcome, rules, ("lora", "full"))}">']
    parts += ["<h2>Trials</h2>", _trial_table(outcome)]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>loraplan sweep</title><style>{STYLE}</style>"
            f"</head><body>{''.join(parts)}</body></html>\n")
    write_atomic(Path(path), page)
