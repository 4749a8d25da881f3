"""LR x rank sweeps (and full fine-tuning) as Ray Tune experiments, into a store `calibrate` reads.

    SweepSpec ──> rounds: round 0 is the user's grid; with `adaptive`, round k+1 adds one grid step
                  beyond every optimum that round 0..k left at the grid's edge (until all are bracketed)
              ──> each round is one Tune experiment (STORE/round-K): one trial per (method, rank, lr, seed),
                  each trial one run of the trial engine (loraplan.train.engine.run_trial)
              ──> StoreCallback writes each finished or failed trial to STORE/trials.jsonl/.csv
              ──> sweep_fit.summarize: optimum per (method, rank), rank invariance, LoRA/full ratio

Failure and resume are Tune's: FailureConfig(max_failures=0, fail_fast=False) lets a trial that
raises be reported while the others finish; a driver killed mid-sweep is restarted with the same
command, which finds STORE/round-K and calls Tuner.restore (finished trials are not run again, the
ones that were running restart). Two guards make "exactly once" hold even for a trial that
finished after Tune last saved its state: the trainable looks its key up in the store first (and
reports the stored result instead of training), and the store never writes a key twice.

Search: no Tune searcher. Optuna's TPE or Tune's BayesOpt optimise one black-box objective under a
trial budget; here every (method, rank) curve must have its own optimum bracketed, the result must be
reproducible from the store alone (a resumed round re-plans the same LRs), and the doctrine says the
loss is unimodal in log(lr). A deterministic bracketing rule in log space does exactly that.

Ray: a local instance started and stopped here (small object store, no dashboard) unless Ray is
already initialised (tests share one) or `address` names a cluster (`auto` or ray://HOST:PORT), in
which case loraplan's code travels to the workers as a py_module (the data files must be readable
there). A trial asks for one GPU when the cluster has any, else for CPUs.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loraplan.calibrate.store import TrialRow
from loraplan.errors import LoraplanError, require
from loraplan.train.store import SweepStore, keep_model_config, trial_key
from loraplan.train.sweep_fit import SweepSummary, next_lrs, summarize

OBJECT_STORE_BYTES = 80 * 2**20  # Ray's minimum is 75 MiB; trials pass only small dicts through it
LR_BOUNDS = (1e-7, 1.0)  # the adaptive search never proposes LRs outside these
DEFAULT_MAX_ROUNDS = 4
FULL_OVER_LORA = 0.1  # full fine-tuning's grid by default: the LoRA grid / 10 (the doctrine's ratio)

# A trial's measurement: called with (trial, common, report) and returning the final metrics
# (metric = final held-out loss, losses, eval_curve, tokens_per_s). The default trains with the engine.
Objective = Callable[[dict[str, Any], dict[str, Any], Callable[[dict[str, Any]], None]], dict[str, Any]]


class SweepError(LoraplanError):
    """A sweep that cannot be run as asked (empty grid, bad LR, a store holding another sweep)."""


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep; everything `sweep.json` records so a resumed sweep can be checked against it.

    model: reference (catalogue id, folder, config.json, hub id, .gguf); random_init/layers/hidden as in ModelRef.
    setup: the TrainingSetup (JSON) every trial starts from: a user's config, or plan's setup for the model
        (None: the engine's defaults); source says which.
    data / tokenizer: as the trial engine takes them.
    lrs: LoRA LRs; ranks: LoRA ranks; full_lrs: full fine-tuning LRs (empty: no full fine-tuning).
    steps / batch_size / seq_len / seeds: per trial.
    adaptive / max_rounds: extend the grid until every optimum is bracketed, at most max_rounds rounds.
    """

    model: str
    data: tuple[str, ...]
    lrs: tuple[float, ...]
    ranks: tuple[int, ...]
    full_lrs: tuple[float, ...] = ()
    steps: int = 50
    seeds: tuple[int, ...] = (0,)
    tokenizer: str | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    random_init: bool = False
    layers: int | None = None
    hidden: int | None = None
    trust_remote_code: bool = False
    setup: dict[str, Any] | None = None
    source: str = ""
    adaptive: bool = False
    max_rounds: int = DEFAULT_MAX_ROUNDS

    def validate(self) -> None:
        """Every problem at once, one line."""
        problems = []
        if not self.lrs:
            problems.append("--lrs is empty: give at least one learning rate")
        bad = [v for v in (*self.lrs, *self.full_lrs) if not (math.isfinite(v) and v > 0)]
        if bad:
            problems.append(f"learning rates must be positive numbers (got {', '.join(f'{v:g}' for v in bad)})")
        if not self.ranks:
            problems.append("--ranks is empty: give at least one LoRA rank")
        if any(r < 1 for r in self.ranks):
            problems.append(f"LoRA ranks must be at least 1 (got {', '.join(str(r) for r in self.ranks)})")
        if self.steps < 1:
            problems.append(f"--steps must be at least 1 (got {self.steps})")
        if self.max_rounds < 1:
            problems.append(f"--max-rounds must be at least 1 (got {self.max_rounds})")
        if not self.data:
            problems.append("--data is required")
        if problems:
            raise SweepError("; ".join(problems))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def trials(self, lrs_by_method: dict[str, list[float]], round_number: int) -> list[dict[str, Any]]:
        """One dict per trial of a round: method, rank, lr, seed and the store key."""
        out = []
        for method, lrs in lrs_by_method.items():
            for rank in self.ranks if method == "lora" else (0,):
                for lr in lrs:
                    for seed in self.seeds:
                        out.append({"key": trial_key(method, rank, lr, seed), "method": method, "rank": rank,
                                    "lr": lr, "seed": seed, "round": round_number})
        return out


