"""The fallback when no tokenizer can be had (offline, gated): an estimate from UTF-8 bytes.

English prose runs at about 4 bytes per token under the 32k-256k BPE vocabularies of current
models; code and non-Latin scripts run lower, tiny vocabularies higher, so the result is an
estimate (TokenCount.estimated, method "bytes") with an expected error of about 25 %, never a
count. Each message adds a few template tokens (role header, end of turn), as OpenAI's own
token-counting recipe assumes.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any

from loraplan.data.counting import CountOptions, Examples, plan_batches
from loraplan.data.errors import InvalidRecordError
from loraplan.data.masking import MaskMode, Work, resolve_mask
from loraplan.data.records import Conversation, Message, PromptCompletion, Sequence, Text
from loraplan.data.result import Tally, TokenCount
from loraplan.data.sampling import reservoir, scale_sample
from loraplan.data.sources import DataSet

BYTES_PER_TOKEN = 4.0
EXPECTED_ERROR = 0.25
TEMPLATE_TOKENS_PER_MESSAGE = 4


def estimate_from_bytes(dataset: DataSet, options: CountOptions, tokenizer: str | None, note: str | None,
                        sample: int | None, seed: int) -> TokenCount:
    """Byte-based counts of the same records under the same mask; `note` says why no tokenizer was used."""
    tally = Tally(options.max_length, keep_records=sample is not None)
    records: Any = dataset
    population = 0
    if sample is not None:
        records, population = reservoir(dataset, sample, seed)
        random.Random(seed).shuffle(records)
    planner = _BytePlanner(options.mask)
    examples = Examples(options.record_format, None)
    for batch in plan_batches(records, examples, planner, tally, options.skip_invalid):
        for _, estimates in batch:
            tally.add_example([(e.work, e.tokens, e.ranges) for e in estimates])
    tally.format, tally.masks = examples.fmt.value, planner.resolved
    result = tally.result(tokenizer=tokenizer, estimated=True, method="bytes", estimate_error=EXPECTED_ERROR,
                          note=note or "no tokenizer given")
    return scale_sample(result, tally, population) if sample is not None else result


def tokens_of(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


def _content_text(message: Message) -> str:
    content = message.get("content")
    if isinstance(content, list):
        content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    text = content if isinstance(content, str) else ""
    if message.get("tool_calls"):
        text += json.dumps(message["tool_calls"], ensure_ascii=False)
    return text


@dataclass(slots=True)
class _Estimate:
    """A sequence's estimated length and trained ranges, with the Work that labels them."""

    work: Work
    tokens: int
    ranges: list[tuple[int, int]]


class _BytePlanner:
    """Lays messages out in estimated tokens: header + content + end of turn, trained ranges where masked."""

    def __init__(self, mode: MaskMode) -> None:
        self.mode = mode
        self.resolved: set[str] = set()

    def plan(self, seq: Sequence, where: str, weight: int = 1) -> _Estimate:
        mode = resolve_mask(self.mode, seq)
        self.resolved.add(mode.value)
        if isinstance(seq, Text):
            n = tokens_of(seq.text)
            return self._work("text", n, [(0, n)], True, weight, None)
        if isinstance(seq, PromptCompletion):
            prompt_n = _messages_tokens(seq.prompt) if isinstance(seq.prompt, list) else tokens_of(seq.prompt)
            comp_n = (_messages_tokens(seq.completion) if isinstance(seq.completion, list)
                      else tokens_of(seq.completion))
            side = seq.side if seq.side in ("chosen", "rejected") else None
            return self._work(seq.side, prompt_n + comp_n, [(prompt_n, prompt_n + comp_n)],
                              mode is MaskMode.ALL, weight, side)
        return self._conversation(seq, mode, weight, where)

    def _conversation(self, seq: Conversation, mode: MaskMode, weight: int, where: str) -> _Estimate:
        turns = [i for i, m in enumerate(seq.messages) if m["role"] == "assistant"]
        if not turns and mode is not MaskMode.ALL:
            raise InvalidRecordError(where, "no assistant turn: nothing would be trained (use --mask all to count "
                                     "every token)", "no assistant turn")
        trained = set(turns[-1:] if mode is MaskMode.LAST else turns)
        pos, ranges = 0, []
        for i, message in enumerate(seq.messages):
            header = TEMPLATE_TOKENS_PER_MESSAGE - 1
            body = tokens_of(_content_text(message)) + 1
            if i in trained and seq.weights[i] != 0:
                ranges.append((pos + header, pos + header + body))
            pos += header + body
        return self._work("assistant", pos, ranges, mode is MaskMode.ALL, weight, None)

    @staticmethod
    def _work(role: str, n: int, ranges: list[tuple[int, int]], all_tokens: bool, weight: int,
              side: str | None) -> _Estimate:
        return _Estimate(Work("", False, role, all_tokens=all_tokens, side=side, weight=weight), n, ranges)


def _messages_tokens(messages: list[Message]) -> int:
    return sum(TEMPLATE_TOKENS_PER_MESSAGE + tokens_of(_content_text(m)) for m in messages)
