"""From rendered Works to token positions: one batched encode, then exact bookkeeping.

The prefix oracle needs n(P) for every prompt prefix P of a rendered conversation. Encoding each
prefix again would multiply the work by the number of turns. Instead: the tokenizer splits text
at added tokens (<|im_start|>, <|eot_id|>, <start_of_turn>, ...) before anything else, and each
piece between them is tokenized on its own. So if P is a prefix of the full text F and the last
added token that ends inside P starts at character s and is token j of F, then

    tokens(P) = tokens(F)[:j] + tokens(P[s:])

and P[s:] (e.g. "<|im_start|>assistant\\n") is a short string that repeats across the corpus, so
its count is cached. When no added token helps, or P is not a prefix of F (templates that rewrite
history), P is encoded whole. Tests check every path against the plain re-encoding oracle.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from loraplan.data.masking import Work

Range = tuple[int, int]
_CACHE_LIMIT = 200_000
# char_to_token scans the encoding, so past this many spans one walk over the offsets is cheaper (and linear)
_WALK_SPANS = 64


class Measurer:
    """Encodes batches of Works with the raw `tokenizers` backend (all cores) and finds trained ranges."""

    def __init__(self, backend: Any, added_ids: frozenset[int]) -> None:
        self.backend = backend
        self.added_ids = added_ids
        self.tail_counts: dict[str, int] = {}

    def encode(self, texts: list[str], add_special: bool) -> list[Any]:
        return self.backend.encode_batch(texts, add_special_tokens=add_special) if texts else []

    def measure(self, works: list[Work]) -> list[tuple[int, list[Range]]]:
        """(token count, trained token ranges) per Work, in order."""
        flags = {w.add_special for w in works}
        encodings: list[Any]
        if len(flags) == 1:  # the usual batch: one encode_batch call, no reordering
            encodings = self.encode([w.text for w in works], flags.pop())
        else:
            encodings = [None] * len(works)
            for flag in (False, True):
                idx = [i for i, w in enumerate(works) if w.add_special is flag]
                for i, enc in zip(idx, self.encode([works[i].text for i in idx], flag), strict=True):
                    encodings[i] = enc
        counts = self._prefix_counts(works, encodings) if any(w.bounds for w in works) else {}
        out: list[tuple[int, list[Range]]] = []
        for w, (work, enc) in enumerate(zip(works, encodings, strict=True)):
            n = len(enc)
            if work.spans:
                ranges = _marker_ranges(work, enc, n)
            elif work.bounds:
                ranges = []
                for b in range(len(work.bounds)):
                    start = counts[(w, b, 0)]
                    ranges.append((start, max(start, counts[(w, b, 1)])))
            else:
                ranges = [(0, n)] if work.all_tokens else []
            out.append((n, ranges))
        return out

    def _prefix_counts(self, works: list[Work], encodings: list[Any]) -> dict[tuple[int, int, int], int]:
        """n(P) and n(R) of every bound, keyed by (work, bound, 0 for P / 1 for R)."""
        counts: dict[tuple[int, int, int], int] = {}
        deferred: list[tuple[tuple[int, int, int], int, str]] = []  # count = base + n(tail)
        whole: dict[tuple[str, bool], list[tuple[int, int, int]]] = {}
        for w, (work, enc) in enumerate(zip(works, encodings, strict=True)):
            view: list[Any] = []
            for b, pair in enumerate(work.bounds):
                for which, bound in enumerate(pair):
                    key = (w, b, which)
                    cut = bound if isinstance(bound, int) else len(bound) if work.text.startswith(bound) else None
                    if cut == len(work.text):
                        counts[key] = len(enc)
                        continue
                    split = None
                    if cut is not None and not work.add_special:
                        split = self._split_at_added(work.text, cut, enc, view)
                    if split is None:
                        text = work.text[:cut] if isinstance(bound, int) else bound
                        whole.setdefault((text, work.add_special), []).append(key)
                    else:
                        deferred.append((key, split[0], split[1]))
        missing = list({tail for _, _, tail in deferred if tail not in self.tail_counts})
        for tail, enc in zip(missing, self.encode(missing, False), strict=True):
            self.tail_counts[tail] = len(enc)
        for key, base, tail in deferred:
            counts[key] = base + self.tail_counts[tail]
        for flag in (False, True):
            texts = [t for t, f in whole if f is flag]
            for text, enc in zip(texts, self.encode(texts, flag), strict=True):
                for key in whole[(text, flag)]:
                    counts[key] = len(enc)
        if len(self.tail_counts) > _CACHE_LIMIT:
            self.tail_counts.clear()
        return counts

    def _split_at_added(self, text: str, cut: int, enc: Any, view: list[Any]) -> tuple[int, str] | None:
        """(j, text[s:cut]) for the last added token j of the full encoding that ends inside the prefix text[:cut]."""
        if cut == 0:
            return 0, ""
        last = enc.char_to_token(cut - 1)
        if last is None:
            return None
        if not view:
            view += [enc.ids, enc.offsets]
        ids, offsets = view
        for j in range(last, -1, -1):
            if ids[j] in self.added_ids and offsets[j][1] <= cut:
                return j, text[offsets[j][0]:cut]
        return None


def _marker_ranges(work: Work, enc: Any, n: int) -> list[Range]:
    """transformers' return_assistant_tokens_mask: every token overlapping a generation span, kept spans only.

    transformers (5.x, `apply_chat_template`) walks the tokens once with a pointer into the spans and
    marks a token when it overlaps the first span that ends after the token starts. For spans in
    order and apart (every real template) that is "the token overlaps a span", found here from each
    span's end characters with `char_to_token` plus a step over tokens that share a character
    (an emoji, a CJK character or a flag split over several byte tokens). Anything else (nested or
    empty spans, characters no token covers, records with many turns) takes the literal walk. Tests compare both with
    transformers itself.
    """
    spans = work.spans
    if len(spans) > _WALK_SPANS or any(start >= end for start, end in spans) \
            or any(a[1] > b[0] for a, b in pairwise(spans)):
        return _walk(work, enc)
    ranges: list[Range] = []
    previous_end = 0
    for (start, end), keep in zip(spans, work.keep, strict=True):
        if keep:
            first = enc.char_to_token(start)
            last = enc.char_to_token(end - 1)
            if first is None or last is None:
                return _walk(work, enc)
            while first > 0 and enc.token_to_chars(first - 1)[1] > start:
                first -= 1
            # a token that starts inside the previous span is that span's (transformers' pointer has not moved on)
            while first <= last and enc.token_to_chars(first)[0] < previous_end:
                first += 1
            while last + 1 < n and enc.token_to_chars(last + 1)[0] < end:
                last += 1
            if first <= last:
                ranges.append((first, last + 1))
        previous_end = end
    return _union(ranges)


def _walk(work: Work, enc: Any) -> list[Range]:
    """transformers' own walk over token offsets, literally; a token counts when the span marking it is kept."""
    spans = work.spans
    ranges: list[Range] = []
    span_idx = 0
    for token, (token_start, token_end) in enumerate(enc.offsets):
        while span_idx < len(spans) and token_start >= spans[span_idx][1]:
            span_idx += 1
        if span_idx == len(spans):
            break
        if token_end > spans[span_idx][0] and work.keep[span_idx]:
            if ranges and ranges[-1][1] == token:
                ranges[-1] = (ranges[-1][0], token + 1)
            else:
                ranges.append((token, token + 1))
    return ranges


def _union(ranges: list[Range]) -> list[Range]:
    merged: list[Range] = []
    for start, stop in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged
