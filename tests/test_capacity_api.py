"""The capacity Python API takes a data set in place of a token number (issue 3).

Oracles: transformers' own assistant-token mask for the count, the per-rank LoRA count published with
issue 2 for Llama-3.1-8B (mlp 1,769,472 + attn 851,968 + unembed 132,352), and ceil/next-power-of-two by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from loraplan.capacity import check_capacity
from loraplan.errors import LoraplanError
from loraplan.rules.capacity import CapacityStatus

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "examples" / "chat.jsonl"
TOKENIZER = REPO / "examples" / "tokenizer"
LLAMA_PER_RANK = 1_769_472 + 851_968 + 132_352


def hf_assistant_tokens(path: Path) -> int:
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(TOKENIZER))
    total = 0
    for line in path.read_text().splitlines():
        chat = json.loads(line)["messages"]
        out = tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        total += sum(out["assistant_masks"])
    return total


def test_data_in_place_of_a_token_number() -> None:
    pytest.importorskip("tokenizers")
    checked = check_capacity("meta-llama/Llama-3.1-8B", data=DATA, tokenizer=str(TOKENIZER), rank=1)
    assert checked.count is not None and checked.count.trained_tokens == hf_assistant_tokens(DATA)
    assert checked.per_rank == LLAMA_PER_RANK
    assert checked.result.tokens == checked.count.trained_tokens
    assert checked.result.status is CapacityStatus.OK


def test_token_number_and_undercapacity() -> None:
    tokens = 100_000_000
    checked = check_capacity("meta-llama/Llama-3.1-8B", tokens=tokens, rank=32)
    assert checked.result.status is CapacityStatus.UNDERCAPACITY
    lowest = math.ceil(tokens / LLAMA_PER_RANK)
    assert checked.result.min_rank == lowest == 37
    assert checked.result.suggested_rank == 64 and checked.count is None


def test_exactly_one_of_tokens_or_data() -> None:
    with pytest.raises(LoraplanError, match="exactly one"):
        check_capacity("meta-llama/Llama-3.1-8B")
    with pytest.raises(LoraplanError, match="exactly one"):
        check_capacity("meta-llama/Llama-3.1-8B", tokens=5, data=DATA)
    with pytest.raises(LoraplanError, match="rule must be params or bits"):
        check_capacity("meta-llama/Llama-3.1-8B", tokens=5, rule="vibes")
