"""Tiny trials for the train package: a 2-layer, 64-wide random-init Llama on the example chat corpus.

Every trial here takes a second or two on one CPU core. Torch runs on one thread: on a shared 2-core
machine, two spinning threads are several times slower than one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "examples" / "chat.jsonl"
TOKENIZER = ROOT / "examples" / "tokenizer"
TINY = ["meta-llama/Llama-3.2-1B", "--random-init", "--layers", "2", "--hidden", "64"]


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_spec(**changes):
    """A TrialSpec on the tiny model: 12 steps of 4 x 96 tokens, rank 8, alpha 32, lr 2e-3."""
    from loraplan.train.engine import TrialSpec, default_setup
    from loraplan.train.models import ModelRef

    values = dict(setup=default_setup(), model=ModelRef("meta-llama/Llama-3.2-1B", random_init=True, layers=2,
                                                        hidden=64),
                  data=str(CHAT), tokenizer=str(TOKENIZER), steps=12, lr=2e-3, rank=8, alpha=32, batch_size=4,
                  seq_len=96, device="cpu")
    values.update(changes)
    return TrialSpec(**values)
