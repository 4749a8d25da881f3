"""Loss masks: which characters of a rendered sequence a trainer would train, before tokenizing.

Two definitions, one per kind of template, each equal to a published oracle:

- A template with `{% generation %}` markers: the trained text is what the markers enclose, turned
  into tokens the way the installed transformers' `apply_chat_template(..., return_assistant_tokens_mask=True)`
  does it (every token overlapping a span; measure.py). That is TRL's `assistant_only_loss`.
- Anything else (no markers, prompt/completion pairs): prefix rendering. Turn k trains
  len(tokens(render(messages[:k+1]))) - len(tokens(render(messages[:k], add_generation_prompt=True))),
  the same difference TRL uses for prompt/completion data. A conversation that opens with an
  assistant turn has the empty conversation (with the generation prompt) as that turn's prompt;
  a template that refuses to render an empty conversation makes it that record's error.

Rendering every prefix is quadratic in the number of turns, so a record whose prefixes would
render more than `DataLimits.prefix_chars` characters is refused with the reason (a template with
{% generation %} markers renders once, whatever the length).

This module renders and returns a `Work` (text plus what must be measured on its tokens);
`measure.py` turns Works into token counts after one batched encode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from loraplan.data.errors import InvalidRecordError, MaskError, TokenizerError
from loraplan.data.limits import RenderTimeout
from loraplan.data.records import Conversation, Message, PromptCompletion, Sequence, Text
from loraplan.data.template import ChatTemplate, Span


class MaskMode(StrEnum):
    AUTO = "auto"
    ASSISTANT = "assistant"  # every assistant turn (TRL assistant_only_loss, Axolotl roles_to_train: [assistant])
    LAST = "last_assistant"  # the last assistant turn only (also spelled "last")
    ALL = "all"  # every token (plain text, continued pre-training)
    COMPLETION = "completion"  # the completion after a prompt (TRL completion_only_loss)

    @classmethod
    def _missing_(cls, value: object) -> MaskMode | None:
        return cls.LAST if value == "last" else None


@dataclass(slots=True)
class Work:
    """One sequence to tokenize and what to measure on its tokens.

    text / add_special: what is encoded (templates render their own BOS, so add_special is False for them).
    role: label of the trained tokens (assistant, completion, chosen, rejected, text).
    spans: generation-marker char spans of the trained turns, in template order, with `keep[i]` selecting them.
    bounds: prefixes (P, R) per trained turn; trained tokens = n(R) - n(P). Each is a string, or an int: the
        length of a prefix of `text` itself (kept as a length, so long conversations do not hold every prefix).
    all_tokens: every token is trained (mode all, or plain text).
    side: the preference side this sequence belongs to, if any.
    """

    text: str
    add_special: bool
    role: str
    spans: list[Span] = field(default_factory=list)
    keep: list[bool] = field(default_factory=list)
    bounds: list[tuple[str | int, str | int]] = field(default_factory=list)
    all_tokens: bool = False
    side: str | None = None
    weight: int = 1


def resolve_mask(mode: MaskMode, seq: Sequence) -> MaskMode:
    """The mode a sequence is counted under: 'auto' picks the trainers' default for its kind."""
    if isinstance(seq, Conversation):
        if mode is MaskMode.COMPLETION:
            raise MaskError("--mask completion needs prompt/completion records; for conversations use "
                            "assistant, last or all")
        return MaskMode.ASSISTANT if mode is MaskMode.AUTO else mode
    if isinstance(seq, PromptCompletion):
        if mode in (MaskMode.ASSISTANT, MaskMode.LAST):
            raise MaskError(f"--mask {mode.value} needs conversations; for prompt/completion or preference "
                            "records use completion or all")
        return MaskMode.COMPLETION if mode is MaskMode.AUTO else mode
    if mode not in (MaskMode.AUTO, MaskMode.ALL):
        raise MaskError(f"--mask {mode.value} needs conversations or prompt/completion records; plain text "
                        "is trained whole (all)")
    return MaskMode.ALL