@dataclass
class SweepOutcome:
    rows: list[TrialRow]
    summary: SweepSummary
    rounds: int
    resumed: bool
    store: Path
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- the trainable (runs on Ray workers)


def engine_objective(trial: dict[str, Any], common: dict[str, Any],
                     report: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """One trial through loraplan's trial engine; step reports go to Tune."""
    from loraplan.setup import TrainingSetup
    from loraplan.train.engine import TrialSpec, default_setup, run_trial
    from loraplan.train.models import ModelRef

    setup = TrainingSetup.model_validate(common["setup"]) if common.get("setup") else default_setup()
    spec = TrialSpec(
        setup=setup,
        model=ModelRef(common["model"], common["random_init"], common["layers"], common["hidden"],
                       common["trust_remote_code"]),
        data=tuple(common["data"]), tokenizer=common["tokenizer"], steps=common["steps"], lr=trial["lr"],
        rank=trial["rank"] or None, full_finetune=trial["method"] == "full", batch_size=common["batch_size"],
        seq_len=common["seq_len"], seed=trial["seed"],
        on_step=lambda s: _report_evals(s, report),
    )
    record = run_trial(spec)
    metric = record["eval_loss"]
    if metric is None:
        raise SweepError("the trial has no held-out set to score (the data is too small to hold any out)")
    return {"metric": metric, "losses": record["losses"], "eval_curve": record["eval_curve"],
            "tokens_per_s": record["tokens_per_s"]}


def _report_evals(step: dict[str, Any], report: Callable[[dict[str, Any]], None]) -> None:
    """Forward held-out evaluations only: each Tune report is a round trip to the driver that the training
    thread waits for, and the per-step losses reach the store in the trial's final result anyway."""
    if step["eval_loss"] is not None:
        report({"step": step["step"], "loss": step["loss"], "eval_loss": step["eval_loss"]})


def _stored_row(store: str, key: str) -> TrialRow | None:
    """The store's row for `key` when this machine can see the store (a local or shared folder)."""
    try:
        rows = SweepStore(store).rows() if Path(store).is_dir() else []
    except (LoraplanError, OSError):
        return None
    return next((r for r in rows if r["key"] == key), None)


def make_trainable(objective: Objective | None = None) -> Callable[[dict[str, Any]], None]:
    """The Tune function trainable around `objective` (the engine by default)."""
    measure = objective or engine_objective

    def loraplan_trial(config: dict[str, Any]) -> None:
        from ray import tune

        trial = config["trial"]
        done = _stored_row(config["store"], trial["key"])
        if done is not None:  # finished before the driver died, after Tune last saved its state
            tune.report({"final": True, "from_store": True, "metric": done["metric"], "wall_s": done["wall_s"],
                         "tokens_per_s": done.get("tokens_per_s"), "losses": done.get("losses", []),
                         "eval_curve": done.get("eval_curve", [])})
            return
        threads = config.get("threads")
        if threads:
            with contextlib.suppress(ImportError):
                import torch

                torch.set_num_threads(threads)
        start = time.perf_counter()
        result = measure(trial, config["common"], lambda metrics: tune.report({"final": False, **metrics}))
        tune.report({"final": True, "from_store": False, **result, "wall_s": time.perf_counter() - start})

    return loraplan_trial


# ---------------------------------------------------------------- the driver


def _callback_class() -> type:
    from ray.tune import Callback

    class StoreCallback(Callback):
        """Writes each trial to the store the moment Tune sees it finish or fail (driver side)."""

        def __init__(self, store: str, model: str, steps: int, model_config: str | None, echo: bool) -> None:
            self.store, self.model, self.steps, self.model_config, self.echo = store, model, steps, model_config, echo

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._write(trial, trial.last_result or {}, None)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._write(trial, trial.last_result or {}, _error_text(trial))

        def _write(self, trial: Any, result: dict[str, Any], error: str | None) -> None:
            row = trial_row(trial.config["trial"], result, error, self.model, self.steps, self.model_config)
            if SweepStore(self.store).append(row) and self.echo:
                _echo_row(row)

    return StoreCallback


def _error_text(trial: Any) -> str:
    """The last line of the trial's error (the exception message), from Tune's error file."""
    with contextlib.suppress(Exception):
        text = Path(trial.error_file).read_text(encoding="utf-8").strip()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return lines[-1][:500] if lines else "the trial failed"
    return "the trial failed"


def trial_row(trial: dict[str, Any], result: dict[str, Any], error: str | None, model: str, steps: int,
              model_config: str | None) -> TrialRow:
    ok = error is None and result.get("final") and result.get("metric") is not None
    row: TrialRow = {
        "key": trial["key"], "model": model, "method": trial["method"], "lr": trial["lr"], "rank": trial["rank"],
        "seed": trial["seed"], "steps": steps, "metric": float(result["metric"]) if ok else None,
        "status": "ok" if ok else "error", "wall_s": float(result.get("wall_s") or result.get("time_total_s") or 0.0),
        "tokens_per_s": result.get("tokens_per_s"), "round": trial["round"],
        "error": "" if ok else (error or "the trial ended without a final result"),
        "losses": list(result.get("losses") or []), "eval_curve": list(result.get("eval_curve") or []),
    }
    if model_config:
        row["model_config"] = model_config
    return row


def _echo_row(row: TrialRow) -> None:
    from loraplan.output import err_console

    what = "full FT" if row["method"] == "full" else f"rank {row['rank']}"
    result = f"held-out loss {row['metric']:.4f}" if row["status"] == "ok" else f"FAILED: {row['error']}"
    err_console.print(f"  trial {what} lr {row['lr']:.3g} seed {row['seed']}: {result} ({row['wall_s']:.1f} s)",
                      highlight=False, soft_wrap=True)


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """Ray for the sweep: reuse an initialised one, connect to `address`, or start (and stop) a local one."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0
    require("ray.tune", "train", "loraplan sweep")
    import ray

    if ray.is_initialized():
        yield
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address:
        import loraplan

        kwargs["runtime_env"] = {"py_modules": [str(Path(loraplan.__file__).parent)]}
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SweepError(f"cannot connect to the Ray cluster at {address} ({exc})") from exc
    else:
        ray.init(num_cpus=os.cpu_count() or 1, object_store_memory=OBJECT_STORE_BYTES, **kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def _resources(gpus_per_trial: float | None, cpus_per_trial: int | None, trials: int) -> dict[str, float]:
    """What one trial asks Ray for: a GPU where the cluster has any, else CPUs.

    Without `cpus_per_trial`, the CPUs are shared out among the round's trials (at least 1 each, at most
    the largest machine's): a round with fewer trials than CPUs, such as a one-trial sweep or the
    adaptive search's later rounds, then trains each trial on several threads instead of leaving CPUs idle.
    """
    import ray

    cluster = ray.cluster_resources()
    if cluster.get("GPU", 0) > 0 and gpus_per_trial != 0:
        return {"cpu": 1, "gpu": gpus_per_trial or 1}
    if cpus_per_trial:
        return {"cpu": cpus_per_trial}
    total = int(cluster.get("CPU", 1))
    per_machine = max((int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")),
                      default=total)
    return {"cpu": max(1, min(per_machine, total // max(1, trials)))}


def _run_round(store: SweepStore, number: int, trials: list[dict[str, Any]], common: dict[str, Any],
               objective: Objective | None, resources: dict[str, float], model_config: str | None,
               echo: bool) -> None:
    from ray import tune

    trainable = tune.with_resources(make_trainable(objective), resources)
    folder = store.round_dir(number)
    if folder.is_dir() and tune.Tuner.can_restore(str(folder)):
        tuner = tune.Tuner.restore(str(folder), trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False)
    else:
        config = {"trial": tune.grid_search(trials), "common": common, "store": str(store.path),
                  "threads": int(resources.get("cpu", 1))}
        callback = _callback_class()(str(store.path), common["model_name"], common["steps"], model_config, echo)
        tuner = tune.Tuner(trainable, param_space=config, tune_config=tune.TuneConfig(
            reuse_actors=True, trial_dirname_creator=trial_dirname), run_config=tune.RunConfig(
            name=folder.name, storage_path=str(store.path), verbose=0, callbacks=[callback],
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False)))
    # Tune warns when it cannot re-read per-trial result files after a restore; the store has the results.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    grid = tuner.fit()
    for result in grid:  # anything the callback missed (e.g. it ran in a driver that was killed)
        trial = result.config["trial"] if result.config else None
        if trial is None:
            continue
        error = None if result.error is None else (str(result.error).strip().splitlines() or ["failed"])[-1]
        store.append(trial_row(trial, result.metrics or {}, error, common["model_name"], common["steps"],
                               model_config))


def trial_dirname(trial: Any) -> str:
    """Tune's folder for a trial: its store key (short, stable, readable)."""
    return str(trial.config["trial"]["key"])


def run_sweep(spec: SweepSpec, store_path: str | Path, *, address: str | None = None, resume: bool = False,
              objective: Objective | None = None, gpus_per_trial: float | None = None,
              cpus_per_trial: int | None = None, echo: bool = True, model_name: str | None = None) -> SweepOutcome:
    """Run (or resume) the sweep into `store_path`; returns the store's rows and their summary."""
    spec.validate()
    start = time.perf_counter()
    store = SweepStore(store_path)
    if resume and not store.spec_file.is_file():
        raise SweepError(f"--resume: {store.path} holds no sweep to resume")
    existed = store.open(spec.as_dict())
    model_config = keep_model_config(store, spec.model, spec.random_init, spec.layers, spec.hidden, spec.tokenizer,
                                     spec.trust_remote_code) if objective is None else None
    common = {**spec.as_dict(), "model_name": model_name or _describe(spec)}
    lrs_by_method = {"lora": list(spec.lrs), **({"full": list(spec.full_lrs)} if spec.full_lrs else {})}
    step = _grid_step(list(spec.lrs))
    number = 0
    ray_started = False
    with contextlib.ExitStack() as ray_held:  # Ray starts only when a round has trials left to run
        while True:
            trials = spec.trials(lrs_by_method, number)
            done = store.keys()
            missing = [t for t in trials if t["key"] not in done]
            if missing:
                if not ray_started:
                    ray_held.enter_context(ray_session(address))
                    ray_started = True
                resources = _resources(gpus_per_trial, cpus_per_trial, len(missing))
                _run_round(store, number, missing, common, objective, resources, model_config, echo)
            if not spec.adaptive or number + 1 >= spec.max_rounds:
                break
            planned = summarize(r for r in store.rows() if r.get("round", 0) <= number)
            lrs_by_method = next_lrs(planned, step, *LR_BOUNDS)
            if not lrs_by_method:
                break
            number += 1
    rows = store.rows()
    outcome = SweepOutcome(rows, summarize(rows), number + 1, existed, store.path, time.perf_counter() - start)
    if spec.adaptive and any(c.edge for c in outcome.summary.curves):
        outcome.notes.append(f"some optima are still at the grid's edge after {number + 1} round(s); raise "
                             "--max-rounds or widen --lrs")
    return outcome


def _grid_step(lrs: list[float]) -> float:
    """The adaptive step: the median ratio of neighbouring grid LRs (x3 for a one-LR grid)."""
    values = sorted(set(lrs))
    ratios = sorted(b / a for a, b in itertools.pairwise(values))
    return ratios[len(ratios) // 2] if ratios else 3.0


def _describe(spec: SweepSpec) -> str:
    if not spec.random_init:
        return spec.model
    shape = ", ".join(f"{k} {v}" for k, v in (("layers", spec.layers), ("hidden", spec.hidden)) if v)
    return f"{spec.model} (random init{', ' + shape if shape else ''})"
