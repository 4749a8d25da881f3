"""Numbers at the boundary: as people write them, and checked where they enter a rule.

`fmt_number` prints `3.16e-4`, not `0.00031559445058993953` (JSON keeps full precision).
`positive_finite` refuses what passes the CLI's `min=0` bounds but makes a rule answer nonsense:
`--lr inf`, `--transfer-lr inf`, `--epochs inf` and `--bits-per-token 0` (an infinite LR, infinite
headroom, or a crash deep inside such as `math.ceil(inf)`).
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


def fmt_number(value: float, digits: int = 3) -> str:
    """`digits` significant figures; scientific with a short exponent below 1e-3 or from 1e6.

    3.1559e-4 -> "3.16e-4", 2e-5 -> "2e-5", 0.05 -> "0.05", 128.0 -> "128", 1234567 -> "1.23e6".
    """
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e6:
        return f"{value:.{digits}g}"
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"
