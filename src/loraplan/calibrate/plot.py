"""One small panel per model: f(lr) on the swept grid, the published formula's LR and the fitted
rule's leave-one-group-out LR marked. Needs matplotlib (the `plot` extra), imported only here."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from loraplan.atomicwrite import write_atomic
from loraplan.calibrate.evaluate import Evaluation
from loraplan.calibrate.regret import Curve
from loraplan.errors import require

COLUMNS = 5


def plot_curves(curves: Mapping[str, Curve], evaluation: Evaluation, path: Path,
                inputs: Sequence[str | Path] = ()) -> None:
    """Write a PNG grid through the one atomic write (never over a symlink, device or one of `inputs`)."""
    require("matplotlib", "plot", "--plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {r.model: r for r in evaluation.rows}
    n = len(curves)
    lines = math.ceil(n / COLUMNS)
    fig, axes = plt.subplots(lines, COLUMNS, figsize=(3.2 * COLUMNS, 2.4 * lines), squeeze=False)
    for ax, (model, curve) in zip(axes.flat, curves.items(), strict=False):
        row = rows[model]
        ax.plot(curve.lrs, curve.values, "o-", color="0.3", lw=1, ms=3)
        ax.set_xscale("log")
        ax.axvline(row.fitted_lr, color="tab:green", lw=1.2,
                   label=f"fitted {row.fitted_lr:.2g} ({100 * row.fitted_regret:.2f}%)")
        if row.published_lr is not None and row.published_regret is not None:
            ax.axvline(row.published_lr, color="tab:red", lw=1.2, ls="--",
                       label=f"published {row.published_lr:.2g} ({100 * row.published_regret:.2f}%)")
        ax.set_title(model.split("/")[-1], fontsize=8)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5, loc="upper left")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"test NLL (min over ranks) vs LR; fitted rule `{evaluation.shape.name}`, leave-one-group-out",
                 fontsize=10)
    fig.tight_layout()
    image = io.BytesIO()
    try:
        fig.savefig(image, format="png", dpi=110)
    finally:
        plt.close(fig)
    write_atomic(Path(path), image.getvalue(), inputs)
