"""The checks' arithmetic on curves with known answers, and the package's public surface (sweeps build on it)."""

from __future__ import annotations

import inspect
import math
import subprocess
import sys

import pytest

from loraplan.train import verdicts as v


def test_fitted_optimum_is_the_parabolas_vertex_not_the_best_grid_point() -> None:
    best = 2.2e-3
    points = [(lr, (math.log10(lr) - math.log10(best)) ** 2 + 1.5) for lr in (1e-3, 3e-3, 9e-3, 2.7e-2)]
    fit = v.fit_lr_optimum(points)
    assert fit.best_lr == pytest.approx(best, rel=1e-9) and not fit.at_edge and fit.curvature > 0
    assert fit.best_lr != min(points, key=lambda p: p[1])[0]


def test_monotone_curves_ask_for_more_points_and_flat_ones_do_not() -> None:
    falling = [(1e-5, 3.0), (3e-5, 2.8), (1e-4, 2.5)]
    assert v.needs_more_points(falling) == 1 and v.fit_lr_optimum(falling).at_edge
    rising = [(1e-3, 2.0), (3e-3, 2.2), (1e-2, 2.9)]
    assert v.needs_more_points(rising) == -1
    assert v.needs_more_points([(1e-3, 2.0001), (3e-3, 2.0), (1e-2, 2.0002)]) == 0
    assert v.is_flat([2.0001, 2.0, 2.0002]) and not v.is_flat([2.0, 2.1])


def test_progress_gap_is_a_share_of_the_reference_runs_progress() -> None:
    reference = [3.0 - 0.1 * i for i in range(20)]  # falls by 1.9 (smoothed: a little less)
    assert v.progress_gap(reference, reference) == 0
    shifted = [x + 0.19 for x in reference]
    fell = v.smooth(reference)[0] - min(v.smooth(reference))
    assert v.progress_gap(shifted, reference) == pytest.approx(0.19 / fell)
    assert v.progress_gap(reference, [3.0] * 20) == math.inf  # a reference that did not learn


def test_grades_and_tracking_gap() -> None:
    assert v.grade(0.05, 0.1, 0.2) is v.Verdict.PASS
    assert v.grade(0.15, 0.1, 0.2) is v.Verdict.WARN
    assert v.grade(0.25, 0.1, 0.2) is v.Verdict.FAIL and v.grade(math.nan, 0.1, 0.2) is v.Verdict.FAIL
    assert v.tracking_gap([2.2] * 10, [2.0] * 10) == pytest.approx(0.1)


def test_public_surface_is_pinned_and_importing_it_loads_no_torch() -> None:
    import loraplan.train as train
    from loraplan.train.engine import TrialRecord, TrialSpec, run_trial

    assert sorted(train.__all__) == ["LoraHealthCallback", "ModelRef", "StepReport", "TrialRecord", "TrialSpec",
                                     "run_trial"]
    assert list(inspect.signature(run_trial).parameters) == ["spec"]
    fields = list(inspect.signature(TrialSpec).parameters)
    assert fields[:3] == ["setup", "model", "data"] and "on_step" in fields and "seed" in fields
    assert {"losses", "eval_loss", "eval_curve", "tokens_per_s", "trained_tokens", "health", "setup", "seed",
            "versions", "peak_memory_bytes"} <= TrialRecord.__annotations__.keys()
    code = "import sys, loraplan.train, loraplan.train.engine; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
