"""Trained-token counts equal the oracles, example by example, on ChatML, Llama-3 and Gemma templates.

Oracle with {% generation %} markers: transformers' apply_chat_template(return_assistant_tokens_mask=True).
Oracle without markers: every prefix rendered and tokenized from scratch by transformers
(tests/fixtures/data/support.py). Tokenizers are trained in the test (byte-level BPE for ChatML and
Llama-3, a SentencePiece-like metaspace BPE with NFKC and a BOS post-processor for Gemma).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loraplan.data import count_trained_tokens, load_tokenizer
from loraplan.data.masking import MaskMode, Planner
from loraplan.data.measure import Measurer
from loraplan.data.records import Conversation, PromptCompletion
from loraplan.data.template import ChatTemplate
from tests.fixtures.data.support import (
    STYLES,
    hf_tokenizer,
    marker_oracle,
    prefix_oracle,
    random_conversations,
    tokenizer_dir,
    write_jsonl,
)

CHATS = random_conversations(40, seed=7)


def ours(path: Path, sequences: list, mode: str = "auto") -> list[tuple[int, int]]:
    """(total, trained) per sequence through loraplan's renderer and batched measurement."""
    bundle = load_tokenizer(str(path))
    planner = Planner(ChatTemplate(bundle.chat_template, bundle.special_tokens), MaskMode(mode), "test")
    works = [planner.plan(seq, "test") for seq in sequences]
    measured = Measurer(bundle.backend, bundle.added_ids).measure(works)
    return [(n, sum(stop - start for start, stop in ranges)) for n, ranges in measured]


def conversations(chats: list[list[dict]]) -> list[Conversation]:
    return [Conversation(c, (None,) * len(c)) for c in chats]


def last_run(mask: list[int]) -> int:
    """Length of the last contiguous run of ones: the last assistant span under these templates."""
    end = max((i for i, m in enumerate(mask) if m), default=-1)
    start = end
    while start > 0 and mask[start - 1]:
        start -= 1
    return end - start + 1 if end >= 0 else 0


@pytest.mark.parametrize("style", list(STYLES))
def test_markers_equal_apply_chat_template_mask(style: str) -> None:
    path = tokenizer_dir(style, markers=True)
    hf = hf_tokenizer(path)
    expected = [marker_oracle(hf, chat) for chat in CHATS]
    assert ours(path, conversations(CHATS)) == [(n, sum(mask)) for n, mask in expected]
    assert ours(path, conversations(CHATS), "last") == [(n, last_run(mask)) for n, mask in expected]


@pytest.mark.parametrize("style", list(STYLES))
def test_no_markers_equal_prefix_rendering(style: str) -> None:
    path = tokenizer_dir(style, markers=False)
    hf = hf_tokenizer(path)
    assert ours(path, conversations(CHATS)) == [prefix_oracle(hf, chat) for chat in CHATS]
    last = [[i for i, m in enumerate(c) if m["role"] == "assistant"][-1:] for c in CHATS]
    assert ours(path, conversations(CHATS), "last") == [prefix_oracle(hf, c, t) for c, t in zip(CHATS, last,
                                                                                                  strict=True)]


@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("markers", [True, False])
def test_conversational_prompt_completion_equals_trl_rule(style: str, markers: bool) -> None:
    """TRL: completion tokens = n(prompt + completion) - n(prompt with generation prompt)."""
    path = tokenizer_dir(style, markers=markers)
    hf = hf_tokenizer(path)
    pairs = []
    for chat in CHATS:
        k = max(i for i, m in enumerate(chat) if m["role"] == "assistant")
        pairs.append((chat[:k], chat[k : k + 1]))
    expected = [prefix_oracle(hf, p + c, [len(p)]) for p, c in pairs]
    assert ours(path, [PromptCompletion(p, c) for p, c in pairs]) == expected


@pytest.mark.parametrize("style", ["llama3", "gemma"])
def test_string_prompt_completion_and_text_equal_tokenizer_call(style: str, tmp_path: Path) -> None:
    """Plain strings are tokenized with special tokens (BOS) and EOS appended, as TRL's SFTTrainer does."""
    path = tokenizer_dir(style, markers=True)
    hf = hf_tokenizer(path)
    eos = hf.eos_token
    rows = [{"prompt": c[-2]["content"], "completion": c[-1]["content"]} for c in CHATS if c[-1]["role"] != "user"]
    n_pc = [len(hf(r["prompt"] + r["completion"] + eos)["input_ids"]) for r in rows]
    n_p = [len(hf(r["prompt"])["input_ids"]) for r in rows]
    got = count_trained_tokens(write_jsonl(tmp_path / "pc.jsonl", rows), str(path))
    assert got.total_tokens == sum(n_pc) and got.trained_tokens == sum(n_pc) - sum(n_p)
    texts = [{"text": " ".join(m["content"] for m in c)} for c in CHATS]
    got = count_trained_tokens(write_jsonl(tmp_path / "text.jsonl", texts), str(path))
    expected = sum(len(hf(t["text"] + eos)["input_ids"]) for t in texts)
    assert got.total_tokens == got.trained_tokens == expected and got.trained_by_role == {"text": expected}


@pytest.mark.parametrize("style", list(STYLES))
def test_truncation_keeps_the_first_max_length_tokens(style: str, tmp_path: Path) -> None:
    path = tokenizer_dir(style, markers=True)
    hf = hf_tokenizer(path)
    masks = [marker_oracle(hf, chat)[1] for chat in CHATS]
    limit = sorted(len(m) for m in masks)[len(masks) // 2]
    got = count_trained_tokens(write_jsonl(tmp_path / "d.jsonl", [{"messages": c} for c in CHATS]), str(path),
                               max_length=limit)
    assert got.trained_tokens == sum(sum(m[:limit]) for m in masks)
    assert got.total_tokens == sum(min(len(m), limit) for m in masks)
    assert got.truncated_examples == sum(len(m) > limit for m in masks)
    assert got.truncated_tokens == sum(max(0, len(m) - limit) for m in masks)
    assert got.truncated_trained_tokens == sum(sum(m[limit:]) for m in masks)
    lengths = sorted(len(m) for m in masks)
    assert got.length_max == lengths[-1] and got.length_p50 == lengths[(len(lengths) + 1) // 2 - 1]


@pytest.mark.parametrize("markers", [True, False])
def test_end_to_end_count_matches_oracle_totals(markers: bool, tmp_path: Path) -> None:
    path = tokenizer_dir("chatml", markers=markers)
    hf = hf_tokenizer(path)
    if markers:
        expected = [(n, sum(m)) for n, m in (marker_oracle(hf, c) for c in CHATS)]
    else:
        expected = [prefix_oracle(hf, c) for c in CHATS]
    got = count_trained_tokens(write_jsonl(tmp_path / "d.jsonl", [{"messages": c} for c in CHATS]), str(path))
    assert (got.examples, got.total_tokens, got.trained_tokens) == (
        len(CHATS), sum(n for n, _ in expected), sum(t for _, t in expected))
    assert got.trained_by_role == {"assistant": got.trained_tokens}
    assert not got.estimated and got.method == "exact" and got.format == "messages" and got.mask == "assistant"
