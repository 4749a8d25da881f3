"""How much one record, one document and one template render may cost, and how to raise it.

Data sets come from anywhere, so every amplifier has a bound that a real corpus does not reach
and a hostile one hits within seconds, in bounded memory: a zstd bomb, a 2 GB single-line
record, a chat template that multiplies strings or loops 10^10 times, a conversation whose
prefix rule would render gigabytes. Exceeding a bound is that record's error (file and line),
skipped under --skip-invalid; `loraplan tokens --max-record-bytes N` and `--max-render-seconds S`
raise the two that a legitimate corpus might need raised, and everything else scales with them.
"""

from __future__ import annotations

from dataclasses import dataclass

from loraplan.data.errors import DataError

MIB = 2**20


@dataclass(frozen=True)
class DataLimits:
    """Per-record bounds; the derived ones scale with `record_bytes` so one knob raises them together.

    record_bytes: one JSONL line or CSV row, after decompression (64 MiB: the longest real chat records,
        agent traces with tool output, are a few MiB).
    render_seconds: wall time to render one record's chat template (every prefix included); normal records
        render in microseconds.
    loop_items: items that `range()` may hand out in one render (Jinja's own cap is 100,000 per call, not per
        render: nested ranges multiply).
    """

    record_bytes: int = 64 * MIB
    render_seconds: float = 10.0
    loop_items: int = 1_000_000

    def __post_init__(self) -> None:
        if not (isinstance(self.record_bytes, int) and self.record_bytes > 0):
            raise DataError(f"--max-record-bytes must be a positive integer, got {self.record_bytes!r}")
        seconds = self.render_seconds
        if not (isinstance(seconds, int | float) and 0 < seconds < float("inf")):
            raise DataError(f"--max-render-seconds must be a positive finite number, got {seconds!r}")
        if not (isinstance(self.loop_items, int) and self.loop_items > 0):
            raise DataError(f"loop_items must be a positive integer, got {self.loop_items!r}")

    @property
    def document_bytes(self) -> int:
        """A `.json` document is parsed whole (about 5-10x its size in Python objects): 4 records' worth."""
        return 4 * self.record_bytes

    @property
    def rendered_chars(self) -> int:
        """A template's output, and any string or list it builds, for one render: 4 records' worth."""
        return 4 * self.record_bytes

    @property
    def prefix_chars(self) -> int:
        """Characters the prefix rule may render for one record (every prefix of every trained turn)."""
        return 4 * self.record_bytes


DEFAULT_LIMITS = DataLimits()


class RenderTimeout(BaseException):
    """Raised inside a render that ran past its time limit by loraplan.data.sandbox's watchdog.

    A BaseException, so that no template code or library `except Exception` swallows it; it lives here,
    not in sandbox.py, so that catching it does not import Jinja.
    """
