"""Short training runs on the user's own model and data (optional extra `loraplan[train]`).

    engine.py    TrialSpec -> run_trial -> TrialRecord: the one trial engine (run, validate and sweeps use it)
    trainer.py   the trial on transformers' Trainer (+ PEFT), measurements read back from its logs
    models.py    model references: GGUF, random-init catalogue architectures (shrunk), folders and hub ids
    batches.py   loraplan.data's rendering + loss mask -> input_ids and labels (-100 outside the mask)
    health.py    LoraHealthCallback: adapter update norms via r x r Grams, warnings with the fix

Importing this package imports neither torch nor transformers; the names below load them on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LoraHealthCallback", "ModelRef", "StepReport", "TrialRecord", "TrialSpec", "run_trial"]


def __getattr__(name: str) -> Any:
    if name == "LoraHealthCallback":
        from loraplan.errors import require

        require("transformers", "train", "LoraHealthCallback")
        from loraplan.train.health import LoraHealthCallback

        return LoraHealthCallback
    if name == "ModelRef":
        from loraplan.train.models import ModelRef

        return ModelRef
    if name in ("StepReport", "TrialRecord", "TrialSpec", "run_trial"):
        from loraplan.train import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'loraplan.train' has no attribute {name!r}")
