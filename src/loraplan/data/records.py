"""Record formats: detect what a record is and turn it into the sequences a trainer would build.

A record becomes one sequence (a conversation, a prompt/completion pair, a text) or two (the
chosen and the rejected side of a preference pair). Conversions follow the trainers:
ShareGPT `from`/`value` as Axolotl and LLaMA-Factory map them, Alpaca as LLaMA-Factory turns it
into a chat (instruction and input joined by a newline), implicit preference prompts as TRL's
`extract_prompt`, EOS appended to plain text and string completions as TRL's SFTTrainer does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from loraplan.data.errors import InvalidRecordError

Message = dict[str, Any]


class RecordFormat(StrEnum):
    AUTO = "auto"
    MESSAGES = "messages"
    SHAREGPT = "sharegpt"
    PROMPT_COMPLETION = "prompt-completion"
    ALPACA = "alpaca"
    TEXT = "text"
    PREFERENCE = "preference"


KNOWN_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function", "ipython"})
# ShareGPT speaker names -> chat roles (Axolotl / LLaMA-Factory conventions).
SHAREGPT_ROLES = {
    "system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
    "model": "assistant", "function_call": "assistant", "observation": "tool", "tool": "tool",
    "function_response": "tool",
}


@dataclass(frozen=True, slots=True)
class Conversation:
    """A chat rendered whole; `weights[i]` is message i's 0/1 weight (None: not given)."""

    messages: list[Message]
    weights: tuple[int | None, ...]
    tools: list[Any] | None = None
    template_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PromptCompletion:
    """A prompt and the completion trained after it: both strings, or both message lists."""

    prompt: str | list[Message]
    completion: str | list[Message]
    side: str = "completion"
    tools: list[Any] | None = None
    template_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Text:
    """Plain text, trained whole (language modelling, continued pre-training)."""

    text: str


Sequence = Conversation | PromptCompletion | Text


@dataclass(frozen=True, slots=True)
class Example:
    """One record's sequences, with its record-level weight (0 trains nothing)."""

    sequences: tuple[Sequence, ...]
    weight: int = 1


def detect_format(record: Mapping[str, Any], where: str) -> RecordFormat:
    """The format a record's keys announce, in the order trainers check them."""
    keys = record.keys()
    if "messages" in keys:
        return RecordFormat.MESSAGES
    if "conversations" in keys:
        return RecordFormat.SHAREGPT
    if "chosen" in keys and "rejected" in keys:
        return RecordFormat.PREFERENCE
    if "prompt" in keys and "completion" in keys:
        return RecordFormat.PROMPT_COMPLETION
    if "instruction" in keys and "output" in keys:
        return RecordFormat.ALPACA
    if "text" in keys:
        return RecordFormat.TEXT
    shown = ", ".join(sorted(map(str, keys))[:8]) or "none"
    raise InvalidRecordError(
        where, f"cannot tell the record format from its keys ({shown}); expected messages, conversations, "
        "prompt/completion, prompt/chosen/rejected, instruction/output or text (or pass --format)", "unknown format")


