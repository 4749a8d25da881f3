"""A Jinja sandbox that bounds work as well as access, and a per-record time limit.

Jinja's sandbox blocks escapes (private attributes, unsafe callables) but not work: a chat
template from a model repo can ask for `'x' * 10**10`, `tojson(indent=10**9)`, nested
`range(100000)` loops or a recursive macro. This environment refuses, before the work is done,
every operation whose result could outgrow the render budget (`DataLimits.rendered_chars`):

- `*` and `**` project the result's size first; `+` and `%`, every filter, every call and every
  string concatenation (`~`, `{% set %}` blocks, macro output) check it after (each grows at most a
  few times its inputs, so memory stays a small multiple of the budget);
- width-taking operations (`center`, `ljust`, `rjust`, `zfill`, `indent`, printf and `format` widths,
  `replace`, `join`, `batch`, `lipsum`, `tojson` indent) are checked before they allocate;
- `range()` hands out at most `DataLimits.loop_items` items per record;
- a render that runs past `DataLimits.render_seconds` is interrupted: by a SIGALRM timer on the main
  thread, elsewhere by a watchdog thread (CPython's PyThreadState_SetAsyncExc); either way the
  exception lands at the next bytecode, so pure-Python loops stop.

A limit hit raises RenderLimitError, a TemplateError: the caller turns it into the record's error.
"""

from __future__ import annotations

import ctypes
import re
import signal
import string
import threading
import time
import types
from collections.abc import Callable
from functools import wraps
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from loraplan.data.limits import DataLimits, RenderTimeout

INT_BITS = 1 << 17  # 131,072 bits (~40,000 digits): far past any number a chat template prints
MAX_WIDTH = 100_000  # a field width or indent; templates use single digits
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?")
_WIDENING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "replace", "join"})


