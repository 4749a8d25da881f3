"""Chat templates rendered exactly as transformers renders them, with assistant spans tracked.

transformers compiles a template in a sandboxed Jinja environment (trim_blocks, lstrip_blocks,
loopcontrols, its own `tojson`, `raise_exception`, `strftime_now`) and records the character
span of every `{% generation %}` block while it streams the output. We rebuild the same
environment (without importing transformers, which would import torch) so that rendering a
conversation costs one template call and no tokenizer round-trip; the tests prove the text and
the spans equal `apply_chat_template`'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from itertools import islice
from types import TracebackType
from typing import Any

from loraplan.data.errors import TokenizerError
from loraplan.data.limits import DEFAULT_LIMITS, DataLimits

GENERATION_TAG = re.compile(r"\{\%-?\s*generation\s*-?\%\}")
# Names under which a message's reasoning arrives; templates read `reasoning_content` (and gpt-oss `thinking`).
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")

Span = tuple[int, int]


def has_generation_markers(template: str) -> bool:
    """True when the template marks trained text with {% generation %} ... {% endgeneration %}."""
    return GENERATION_TAG.search(template) is not None


class ChatTemplate:
    """A compiled chat template; `render` returns the text and the generation spans in it.

    Fast path: each generation block emits two private-use marker characters around its output;
    one `render` gives the text, and the markers' positions give the spans. When a record itself
    contains a marker character, or the template nests generation blocks (transformers measures an
    inner span from where the enclosing block started), it is rendered the way transformers does it
    (streamed output, spans measured as blocks are yielded).

    Rendering runs in loraplan.data.sandbox's bounded sandbox: `limits` bounds each render's output
    and work, and `record()` gives one record's renders a shared time and loop budget. `name` (the
    tokenizer or template file) is named in errors.
    """

    def __init__(self, source: str, special_tokens: Mapping[str, str], limits: DataLimits = DEFAULT_LIMITS,
                 name: str = "the chat template") -> None:
        self.source = source
        self.name = name
        self.limits = limits
        self.markers = has_generation_markers(source)
        self._special_tokens = dict(special_tokens)
        fast, marked = _compile(source, True, limits)
        self._fast = None if marked.nested or _holds_marker(self._special_tokens) else fast
        self._fast_globals = dict(fast.globals)
        self._exact, self._tracker = _compile(source, False, limits)
        self._environments = (fast.environment, self._exact.environment)
        from loraplan.data.sandbox import WATCHDOG  # imported with Jinja by _compile above

        self._watchdog = WATCHDOG

    def record(self) -> ChatTemplate:
        """A context for one record's renders (every prefix included): they share `limits.render_seconds` and
        the range budget; past the time, RenderTimeout (loraplan.data.limits) is raised inside the context."""
        return self

    def __enter__(self) -> None:
        for env in self._environments:
            env.range_items = 0
        self._watchdog.start(self.limits.render_seconds)

    def __exit__(self, *exc: object) -> None:
        self._watchdog.stop()

    def timeout_error(self) -> TokenizerError:
        return TokenizerError(f"{self.name} took over {self.limits.render_seconds:g} s on this record (the "
                              "--max-render-seconds limit)")

    def render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False,
               tools: list[Any] | None = None, extra: Mapping[str, Any] | None = None) -> tuple[str, list[Span]]:
        """Render one conversation; spans are empty unless the template has generation markers."""
        import jinja2

        kwargs = {**self._special_tokens, **extra} if extra else self._special_tokens
        try:
            chat = [_alias_reasoning(m) for m in messages]
            if not self.markers:
                return self._exact.render(messages=chat, tools=tools, documents=None,
                                          add_generation_prompt=add_generation_prompt, **kwargs), []
            if (self._fast is not None and not _chat_holds_marker(chat) and not (tools and _holds_marker(tools))
                    and not (extra and _holds_marker(extra))):
                try:
                    return self._render_fast(chat, tools, add_generation_prompt, kwargs)
                except Exception:  # rendered again below, where the error is raised as transformers raises it
                    pass
            return self._tracker.track(self._exact.generate(
                messages=chat, tools=tools, documents=None, add_generation_prompt=add_generation_prompt, **kwargs))
        except jinja2.TemplateError as exc:
            raise TokenizerError(f"{self.name} failed on this record{_template_line(exc.__traceback__)}: "
                                 f"{exc}") from exc
        except Exception as exc:  # any error a record can cause in a template: TypeError, ZeroDivisionError, ...
            raise TokenizerError(f"{self.name} failed on this record{_template_line(exc.__traceback__)}: "
                                 f"{type(exc).__name__}: {exc}") from exc

    def _render_fast(self, chat: list[Mapping[str, Any]], tools: list[Any] | None, add_generation_prompt: bool,
                     kwargs: Mapping[str, Any]) -> tuple[str, list[Span]]:
        """Template.render, less its per-call merge of the globals (half of a short template's time)."""
        assert self._fast is not None
        context = self._fast.new_context({**self._fast_globals, **kwargs, "messages": chat, "tools": tools,
                                          "documents": None, "add_generation_prompt": add_generation_prompt},
                                         shared=True)
        return _strip_marks(_bounded_join(self._fast.root_render_func(context), self.limits.rendered_chars))


OPEN, CLOSE = "\ue000", "\ue001"


def _bounded_join(pieces: Iterable[str], limit: int) -> str:
    """A render's output, refused as soon as it passes `limit` characters (checked every few pieces)."""
    out: list[str] = []
    size = 0
    stream = iter(pieces)
    while batch := list(islice(stream, 16)):
        size += sum(map(len, batch))
        if size > limit:
            from loraplan.data.sandbox import RenderLimitError

            raise RenderLimitError(f"the rendered record passed {limit:,} characters (4 x --max-record-bytes)")
        out += batch
    return "".join(out)


def _template_line(tb: TracebackType | None) -> str:
    """' (template line N)' from Jinja's rewritten traceback, where the failing template line is known."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" (template line {line})" if line else ""


def _holds_marker(value: Any) -> bool:
    """Whether any string in the record contains a marker character (then the exact path renders it)."""
    if isinstance(value, str):
        return OPEN in value or CLOSE in value
    if isinstance(value, Mapping):
        return any(_holds_marker(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_marker(v) for v in value)
    return False


def _chat_holds_marker(chat: list[Mapping[str, Any]]) -> bool:
    """_holds_marker for a message list, with the common case (string fields only) in one flat pass."""
    for message in chat:
        for value in message.values():
            if type(value) is str:
                if OPEN in value or CLOSE in value:
                    return True
            elif _holds_marker(value):
                return True
    return False


def _strip_marks(text: str) -> tuple[str, list[Span]]:
    """Remove the markers; a block's span is where its markers were, in the text without markers."""
    spans: list[Span] = []
    opened: list[int] = []
    pieces: list[str] = []
    kept = start = 0  # characters kept so far; where the current unmarked piece starts
    find = text.find
    next_open, next_close = find(OPEN), find(CLOSE)
    while next_open >= 0 or next_close >= 0:
        at = next_open if next_close < 0 or 0 <= next_open < next_close else next_close
        pieces.append(text[start:at])
        kept += at - start
        start = at + 1
        if at == next_open:
            opened.append(kept)
            next_open = find(OPEN, start)
        else:  # an inner block closes first, and is listed first, as in transformers
            spans.append((opened.pop(), kept))
            next_close = find(CLOSE, start)
    if not pieces:
        return text, spans
    pieces.append(text[start:])
    return "".join(pieces), spans


def _alias_reasoning(message: Mapping[str, Any]) -> Mapping[str, Any]:
    """transformers fills `reasoning_content` (and `thinking`) from whichever reasoning name a message uses."""
    if "reasoning_content" not in message and "thinking" not in message and "reasoning" not in message:
        return message
    reasoning = next((message[key] for key in _REASONING_FIELDS if message.get(key) is not None), None)
    return message if reasoning is None else {"thinking": reasoning, **message, "reasoning_content": reasoning}


@lru_cache(maxsize=8)
def _compile(source: str, marked: bool, limits: DataLimits = DEFAULT_LIMITS) -> tuple[Any, Any]:
    """A sandboxed environment configured like transformers' `_compile_jinja_template`.

    marked=False: {% generation %} is transformers' own CallBlock, spans tracked while streaming.
    marked=True: the block's output is wrapped in marker characters; a body without plain-name
    assignments is inlined (no macro call, twice as fast), otherwise kept as a CallBlock so that
    its variables stay local exactly as in transformers.
    """
    import jinja2
    import jinja2.ext
    import jinja2.nodes as nodes

    from loraplan.data.sandbox import MAX_WIDTH, BoundedSandbox, RenderLimitError

    class Generation(jinja2.ext.Extension):
        tags = {"generation"}  # noqa: RUF012 (Jinja's API)

        def __init__(self, environment: jinja2.Environment) -> None:
            super().__init__(environment)
            self.rendered = 0
            self.spans: list[Span] | None = None
            self.depth = 0
            self.nested = False  # a block inside a block: transformers places the inner span oddly

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            self.nested |= self.depth > 0
            self.depth += 1
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            self.depth -= 1
            if marked and not any(isinstance(n.target, nodes.Name)
                                  for node in body for n in node.find_all((nodes.Assign, nodes.AssignBlock))):
                return [nodes.Output([nodes.TemplateData(OPEN)]).set_lineno(lineno), *body,
                        nodes.Output([nodes.TemplateData(CLOSE)]).set_lineno(lineno)]
            method = "_marked" if marked else "_tracked"
            return nodes.CallBlock(self.call_method(method, []), [], [], body).set_lineno(lineno)

        def _marked(self, caller: Any) -> str:
            return OPEN + caller() + CLOSE

        def _tracked(self, caller: Any) -> str:
            text = caller()
            if self.spans is not None:
                self.spans.append((self.rendered, self.rendered + len(text)))
            return text

        def track(self, blocks: Any) -> tuple[str, list[Span]]:
            """Consume a template stream; a span starts at the length of the blocks yielded before it."""
            self.rendered, self.spans = 0, []
            out = []
            try:
                for block in blocks:
                    out.append(block)
                    self.rendered += len(block)
                    if self.rendered > limits.rendered_chars:
                        raise RenderLimitError(f"the rendered record passed {limits.rendered_chars:,} characters "
                                               "(4 x --max-record-bytes)")
                return "".join(out), self.spans
            finally:
                self.spans = None

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | str | None = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        if isinstance(indent, int | str) and (indent if isinstance(indent, int) else len(indent)) > MAX_WIDTH:
            raise RenderLimitError(f"tojson indent over {MAX_WIDTH:,}")
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = BoundedSandbox(limits, trim_blocks=True, lstrip_blocks=True,
                         extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = env._bounded_filter("tojson", tojson)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        template = env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TokenizerError(f"the chat template does not parse (line {exc.lineno}): {exc.message}") from exc
    tracker = next(ext for ext in env.extensions.values() if isinstance(ext, Generation))
    # the `~` operator calls runtime.str_join through the compiled module's globals: bound it there
    template.root_render_func.__globals__.update(str_join=env.str_join, markup_join=env.markup_join)
    return template, tracker
