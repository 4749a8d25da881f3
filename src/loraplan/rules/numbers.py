"""Numbers from the user are checked where they enter a rule: positive and finite, or a clear refusal.

`--lr inf`, `--transfer-lr inf`, `--epochs inf` and `--bits-per-token 0` pass the CLI's `min=0`
bounds; a rule fed one answers nonsense (an infinite LR, infinite headroom) or crashes deep inside
(`math.ceil(inf)`). Each rule that takes such a number calls `positive_finite` first.
"""

from __future__ import annotations

import math

from loraplan.errors import LoraplanError


def positive_finite(value: float, name: str, at_most: float | None = None) -> float:
    """`value` when it is a finite number > 0 (and <= at_most); else one line naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise LoraplanError(f"{name} must be a positive finite number (got {value!r})")
    if at_most is not None and value > at_most:
        raise LoraplanError(f"{name} must be at most {at_most:g} (got {value:g})")
    return value