class RenderLimitError(TemplateError):
    """A template asked for more than the render budget."""


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """transformers' sandbox with every amplifying operation bounded by `limits`."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, limits: DataLimits, **options: Any) -> None:
        super().__init__(**options)
        self.limits = limits
        self.max_chars = limits.rendered_chars
        self.range_items = 0  # handed out since the record began (reset by ChatTemplate.record)
        self.globals["range"] = self._range
        self.globals["lipsum"] = self._lipsum
        for name, func in list(self.filters.items()):
            self.filters[name] = self._bounded_filter(name, func)
        self.filters["join"] = self._bounded_filter("join", self._join_filter(self.filters["join"]))

    # -- sizes -------------------------------------------------------------------------------------
    def check(self, value: Any, what: str = "a value") -> Any:
        """`value` unchanged, or RenderLimitError when it is a string or collection over the budget."""
        if isinstance(value, str | bytes | list | tuple | dict) and len(value) > self.max_chars:
            raise RenderLimitError(f"the template built {what} of {len(value):,} items, more than the "
                                   f"{self.max_chars:,} allowed (4 x --max-record-bytes)")
        if type(value) is int and value.bit_length() > INT_BITS:
            raise RenderLimitError(f"the template built an integer of {value.bit_length():,} bits")
        return value

    def refuse_over(self, projected: int, what: str) -> None:
        if projected > self.max_chars:
            raise RenderLimitError(f"the template asked for {what} of about {projected:,} items, more than the "
                                   f"{self.max_chars:,} allowed (4 x --max-record-bytes)")

    # -- operators, calls, concatenation -------------------------------------------------------------
    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "+" and type(left) is str is type(right):  # the hot case: templates join strings with +
            if len(left) + len(right) > self.max_chars:
                self.refuse_over(len(left) + len(right), "the result of '+'")
            return left + right
        if operator == "*":
            self._project_product(left, right)
        elif operator == "**" and type(left) is int and type(right) is int and right > 0 and abs(left) > 1:
            if left.bit_length() * right > INT_BITS:
                raise RenderLimitError(f"the template asked for {left} ** {right}, an integer over {INT_BITS:,} bits")
        elif operator == "%" and isinstance(left, str):
            self._check_printf(left, right)
        elif operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            self.refuse_over(len(left) + len(right), "the result of '+'")
        return self.check(self.binop_table[operator](left, right), f"the result of '{operator}'")

    def _project_product(self, left: Any, right: Any) -> None:
        if type(left) is int and type(right) is int:
            if left.bit_length() + right.bit_length() > INT_BITS:
                raise RenderLimitError(f"the template multiplied integers of over {INT_BITS:,} bits")
            return
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | bytes | list | tuple) and isinstance(times, int):
                self.refuse_over(len(seq) * times, "a repeated sequence")

    def _check_printf(self, fmt: str, args: Any) -> None:
        for width, precision in _PRINTF.findall(fmt):
            if "*" in (width, precision) or int(width or 0) > MAX_WIDTH or int(precision or 0) > MAX_WIDTH:
                raise RenderLimitError(f"the template's format {fmt[:40]!r} asks for a field wider than "
                                       f"{MAX_WIDTH:,}")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if type(__obj) is types.BuiltinMethodType and isinstance(__obj.__self__, str) \
                and __obj.__name__ in _WIDENING_METHODS:
            if __obj.__name__ == "join" and args and not isinstance(args[0], list | tuple):
                args = (__self._bounded_list(args[0]), *args[1:])  # a generator: its size must be known first
            __self._project_method(__obj.__self__, __obj.__name__, args, kwargs)
        return __self.check(super().call(__context, __obj, *args, **kwargs), "a call's result")

    def _bounded_list(self, items: Any) -> list[Any]:
        out = []
        for item in items:
            out.append(item)
            if len(out) > self.max_chars:
                self.refuse_over(len(out), "a sequence")
        return out

    def _project_method(self, text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        first = args[0] if args else None
        if name in ("center", "ljust", "rjust", "zfill") and isinstance(first, int):
            self.refuse_over(first, f"str.{name}({first})")
        elif name == "expandtabs":
            size = first if isinstance(first, int) else kwargs.get("tabsize", 8)
            self.refuse_over(len(text) + text.count("\t") * (size if isinstance(size, int) else 0), "str.expandtabs")
        elif name == "replace" and len(args) > 1 and isinstance(first, str) and isinstance(args[1], str):
            self.refuse_over(_replaced_size(text, first, args[1]), "str.replace")
        elif name == "join" and isinstance(first, list | tuple):
            self.refuse_over(_joined_size(first, text), "str.join")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            for _, _, spec, _ in string.Formatter().parse(fmt):
                if spec and ("{" in spec or any(int(n) > MAX_WIDTH for n in re.findall(r"\d+", spec))):
                    raise RenderLimitError(f"the template's format {fmt[:40]!r} asks for a field wider than "
                                           f"{MAX_WIDTH:,} (or a computed width)")
            return self.check(wrapped(*args, **kwargs), "a formatted string")

        return checked

    def concat(self, parts: Any) -> str:  # type: ignore[override]  # Environment.concat is "".join
        parts = list(parts)
        self.refuse_over(sum(map(len, parts)), "a captured block")
        return "".join(parts)

    def str_join(self, values: Any) -> str:
        """The `~` operator (Jinja's runtime.str_join), bounded."""
        parts = [str(v) for v in values]
        self.refuse_over(sum(map(len, parts)), "a '~' concatenation")
        return "".join(parts)

    def markup_join(self, values: Any) -> str:
        """The `~` operator under autoescape (unused by chat templates), bounded after the fact."""
        from jinja2.runtime import markup_join

        return self.check(markup_join(values), "a '~' concatenation")

    # -- globals and filters ---------------------------------------------------------------------------
    def _range(self, *args: int) -> range:
        items = range(*args)
        self.range_items += len(items)
        if self.range_items > self.limits.loop_items:
            raise RenderLimitError(f"the template's range() calls handed out over {self.limits.loop_items:,} "
                                   "items for one record")
        return items

    def _lipsum(self, n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        from jinja2.utils import generate_lorem_ipsum

        self.refuse_over(int(n) * int(max) * 12, "lipsum text")
        return generate_lorem_ipsum(n, html, min, max)

    def _join_filter(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """Jinja's `join`, with the items (a generator, a range) listed and measured before joining."""
        from jinja2.utils import pass_eval_context

        @pass_eval_context
        def join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
            items = self._bounded_list(value)
            self.refuse_over(_joined_size(items, str(d)), "the 'join' filter's output")
            return original.__wrapped__(eval_ctx, items, d, attribute)

        return join

    def _bounded_filter(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        project = _FILTER_PROJECTIONS.get(name)

        @wraps(func)  # keeps jinja_pass_arg, so Jinja still passes the context/environment first
        def bounded(*args: Any, **kwargs: Any) -> Any:
            if project is not None:
                self.refuse_over(project(_filter_args(func, args), kwargs), f"the '{name}' filter's output")
            return self.check(func(*args, **kwargs), f"the '{name}' filter's output")

        return bounded


def _filter_args(func: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The filter's own arguments (value first), without the context Jinja passes to some filters."""
    return args[1:] if getattr(func, "jinja_pass_arg", None) is not None else args


def _replaced_size(text: str, old: str, new: str) -> int:
    occurrences = len(text) + 1 if old == "" else text.count(old)
    return len(text) + occurrences * (len(new) - len(old))


def _joined_size(items: Any, separator: str) -> int:
    items = items if isinstance(items, list | tuple) else []
    return sum(len(i) if isinstance(i, str) else 1 for i in items) + max(0, len(items) - 1) * len(separator)


def _width(value: Any) -> int:
    return value if isinstance(value, int) else len(value) if isinstance(value, str) else 0


def _lines(value: Any) -> int:
    return str(value).count("\n") + 1 if isinstance(value, str) else 1


def _printf_width(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    fmt = args[0] if args and isinstance(args[0], str) else ""
    wide = [int(n) for w, p in _PRINTF.findall(fmt) for n in (w, p) if n.isdigit()]
    return max(wide, default=0) * 2 if not any("*" in w + p for w, p in _PRINTF.findall(fmt)) else 1 << 62


_FILTER_PROJECTIONS: dict[str, Callable[[tuple[Any, ...], dict[str, Any]], int]] = {
    "center": lambda a, k: _width(a[1] if len(a) > 1 else k.get("width", 80)),
    "indent": lambda a, k: len(str(a[0])) + _lines(a[0]) * _width(a[1] if len(a) > 1 else k.get("width", 4)),
    "format": _printf_width,
    "replace": lambda a, k: _replaced_size(str(a[0]), str(a[1]), str(a[2])) if len(a) > 2 else 0,
    "batch": lambda a, k: _width(a[1] if len(a) > 1 else k.get("linecount", 0)),
    "wordwrap": lambda a, k: len(str(a[0])) * (1 + len(str(k.get("wrapstring") or (a[3] if len(a) > 3 else "")))),
}


# -- the per-record time limit ---------------------------------------------------------------------------
class Watchdog:
    """Interrupts a render once it passes its deadline.

    On the main thread (worker processes, and every serial caller) a SIGALRM timer does it when nobody
    else uses SIGALRM: a helper thread would cost every later allocation its lock, since glibc's malloc
    skips locking only while a process has one thread (measured: the Rust tokenizer's `encode_batch`
    runs 7% slower in a process that ever started a second thread). Elsewhere (the serial count renders
    on a background thread) one daemon thread per process watches every thread's deadline.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[int, list[Any]] = {}  # thread id -> [deadline, fired]
        self._thread: threading.Thread | None = None
        self._raise = getattr(getattr(ctypes, "pythonapi", None), "PyThreadState_SetAsyncExc", None)
        if self._raise is not None:
            self._raise.argtypes = [ctypes.c_ulong, ctypes.py_object]
            self._raise.restype = ctypes.c_int
        self._alarm_armed = False  # a SIGALRM timer of ours is running for the main thread's render
        self._alarm_used = False

    def start(self, seconds: float) -> None:
        """From now, this thread's render may run `seconds`; past that, RenderTimeout is raised in it."""
        if self._alarm_free():
            self._alarm_used = self._alarm_armed = True
            signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, seconds)
            return
        if self._raise is None:  # not CPython: the operation bounds above still hold
            return
        tid = threading.get_ident()
        with self._lock:
            self._jobs[tid] = [time.monotonic() + seconds, False]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="loraplan-render-watchdog", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """The render is over; a timeout fired but not yet delivered is withdrawn."""
        if self._alarm_used and threading.current_thread() is threading.main_thread():
            self._alarm_armed = False  # first: an alarm arriving from here on is ignored
            self._alarm_used = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            return
        if self._raise is None:
            return
        tid = threading.get_ident()
        with self._lock:
            job = self._jobs.pop(tid, None)
            if job is not None and job[1]:
                self._raise(tid, ctypes.py_object())  # a NULL exception clears one not yet delivered

    def _alarm_free(self) -> bool:
        """Whether this render can use a SIGALRM timer: main thread, and SIGALRM unused by anyone else."""
        return (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, self._on_alarm))

    def _on_alarm(self, signum: int, frame: Any) -> None:
        if self._alarm_armed:
            self._alarm_armed = False
            raise RenderTimeout

    def _run(self) -> None:
        """Sleep until the earliest deadline (at most 1 s, so a newly armed shorter limit is seen), then fire."""
        while True:
            now = time.monotonic()
            earliest = now + 1.0
            with self._lock:
                for tid, job in self._jobs.items():
                    if not job[1] and now > job[0]:
                        job[1] = True
                        self._raise(tid, RenderTimeout)
                    elif not job[1]:
                        earliest = min(earliest, job[0])
            time.sleep(min(1.0, max(0.01, earliest - now)))


WATCHDOG = Watchdog()
