"""`loraplan sweep` on Ray Tune: planted optima, adaptive bracketing, failures, kill-and-resume, the store.

Oracle: a synthetic objective whose held-out loss is a known function of LR (tests/sweep_objectives.py:
a parabola in log(lr) with its minimum planted at 1e-3 for LoRA at every rank and at 1e-4 for full
fine-tuning), so the fitted optimum, the bracket, rank invariance and the 10x ratio are known exactly.
One local Ray instance serves every test of the module (Ray start-up costs seconds on 2 cores).
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("ray.tune")

import tests.sweep_objectives as objectives
from loraplan.calibrate.store import CSV_COLUMNS
from loraplan.train.sweep import SweepSpec, run_sweep
from loraplan.train.sweep_fit import summarize

ROOT = Path(__file__).resolve().parent.parent
GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


@pytest.fixture(scope="module")
def ray_address() -> str:
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(objectives)  # workers need not import the tests package
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(num_cpus=2, object_store_memory=80 * 2**20, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def sweep(tmp_path: Path, name: str = "store", **fields: object) -> object:
    spec = SweepSpec(**{"model": "meta-llama/Llama-3.2-1B", "data": ("none",), "lrs": GRID, "ranks": (4, 32),
                        "steps": 2, **fields})
    return run_sweep(spec, tmp_path / name, objective=objectives.synthetic, echo=False)


@pytest.fixture(scope="module")
def planted(ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> object:
    """LoRA at two ranks and full fine-tuning, on grids that bracket the planted optima."""
    return sweep(tmp_path_factory.mktemp("planted"), full_lrs=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3))


def test_grid_finds_the_planted_optimum(planted: object) -> None:
    summary = planted.summary
    lora = [c for c in summary.curves if c.method == "lora"]
    assert [c.rank for c in lora] == [4, 32]
    for curve in lora:
        # the loss is exactly quadratic in log(lr): the parabola through the bracket recovers the optimum
        assert math.isclose(curve.optimum, objectives.OPTIMUM, rel_tol=1e-9)
        assert curve.bracket == (3e-4, 3e-3) and curve.edge is None
        assert curve.losses == tuple(objectives.planted_loss("lora", lr) for lr in GRID)
    full = next(c for c in summary.curves if c.method == "full")
    assert math.isclose(full.optimum, objectives.OPTIMUM * objectives.FULL_RATIO, rel_tol=1e-9)
    assert summary.rank_invariant is True and math.isclose(summary.rank_spread, 1.0)
    assert all(math.isclose(v, 1 / objectives.FULL_RATIO, rel_tol=1e-9) for v in summary.ratios.values())


def test_store_has_every_trial_once_and_reads_without_ray(planted: object) -> None:
    rows = [json.loads(line) for line in (planted.store / "trials.jsonl").read_text().splitlines()]
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == 2 * 5 + 5
    with (planted.store / "trials.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == CSV_COLUMNS and len(table) == len(rows)
    row = next(r for r in table if r["key"] == "lora-r4-lr0.001-s0")
    assert (row["method"], float(row["lr"]), int(row["rank"]), row["status"]) == ("lora", 1e-3, 4, "ok")
    assert math.isclose(float(row["metric"]), objectives.FLOOR)
    assert (planted.store / "round-0" / "tuner.pkl").is_file()  # Tune's experiment sits beside the table


def test_rerunning_a_finished_sweep_trains_nothing(planted: object, monkeypatch: pytest.MonkeyPatch) -> None:
    import loraplan.train.sweep as sweep_module

    def no_round(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished sweep ran a round again")

    monkeypatch.setattr(sweep_module, "_run_round", no_round)
    spec = SweepSpec(model="meta-llama/Llama-3.2-1B", data=("none",), lrs=GRID, ranks=(4, 32), steps=2,
                     full_lrs=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3))
    again = run_sweep(spec, planted.store, objective=objectives.synthetic, echo=False, resume=True)
    assert again.resumed and again.rows == planted.rows


def test_calibrate_reads_the_store_and_lr_answers_from_it(planted: object, tmp_path: Path) -> None:
    """The loop: sweep -> calibrate STORE -> lr MODEL --calibration cal.toml gives the measured optimum."""
    cal = tmp_path / "cal.toml"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "120"}
    loraplan = [sys.executable, "-m", "loraplan"]
    done = subprocess.run([*loraplan, "calibrate", str(planted.store), "-o", str(cal)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = subprocess.run([*loraplan, "lr", "meta-llama/Llama-3.2-1B", "--calibration", str(cal), "--json"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    payload = json.loads(answer.stdout)
    # one architecture, `family` shape: the rule is the best swept LoRA LR itself (full FT rows are left out)
    assert math.isclose(payload["lr"], objectives.OPTIMUM, rel_tol=1e-9)
    assert payload["lr_range"]["measured_low"] == GRID[0] and payload["beyond_measured"] is False


def test_adaptive_extends_a_grid_whose_best_point_is_at_its_edge(ray_address: str, tmp_path: Path) -> None:
    low_grid = (1e-4, 3e-4, 1e-3)  # the planted optimum, 1e-3, is the grid's top: not bracketed yet
    grown = sweep(tmp_path, "adaptive", lrs=low_grid, ranks=(4,), adaptive=True)
    (first,) = summarize(r for r in grown.rows if r["round"] == 0).curves
    assert first.optimum is None and first.edge == "high" and first.best_lr == 1e-3  # never reported as found
    added = float(f"{1e-3 * (1e-3 / 3e-4):.6g}")  # one grid step (the median neighbour ratio, 10/3) above the top
    (curve,) = grown.summary.curves
    assert curve.edge is None and curve.bracket == (3e-4, added)
    assert math.isclose(curve.optimum, objectives.OPTIMUM, rel_tol=1e-6)
    assert grown.rounds == 2 and [r["lr"] for r in grown.rows if r["round"] == 1] == [added]


def test_cpus_are_shared_out_among_a_rounds_trials(ray_address: str) -> None:
    from loraplan.train.sweep import _resources

    # the module's Ray has 2 CPUs and no GPU: a lone trial trains on both, a full round on one each
    assert _resources(None, None, trials=1) == {"cpu": 2}
    assert _resources(None, None, trials=2) == {"cpu": 1}
    assert _resources(None, None, trials=15) == {"cpu": 1}
    assert _resources(None, 3, trials=1) == {"cpu": 3}  # the user's --cpus-per-trial is kept as given
    assert _resources(0, None, trials=1) == {"cpu": 2}  # --gpus-per-trial 0: CPUs only


def test_a_trial_that_raises_is_reported_and_the_others_finish(ray_address: str, tmp_path: Path) -> None:
    spec = SweepSpec(model="meta-llama/Llama-3.2-1B", data=("none",), lrs=GRID, ranks=(4,), steps=2)
    outcome = run_sweep(spec, tmp_path / "store", objective=objectives.failing(3e-3), echo=False)
    by_lr = {r["lr"]: r for r in outcome.rows}
    assert sorted(by_lr) == list(GRID)
    for lr, row in by_lr.items():
        if lr >= 3e-3:
            assert row["status"] == "error" and "planted failure" in row["error"] and row["metric"] is None
        else:
            assert row["status"] == "ok" and math.isclose(row["metric"], objectives.planted_loss("lora", lr))


def test_sigkill_of_the_driver_then_resume_records_every_trial_once(ray_address: str, tmp_path: Path) -> None:
    store, executions = tmp_path / "store", tmp_path / "executions.log"
    command = [sys.executable, str(ROOT / "tests" / "sweep_driver.py"), str(store), str(executions), ray_address]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    jsonl = store / "trials.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        if jsonl.is_file() and len(jsonl.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    assert driver.poll() is None, "the driver finished before it could be killed"
    driver.kill()  # SIGKILL: no cleanup, no last state save
    driver.wait()
    before = {json.loads(line)["key"] for line in jsonl.read_text().splitlines()}
    assert 3 <= len(before) < 10
    subprocess.run(command, env=env, check=True, timeout=300, capture_output=True)
    keys = [json.loads(line)["key"] for line in jsonl.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 10  # every trial in the store, exactly once
    runs = Counter(executions.read_text().split())
    assert all(runs[k] == 1 for k in before), runs  # a trial finished before the kill never ran again


def test_report_is_one_self_contained_html_file(planted: object, tmp_path: Path) -> None:
    from loraplan.train.sweep_report import write_report

    page = tmp_path / "sweep.html"
    write_report(page, planted, {"lr": 6e-4, "lr_full_ft": 6e-5, "rule": "r", "answered_by": "a"})
    text = page.read_text()
    assert text.count('src="data:image/png;base64,') == 3  # loss vs step, loss vs LR, LoRA vs full
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "LoRA rank 4 / full fine-tuning: 10.0x (rules: 10x)" in text


@pytest.mark.parametrize(("args", "message"), [
    (["--lrs", ","], "--lrs is empty"),
    (["--lrs", "-1e-4"], "learning rates must be positive"),
    (["--ranks", ""], "--ranks is empty"),
    (["--steps", "0"], "--steps must be at least 1"),
])
def test_bad_grid_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "loraplan", "sweep", "meta-llama/Llama-3.2-1B", "--data",
                           str(ROOT / "examples" / "chat.jsonl"), *args], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_unknown_model_is_one_line_and_exit_2() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "loraplan", "sweep", "no-such-org/no-such-model", "--data",
                           str(ROOT / "examples" / "chat.jsonl")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no-such-org/no-such-model" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_sweep_on_a_tiny_model_finds_the_known_bad_lr(tmp_path: Path) -> None:
    """Through the console script, the local Ray it starts and stops, and the real engine (~30 s): LR 3.0 is
    far past any stable LR for LoRA at alpha 32, so its held-out loss must be the worst; the store then
    calibrates a rule that answers the best finite LR."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    store = tmp_path / "store"
    done = subprocess.run([sys.executable, "-m", "loraplan", "sweep", "meta-llama/Llama-3.2-1B", "--random-init",
                           "--layers", "1", "--hidden", "32", "--data", str(ROOT / "examples" / "chat.jsonl"),
                           "--tokenizer", str(ROOT / "examples" / "tokenizer"), "--lrs", "1e-4,1e-3,3.0",
                           "--ranks", "4", "--steps", "5", "--batch-size", "4", "--seq-len", "64",
                           "--store", str(store), "--json"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    trials = {t["lr"]: t for t in json.loads(done.stdout)["trials"]}
    assert trials[1e-3]["status"] == "ok" and trials[1e-3]["tokens_per_s"] > 0
    bad = trials[3.0]["metric"]
    assert bad is None or bad > max(trials[1e-3]["metric"], trials[1e-4]["metric"])  # None: diverged (non-finite)
    best = min((1e-4, 1e-3), key=lambda lr: trials[lr]["metric"])
    cal = tmp_path / "cal.toml"
    assert subprocess.run([sys.executable, "-m", "loraplan", "calibrate", str(store), "-o", str(cal)], env=env,
                          capture_output=True, timeout=300).returncode == 0
    answer = subprocess.run([sys.executable, "-m", "loraplan", "lr", str(store / "model"), "--calibration", str(cal),
                             "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert math.isclose(json.loads(answer.stdout)["lr"], best, rel_tol=1e-9)
