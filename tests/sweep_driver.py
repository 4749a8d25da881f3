"""A sweep driver run as its own process by the kill-and-resume test:

    python tests/sweep_driver.py STORE EXECUTIONS ADDRESS

It connects to the test session's Ray at ADDRESS (as `loraplan sweep --address` does), so killing it
leaves no Ray processes behind, and sweeps the synthetic objective slowly enough to be killed mid-sweep.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ray import cloudpickle

import tests.sweep_objectives as objectives
from loraplan.train.sweep import SweepSpec, run_sweep

cloudpickle.register_pickle_by_value(objectives)
LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


def main(store: str, executions: str, address: str) -> None:
    spec = SweepSpec(model="synthetic", data=("none",), lrs=LRS, ranks=(4, 16), steps=2)
    objective = objectives.slow(str(Path(executions).absolute()))
    run_sweep(spec, store, objective=objective, echo=False, address=address)


if __name__ == "__main__":
    main(*sys.argv[1:4])
