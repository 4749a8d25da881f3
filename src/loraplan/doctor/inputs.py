"""Inputs of `check` that come from outside the config: trained tokens from a data set, model order.

Counting needs loraplan's token counter (loraplan.data), an optional part built separately; it is
imported only when --data is given, and its absence is said in one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

from loraplan.doctor.findings import Report
from loraplan.errors import LoraplanError, MissingExtraError


@dataclass(frozen=True)
class Counted:
    tokens: int
    examples: int | None
    notes: tuple[str, ...]


def count_tokens(paths: list[str], tokenizer: str | None, max_length: int | None) -> Counted:
    """Trained tokens of `paths` under the trainer's loss mask, by loraplan.data's counter."""
    try:
        from loraplan.data import count_trained_tokens
    except ImportError as exc:
        if exc.name and not exc.name.startswith("loraplan"):
            raise MissingExtraError(f"counting --data needs `{exc.name}`; install it with "
                                    "`pip install 'loraplan[data]'`") from exc
        raise LoraplanError("--data needs loraplan's token counter (loraplan.data.count_trained_tokens), which "
                            "this installation does not have; count the trained tokens and pass --tokens N") from exc
    count = count_trained_tokens(paths, tokenizer, max_length=max_length)
    notes = ("trained tokens estimated from bytes (no tokenizer): pass --tokenizer for a count",) \
        if getattr(count, "estimated", False) else ()
    return Counted(int(count.trained_tokens), getattr(count, "examples", None), notes)


def model_order(report: Report) -> tuple[str, ...]:
    """Target names in the order the fixes list them (model order), for writing lists back."""
    order: dict[str, None] = {}
    for finding in report.findings:
        for value in finding.changes.values():
            if isinstance(value, tuple):
                order.update(dict.fromkeys(v for v in value if isinstance(v, str)))
    return tuple(order)
