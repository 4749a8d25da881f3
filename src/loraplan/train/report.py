"""validate's HTML report: one self-contained file (plots as inline PNG, no script, no network).

Written to a temp file in the target folder and renamed, so a run killed at any point leaves either the
previous report or none, never a half-written one. Needs matplotlib (extra `train` installs it).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from loraplan.errors import require
from loraplan.train.validate import Validation
from loraplan.train.verdicts import smooth

COLOURS = {"pass": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e"}
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;color:#1f2328}
h1{font-size:1.5rem;margin-bottom:.2rem} .sub{color:#59636e;margin-top:0}
table{border-collapse:collapse;width:100%;margin:1rem 0} td,th{border:1px solid #d1d9e0;padding:.45rem .6rem;
vertical-align:top;text-align:left;font-size:.9rem} th{background:#f6f8fa}
.verdict{font-weight:700;text-transform:uppercase} .plots{display:flex;flex-wrap:wrap;gap:1rem}
.plots img{max-width:100%;border:1px solid #d1d9e0} code{font-size:.85rem}
"""


def render_html(validation: Validation, title: str, command: str | None = None) -> str:
    """The whole report as one HTML string."""
    checks = "".join(_check_row(c) for c in validation["checks"])
    exit_word = "every check passes" if validation["exit_code"] == 0 else "a check fails"
    setup = validation["setup"]
    lora = setup.get("lora", {})
    optim = setup.get("optim", {})
    facts = (f"rank {lora.get('rank')}, alpha {lora.get('alpha'):g}, lr {optim.get('learning_rate'):.3g}, "
             f"{optim.get('max_steps')} steps of {optim.get('micro_batch_size')} sequences "
             f"(<= {setup.get('data', {}).get('max_length')} tokens), {len(validation['trials'])} trials in "
             f"{validation['seconds']:.0f} s")
    plots = [_img(_loss_plot(validation), "loss curves of every trial")]
    if validation["lr_fit"]:
        plots.append(_img(_lr_plot(validation), "held-out loss against learning rate, fitted optimum"))
    trials = "".join(_trial_row(t) for t in validation["trials"])
    cmd = f"<p><code>{html.escape(command)}</code></p>" if command else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>loraplan validate: {html.escape(title)}</h1>
<p class="sub">{html.escape(facts)}; {exit_word}.</p>{cmd}
<table><tr><th>check</th><th>verdict</th><th>measured</th><th>cause</th><th>fix</th></tr>{checks}</table>
<div class="plots">{''.join(plots)}</div>
<h2>Trials</h2>
<table><tr><th>trial</th><th>rank</th><th>alpha</th><th>lr</th><th>first loss</th><th>last loss</th>
<th>held-out loss</th><th>tokens/s</th><th>adapter</th></tr>{trials}</table>
<p class="sub">Versions: {html.escape(_versions(validation))}</p>
</body></html>
"""


def write_report(path: Path, validation: Validation, title: str, command: str | None = None) -> None:
    from loraplan.formats import write_atomic

    write_atomic(Path(path), render_html(validation, title, command))


def _check_row(check: Any) -> str:
    colour = COLOURS.get(check["verdict"], "#59636e")
    return (f"<tr><td><b>{html.escape(check['id'])}</b></td>"
            f"<td class='verdict' style='color:{colour}'>{html.escape(check['verdict'])}</td>"
            f"<td>{html.escape(check['summary'])}</td><td>{html.escape(check['cause'] or '')}</td>"
            f"<td>{html.escape(check['fix'] or '')}</td></tr>")


def _trial_row(trial: Any) -> str:
    record = trial["record"]
    losses = record["losses"]
    cells = [trial["label"], trial["rank"] if trial["rank"] is not None else "full",
             f"{trial['alpha']:g}" if trial["alpha"] is not None else "-", f"{trial['lr']:.3g}",
             f"{losses[0]:.4f}" if losses else "-", f"{losses[-1]:.4f}" if losses else "-",
             f"{record['eval_loss']:.4f}" if record["eval_loss"] is not None else "-",
             f"{record['tokens_per_s']:,.0f}", record["health"].get("status", "-")]
    return "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"


def _versions(validation: Validation) -> str:
    if not validation["trials"]:
        return "-"
    versions = validation["trials"][0]["record"]["versions"]
    return ", ".join(f"{k} {v}" for k, v in versions.items())


def _pyplot() -> Any:
    require("matplotlib", "train", "--report")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _loss_plot(validation: Validation) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for trial in validation["trials"]:
        losses = trial["record"]["losses"]
        style = "--" if trial["full_finetune"] else "-"
        width = 2.2 if trial["label"] == "configured" else 1.1
        ax.plot(range(1, len(losses) + 1), smooth(losses), style, lw=width, label=trial["label"])
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (moving average)")
    ax.set_title("Loss curves", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return _png(fig, plt)


def _lr_plot(validation: Validation) -> bytes:
    plt = _pyplot()
    fit = validation["lr_fit"] or {}
    points = sorted(fit.get("points", []))
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color="0.3", lw=1.2, label="trials")
    if fit.get("curvature") and fit["curvature"] > 0 and len(points) >= 3:
        ax.axvline(fit["best_lr"], color=COLOURS["pass"], lw=1.4, label=f"fitted optimum {fit['best_lr']:.3g}")
    else:
        ax.axvline(fit["best_lr"], color=COLOURS["warn"], lw=1.4, label=f"best tried {fit['best_lr']:.3g}")
    configured = validation["setup"]["optim"]["learning_rate"]
    ax.axvline(configured, color=COLOURS["fail"], ls="--", lw=1.2, label=f"configured {configured:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final loss (held-out, else train)")
    ax.set_title("LR bracket", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return _png(fig, plt)


def _png(fig: Any, plt: Any) -> bytes:
    buffer = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


