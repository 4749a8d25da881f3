"""Numbers as people write them: `3.16e-4`, not `0.00031559445058993953` (JSON keeps full precision)."""

from __future__ import annotations

import math


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
