"""Python API for the capacity rule: a model and either a token count or a data set to count.

`loraplan capacity` is a thin shell over `check_capacity`; notebooks and scripts call it directly:

    from loraplan.capacity import check_capacity
    check_capacity("meta-llama/Llama-3.1-8B", data="train.jsonl", tokenizer="./tok").result.status

Counting needs the `data` extra (tokenizers, jinja2); a plain token number needs nothing heavy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loraplan.arch.conventions import Convention, budget
from loraplan.arch.model import Architecture
from loraplan.errors import LoraplanError
from loraplan.rules.capacity import CapacityResult, CapacityRule, validate_capacity

if TYPE_CHECKING:
    from loraplan.data import TokenCount


@dataclass(frozen=True)
class CapacityCheck:
    """The verdict, the per-rank LoRA params it used, and the token count when data was counted."""

    model_id: str
    per_rank: int
    result: CapacityResult
    count: TokenCount | None = None


def check_capacity(
    model: str | Architecture,
    *,
    tokens: int | TokenCount | None = None,
    data: str | Path | Sequence[str | Path] | None = None,
    tokenizer: str | None = None,
    rank: int = 32,
    rule: CapacityRule | str = CapacityRule.PARAMS,
    bits_per_token: float = 1.0,
    convention: Convention | str = Convention.TINKER,
    targets: str | list[str] | None = "all",
    unembed: bool = True,
    trust_remote_code: bool = False,
    **count_options: Any,
) -> CapacityCheck:
    """Does rank `rank` have room for the trained tokens of `tokens` (a number or a TokenCount) or of `data`?

    data: files, folders, globs or a hub data set, counted like `loraplan tokens` (the tokenizer defaults to
        the model's own); `count_options` go to `loraplan.data.count_trained_tokens` (mask, max_length, ...).
    """
    if (tokens is None) == (data is None):
        raise LoraplanError("give exactly one of tokens (already counted) or data (to count)")
    if str(rule) not in {r.value for r in CapacityRule}:
        raise LoraplanError(f"rule must be params or bits (got {rule!r})")
    arch = model if isinstance(model, Architecture) else _load(model, trust_remote_code)
    per_rank = budget(arch, convention, targets, unembed).per_rank_total
    if data is not None:
        count = _count(data, tokenizer, model if isinstance(model, str) else arch.model_id, count_options)
    else:
        count = None if isinstance(tokens, int) else tokens
    trained = count.trained_tokens if count is not None else int(tokens or 0)
    result = validate_capacity(trained, per_rank, rank, rule, bits_per_token)
    return CapacityCheck(arch.model_id, per_rank, result, count)


def _load(model: str, trust_remote_code: bool) -> Architecture:
    from loraplan.arch.sources import load_architecture

    return load_architecture(model, trust_remote_code)


def _count(data: str | Path | Sequence[str | Path], tokenizer: str | None, model: str,
           options: dict[str, Any]) -> TokenCount:
    from loraplan.data import count_trained_tokens
    from loraplan.data.tokenizer import tokenizer_for_model

    return count_trained_tokens(data, tokenizer or tokenizer_for_model(model), **options)
