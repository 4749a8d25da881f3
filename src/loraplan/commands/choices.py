"""Unknown values: every valid one listed, and the closest named ("did you mean").

A typo at the prompt should cost one glance: the message names what was given, what is close, and
all that is valid. Model ids are matched against the bundled catalogue (case-insensitive, on the
whole id and on the name after the organisation).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from enum import Enum
from typing import TypeVar

from loraplan.errors import LoraplanError

E = TypeVar("E", bound=Enum)


def did_you_mean(value: str, options: Iterable[str], cutoff: float = 0.6) -> list[str]:
    """The options closest to `value`, best first (case-insensitive)."""
    by_lower = {option.lower(): option for option in options}
    return [by_lower[m] for m in difflib.get_close_matches(value.lower(), list(by_lower), n=3, cutoff=cutoff)]


def choose(value: str, options: Iterable[str], option: str) -> str:
    """`value` when it is one of `options`, else an error listing them all and the closest."""
    valid = list(options)
    if value in valid:
        return value
    close = did_you_mean(value, valid)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise LoraplanError(f"{option} must be one of {', '.join(valid)} (got {value!r}){hint}")


def choose_enum(enum: type[E], value: str, option: str) -> E:
    """The member of `enum` whose value is `value`, else the listing error of `choose`."""
    return enum(choose(value, [str(m.value) for m in enum], option))


def model_suggestions(reference: str) -> list[str]:
    """Catalogue ids close to a model reference that resolved to nothing."""
    from loraplan.arch.sources import catalog

    ids = [entry.model_id for entry in catalog().values()]
    whole = did_you_mean(reference, ids, cutoff=0.75)
    names = {model_id.split("/", 1)[-1]: model_id for model_id in ids}
    by_name = [names[n] for n in did_you_mean(reference.rsplit("/", 1)[-1], names, cutoff=0.75)]
    return list(dict.fromkeys([*whole, *by_name]))[:3]