def to_example(record: Any, fmt: RecordFormat, where: str, eos_token: str | None) -> Example:
    """Validate one record of format `fmt` and build its sequences; raise InvalidRecordError naming `where`."""
    if not isinstance(record, Mapping):
        raise InvalidRecordError(where, f"a record must be a JSON object, got {type(record).__name__}")
    weight = _weight(record.get("weight"), where, "record")
    tools = _tools(record.get("tools"), where)
    kwargs = record.get("chat_template_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise InvalidRecordError(where, "chat_template_kwargs must be an object")
    if fmt is RecordFormat.MESSAGES:
        seqs: tuple[Sequence, ...] = (_conversation(_field(record, "messages", where), where, tools, kwargs, False),)
    elif fmt is RecordFormat.SHAREGPT:
        seqs = (_conversation(_field(record, "conversations", where), where, tools, kwargs, True),)
    elif fmt is RecordFormat.ALPACA:
        seqs = (_conversation(_alpaca_messages(record, where), where, tools, kwargs, False),)
    elif fmt is RecordFormat.TEXT:
        seqs = (Text(_with_eos(_string(record, "text", where), eos_token)),)
    elif fmt is RecordFormat.PROMPT_COMPLETION:
        seqs = (_pair(record.get("prompt"), _field(record, "completion", where), "completion", where, tools, kwargs,
                      eos_token),)
    else:
        seqs = _preference(record, where, tools, kwargs, eos_token)
    return Example(seqs, 1 if weight is None else weight)


def _field(record: Mapping[str, Any], key: str, where: str) -> Any:
    value = _maybe_json(record.get(key))
    if value is None:
        raise InvalidRecordError(where, f"missing field '{key}'")
    return value


def _string(record: Mapping[str, Any], key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        got = "missing" if value is None else type(value).__name__
        raise InvalidRecordError(where, f"field '{key}' must be a string, got {got}")
    return value


def _maybe_json(value: Any) -> Any:
    """CSV and some Parquet files store message lists as JSON strings."""
    if isinstance(value, str) and value[:2] in ("[{", "[ ", "[\n", "[]"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _weight(value: Any, where: str, what: str) -> int | None:
    if value is None:
        return None
    if value in (0, 1) and not isinstance(value, str):
        return int(value)
    raise InvalidRecordError(where, f"{what} weight must be 0 or 1, got {value!r}", "bad weight")


def _tools(value: Any, where: str) -> list[Any] | None:
    """A list of tool schemas; CSV and Parquet files store it as a JSON string."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise InvalidRecordError(where, f"'tools' is a string that is not JSON ({str(exc)[:80]}); give a list of "
                                     "tool schemas", "bad tools") from exc
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(tool, Mapping) for tool in value):
        raise InvalidRecordError(where, "'tools' must be a list of tool schemas (JSON objects)", "bad tools")
    return value


def _messages(raw: Any, where: str, sharegpt: bool) -> tuple[list[Message], tuple[int | None, ...]]:
    """Check roles and contents; drop None-valued keys (as transformers does) and split off weights."""
    if not isinstance(raw, list) or not raw:
        raise InvalidRecordError(where, "messages must be a non-empty list of {role, content} objects")
    messages: list[Message] = []
    weights: list[int | None] = []
    for i, item in enumerate(raw):
        if type(item) is not dict and not isinstance(item, Mapping):
            raise InvalidRecordError(where, f"message {i} is a {type(item).__name__}, not an object")
        if type(item) is dict and not sharegpt and "weight" not in item and None not in item.values():
            msg = item  # nothing to drop: the record was just parsed, so it is ours to share
        else:
            msg = {k: v for k, v in item.items() if v is not None and k != "weight"}
        if sharegpt and "from" in msg:
            speaker = msg.pop("from")
            role = SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
            if role is None:
                raise InvalidRecordError(where, f"message {i} is from unknown speaker {speaker!r}; known: "
                                         f"{', '.join(SHAREGPT_ROLES)}", "unknown role")
            msg = {"role": role, "content": msg.pop("value", None), **msg}
        role = msg.get("role")
        if not isinstance(role, str) or role not in KNOWN_ROLES:
            raise InvalidRecordError(where, f"message {i} has unknown role {role!r}; known roles: "
                                     f"{', '.join(sorted(KNOWN_ROLES))}", "unknown role")
        content = msg.get("content")
        if content is None and not msg.get("tool_calls"):
            raise InvalidRecordError(where, f"message {i} ({role}) has no content")
        if type(content) is not str and content is not None and not isinstance(content, str | list):
            raise InvalidRecordError(where, f"message {i} content must be a string or a list of parts")
        weight = _weight(item["weight"], where, f"message {i}") if "weight" in item else None
        if weight is not None and role != "assistant":
            raise InvalidRecordError(where, f"message {i} ({role}) has a weight; only assistant turns take one",
                                     "bad weight")
        messages.append(msg)
        weights.append(weight)
    return messages, tuple(weights)


def _conversation(raw: Any, where: str, tools: list[Any] | None, kwargs: Mapping[str, Any],
                  sharegpt: bool) -> Conversation:
    messages, weights = _messages(raw, where, sharegpt)
    return Conversation(messages, weights, tools, kwargs)


def _alpaca_messages(record: Mapping[str, Any], where: str) -> list[Message]:
    """LLaMA-Factory's Alpaca conversion: [system], history pairs, instruction + '\\n' + input, output."""
    messages: list[Message] = []
    system = record.get("system")
    if system:
        messages.append({"role": "system", "content": str(system)})
    for turn in record.get("history") or []:
        if not (isinstance(turn, list | tuple) and len(turn) == 2):
            raise InvalidRecordError(where, "history must be a list of [instruction, response] pairs")
        messages += [{"role": "user", "content": str(turn[0])}, {"role": "assistant", "content": str(turn[1])}]
    extra = record.get("input") or ""
    if not isinstance(extra, str):
        raise InvalidRecordError(where, f"field 'input' must be a string, got {type(extra).__name__}")
    query = "\n".join(part for part in (_string(record, "instruction", where), extra) if part)
    messages += [{"role": "user", "content": query}, {"role": "assistant", "content": _string(record, "output", where)}]
    return messages


def _with_eos(text: str, eos_token: str | None) -> str:
    """TRL appends EOS to plain text and string completions unless it is already there."""
    return text if not eos_token or text.endswith(eos_token) else text + eos_token


def _pair(prompt: Any, completion: Any, side: str, where: str, tools: list[Any] | None,
          kwargs: Mapping[str, Any], eos_token: str | None) -> PromptCompletion:
    prompt, completion = _maybe_json(prompt), _maybe_json(completion)
    if isinstance(completion, str) and isinstance(prompt, str | None):
        return PromptCompletion(prompt or "", _with_eos(completion, eos_token), side, tools, kwargs)
    if isinstance(completion, list) and isinstance(prompt, list | None):
        prompt_msgs = _messages(prompt, where, True)[0] if prompt else []
        completion_msgs = _messages(completion, where, True)[0]
        return PromptCompletion(prompt_msgs, completion_msgs, side, tools, kwargs)
    raise InvalidRecordError(where, f"'{side}' and 'prompt' must both be strings or both message lists")


def _preference(record: Mapping[str, Any], where: str, tools: list[Any] | None, kwargs: Mapping[str, Any],
                eos_token: str | None) -> tuple[Sequence, ...]:
    chosen, rejected = _maybe_json(record.get("chosen")), _maybe_json(record.get("rejected"))
    prompt = _maybe_json(record.get("prompt"))
    if prompt is None and isinstance(chosen, str | list) and isinstance(rejected, type(chosen)):
        prompt, chosen, rejected = _extract_prompt(chosen, rejected)
    return tuple(_pair(prompt, side_value, side, where, tools, kwargs, eos_token)
                 for side, side_value in (("chosen", chosen), ("rejected", rejected)))


def _extract_prompt(chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    """TRL's `extract_prompt`: the longest shared prefix (of turns, or of characters) is the prompt."""
    idx = 0
    for idx in range(min(len(chosen), len(rejected))):
        if chosen[idx] != rejected[idx]:
            if chosen[idx - 1] == " ":
                idx -= 1
            break
    return chosen[:idx], chosen[idx:], rejected[idx:]