class Planner:
    """Renders sequences with one chat template and decides what to measure."""

    def __init__(self, template: ChatTemplate | None, mode: MaskMode, tokenizer_name: str) -> None:
        self.template = template
        self.mode = mode
        self.tokenizer_name = tokenizer_name
        self.resolved: set[str] = set()

    def plan(self, seq: Sequence, where: str, weight: int = 1) -> Work:
        mode = resolve_mask(self.mode, seq)
        self.resolved.add(mode.value)
        if isinstance(seq, Text):
            return Work(seq.text, True, "text", all_tokens=True, weight=weight)
        if isinstance(seq, PromptCompletion) and isinstance(seq.prompt, str):
            work = self._pair(seq, where)
        else:
            if self.template is None:
                raise TokenizerError(f"tokenizer {self.tokenizer_name} has no chat template; pass --chat-template "
                                     "FILE")
            try:
                with self.template.record():
                    work = self._pair(seq, where) if isinstance(seq, PromptCompletion) else \
                        self._conversation(seq, mode, where)
            except TokenizerError as exc:  # the template failed on this record
                raise InvalidRecordError(where, str(exc), "template error") from exc
            except RenderTimeout:  # the watchdog stopped it
                raise InvalidRecordError(where, str(self.template.timeout_error()), "template error") from None
        work.all_tokens = mode is MaskMode.ALL
        work.weight = weight
        return work

    def _render(self, messages: list[Message], where: str, add_generation_prompt: bool = False,
                seq: Conversation | PromptCompletion | None = None) -> tuple[str, list[Span]]:
        assert self.template is not None  # checked by plan()
        if not messages and add_generation_prompt:
            return self._render_empty(where, seq)
        return self.template.render(messages, add_generation_prompt, seq.tools if seq else None,
                                    seq.template_kwargs if seq else None)

    def _render_empty(self, where: str, seq: Conversation | PromptCompletion | None) -> tuple[str, list[Span]]:
        """The prompt of an opening assistant turn: the template's empty conversation with its generation prompt."""
        assert self.template is not None
        try:
            return self.template.render([], True, seq.tools if seq else None, seq.template_kwargs if seq else None)
        except TokenizerError as exc:
            raise InvalidRecordError(
                where, "the conversation opens with an assistant turn, whose prompt is the template's empty "
                "conversation, and the template cannot render one "
                f"({str(exc).removeprefix(self.template.name + ' ')}); start the conversation with a user or system "
                "turn, or use a template with {% generation %} markers", "opens with assistant") from exc

    def _pair(self, seq: PromptCompletion, where: str) -> Work:
        """Completion tokens = n(prompt + completion) - n(prompt), as TRL builds completion_mask."""
        if isinstance(seq.prompt, str) and isinstance(seq.completion, str):
            full = seq.prompt + seq.completion
            return Work(full, True, seq.side, bounds=[(seq.prompt, full)], side=_side(seq))
        prompt = list(seq.prompt)
        completion = list(seq.completion)
        prompt_text, _ = self._render(prompt, where, True, seq)
        full, _ = self._render(prompt + completion, where, False, seq)
        return Work(full, False, seq.side, bounds=[(_as_cut(prompt_text, full), len(full))], side=_side(seq))

    def _conversation(self, seq: Conversation, mode: MaskMode, where: str) -> Work:
        messages = seq.messages
        turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if not turns and mode is not MaskMode.ALL:
            raise InvalidRecordError(where, "no assistant turn: nothing would be trained (use --mask all to count "
                                     "every token)", "no assistant turn")
        trained = [i for i in turns if seq.weights[i] != 0]
        if mode is MaskMode.LAST:
            trained = [i for i in turns[-1:] if seq.weights[i] != 0]
        text, spans = self._render(messages, where, False, seq)
        if self.template is not None and self.template.markers:
            keep = [True] * len(spans)
            if len(trained) != len(turns) or mode is MaskMode.LAST:
                keep = _select_spans(spans, turns, trained, mode is MaskMode.LAST, where)
            return Work(text, False, "assistant", spans=spans, keep=keep)
        budget = self.template.limits.prefix_chars if self.template is not None else 0
        if len(text) * len(trained) > budget:
            raise InvalidRecordError(
                where, f"{len(trained):,} trained turns in {len(text):,} rendered characters: counting them renders "
                "every prefix (the template has no {% generation %} markers), about "
                f"{len(text) * len(trained):,} characters, over the {budget:,} allowed (4 x --max-record-bytes); "
                "use a template with generation markers, --mask last, or raise --max-record-bytes", "too many turns")
        bounds: list[tuple[str | int, str | int]] = []
        for i in trained:
            prompt_text, _ = self._render(messages[:i], where, True, seq)
            turn_text = text if i == len(messages) - 1 else self._render(messages[: i + 1], where, False, seq)[0]
            bounds.append((_as_cut(prompt_text, text), _as_cut(turn_text, text)))
        return Work(text, False, "assistant", bounds=bounds)


def _as_cut(prefix: str, text: str) -> str | int:
    """A prefix of `text` is kept as its length; anything else (templates that rewrite history) as itself."""
    return len(prefix) if text.startswith(prefix) else prefix


def _side(seq: PromptCompletion) -> str | None:
    return seq.side if seq.side in ("chosen", "rejected") else None


def _select_spans(spans: list[Span], turns: list[int], trained: list[int], last_only: bool,
                  where: str) -> list[bool]:
    """Map generation blocks to assistant turns in order; needed for weights and the last-turn mode."""
    if len(spans) == len(turns):
        chosen = set(trained)
        return [turn in chosen for turn in turns]
    if last_only:
        return [bool(trained) and i == len(spans) - 1 for i in range(len(spans))]
    raise InvalidRecordError(
        where, f"the template renders {len(spans)} generation blocks for {len(turns)} assistant turns, so "
        "per-turn weights cannot be applied", "template/turn mismatch")
