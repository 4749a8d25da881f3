"""TokenCount (what counting returns) and the Tally that builds it in bounded memory.

Lengths are kept as a histogram (length -> sequences), so p50/p95/max are exact for any corpus
size at a cost bounded by the number of distinct lengths.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from loraplan.data.masking import Work

Range = tuple[int, int]
MAX_SKIP_EXAMPLES = 5


@dataclass(frozen=True)
class SideCount:
    """One side of preference data (chosen or rejected): sequences, all tokens, trained tokens."""

    examples: int
    total_tokens: int
    trained_tokens: int


@dataclass(frozen=True)
class ConfidenceInterval:
    """A sampled count's interval at `level` (normal approximation, finite-population corrected)."""

    level: float
    sample_size: int
    population: int
    total_tokens: tuple[int, int]
    trained_tokens: tuple[int, int]


@dataclass(frozen=True)
class TokenCount:
    """What the adapter must learn, counted under a trainer's loss mask.

    examples: records counted (a preference pair is one example of two sequences).
    total_tokens: every token of every sequence after truncation to max_length.
    trained_tokens: tokens that carry loss (mask 1, weight 1) after truncation: the capacity rule's N.
    trained_by_role: trained tokens per role (assistant, completion, chosen, rejected, text; `prompt` under --mask all).
    truncated_examples / truncated_tokens / truncated_trained_tokens: examples longer than max_length, the tokens
        cut off, and how many of those would have been trained.
    untrained_examples: examples that train nothing (weight 0, empty mask): often a template without markers.
    length_p50 / length_p95 / length_max: sequence lengths in tokens before truncation (nearest-rank percentiles).
    skipped / skip_reasons / skip_examples: records left out by --skip-invalid, by reason, with the first messages.
    estimated: True unless every record was tokenized; `method` says how (exact, sample, bytes).
    estimate_error: expected relative error of a byte estimate.
    note: why the count is an estimate, when it was not asked for (e.g. the tokenizer could not be fetched).
    ci: the confidence interval of a sampled count.
    sides: per preference side counts (empty for other formats).
    """

    examples: int
    total_tokens: int
    trained_tokens: int
    trained_by_role: Mapping[str, int]
    truncated_examples: int
    truncated_tokens: int
    truncated_trained_tokens: int
    untrained_examples: int
    length_p50: int
    length_p95: int
    length_max: int
    skipped: int = 0
    skip_reasons: Mapping[str, int] = field(default_factory=dict)
    skip_examples: tuple[str, ...] = ()
    estimated: bool = False
    method: str = "exact"
    estimate_error: float | None = None
    ci: ConfidenceInterval | None = None
    sides: Mapping[str, SideCount] = field(default_factory=dict)
    format: str = ""
    mask: str = ""
    max_length: int | None = None
    tokenizer: str | None = None
    note: str | None = None

    @property
    def loss_mask(self) -> str:
        """The mask mode(s) applied, e.g. 'assistant' (the planner's name for `mask`)."""
        return self.mask

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (the `--json` payload)."""
        return asdict(self)


def percentile(hist: Mapping[int, int], q: float) -> int:
    """Nearest-rank percentile of a length histogram: the smallest length covering q of the sequences."""
    total = sum(hist.values())
    if total == 0:
        return 0
    rank = max(1, math.ceil(q * total))
    seen = 0
    for length in sorted(hist):
        seen += hist[length]
        if seen >= rank:
            return length
    return max(hist)


class Tally:
    """Running sums over examples; `keep_records` also keeps per-example (total, trained) for sampling."""

    def __init__(self, max_length: int | None, keep_records: bool = False) -> None:
        self.max_length = max_length
        self.examples = self.total = self.trained = 0
        self.truncated_examples = self.truncated_tokens = self.truncated_trained = self.untrained = 0
        self.by_role: Counter[str] = Counter()
        self.lengths: Counter[int] = Counter()
        self.sides: dict[str, list[int]] = {}
        self.skip_reasons: Counter[str] = Counter()
        self.skip_examples: list[str] = []
        self.records: list[tuple[int, int]] | None = [] if keep_records else None
        self.format = ""
        self.masks: set[str] = set()

    def skip(self, reason: str, message: str) -> None:
        self.skip_reasons[reason] += 1
        if len(self.skip_examples) < MAX_SKIP_EXAMPLES:
            self.skip_examples.append(message)

    def add_example(self, measured: list[tuple[Work, int, list[Range]]]) -> None:
        """One record: its sequences with token counts and trained ranges."""
        limit = self.max_length if self.max_length is not None else math.inf
        ex_total = ex_trained = 0
        truncated = False
        for work, n, ranges in measured:
            self.lengths[n] += 1
            kept = int(min(n, limit))
            truncated |= n > kept
            role_kept = sum(max(0, min(stop, limit) - start) for start, stop in ranges)
            role_full = sum(stop - start for start, stop in ranges)
            if work.weight == 0:
                trained, full_trained = 0, 0
            elif work.all_tokens:
                trained, full_trained = kept, n
                self.by_role[work.role] += int(role_kept)
                self.by_role["prompt"] += max(0, kept - int(role_kept))
            else:
                trained, full_trained = int(role_kept), role_full
                self.by_role[work.role] += trained
            self.truncated_tokens += n - kept
            self.truncated_trained += full_trained - trained
            ex_total += kept
            ex_trained += trained
            if work.side is not None:
                side = self.sides.setdefault(work.side, [0, 0, 0])
                side[0] += 1
                side[1] += kept
                side[2] += trained
        self.examples += 1
        self.total += ex_total
        self.trained += ex_trained
        self.truncated_examples += truncated
        self.untrained += ex_trained == 0
        if self.records is not None:
            self.records.append((ex_total, ex_trained))

    def merge(self, other: Tally) -> None:
        """Add another tally (a worker's batch) to this one."""
        self.examples += other.examples
        self.total += other.total
        self.trained += other.trained
        self.truncated_examples += other.truncated_examples
        self.truncated_tokens += other.truncated_tokens
        self.truncated_trained += other.truncated_trained
        self.untrained += other.untrained
        self.by_role.update(other.by_role)
        self.lengths.update(other.lengths)
        for side, counts in other.sides.items():
            mine = self.sides.setdefault(side, [0, 0, 0])
            mine[:] = [a + b for a, b in zip(mine, counts, strict=True)]
        self.skip_reasons.update(other.skip_reasons)
        self.skip_examples += other.skip_examples[: MAX_SKIP_EXAMPLES - len(self.skip_examples)]
        if self.records is not None and other.records is not None:
            self.records += other.records
        self.format = self.format or other.format
        self.masks |= other.masks

    def result(self, **extra: Any) -> TokenCount:
        return TokenCount(
            examples=self.examples, total_tokens=self.total, trained_tokens=self.trained,
            trained_by_role={k: v for k, v in sorted(self.by_role.items()) if v or k != "prompt"},
            truncated_examples=self.truncated_examples, truncated_tokens=self.truncated_tokens,
            truncated_trained_tokens=self.truncated_trained, untrained_examples=self.untrained,
            length_p50=percentile(self.lengths, 0.5), length_p95=percentile(self.lengths, 0.95),
            length_max=max(self.lengths, default=0), skipped=sum(self.skip_reasons.values()),
            skip_reasons=dict(self.skip_reasons), skip_examples=tuple(self.skip_examples),
            sides={k: SideCount(*v) for k, v in sorted(self.sides.items())}, max_length=self.max_length,
            **{"format": self.format, "mask": ",".join(sorted(self.masks)), **extra})
