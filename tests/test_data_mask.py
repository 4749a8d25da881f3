"""The assistant mask equals the installed transformers' own, on spans that end inside split characters.

Oracle: `apply_chat_template(..., tokenize=True, return_dict=True, return_assistant_tokens_mask=True)` of the
installed transformers, with the same template and tokenizer (trained in the test). transformers marks every
token that overlaps a generation span; the cases that tell this apart from "first and last character's
token" are spans ending at a character the tokenizer splits into several byte tokens (emoji, CJK, flags)
and a span that ends inside the first token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loraplan.data import load_tokenizer
from loraplan.data.masking import MaskMode, Planner, Work
from loraplan.data.measure import Measurer, _walk
from loraplan.data.records import Conversation
from loraplan.data.template import ChatTemplate
from tests.fixtures.data.support import hf_tokenizer, tokenizer_dir

# The generation block holds the content alone, so a span ends exactly where the content ends.
BARE = ("{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}"
        "{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}{% endfor %}")
# The span starts the text and stops one character into a longer token ("the" ...).
FIRST = "{% for m in messages %}{% generation %}{{ m['content'][:1] }}{% endgeneration %}{{ m['content'][1:] }}" \
        "{% endfor %}"
# Two spans back to back, and an empty span, inside one conversation.
ADJACENT = ("{% for m in messages %}{% generation %}{{ m['content'][:3] }}{% endgeneration %}"
            "{% generation %}{{ m['content'][3:] }}{% endgeneration %}{% generation %}{% endgeneration %}"
            "{% endfor %}")
ENDINGS = ["the answer is 🙂", "数据集", "vive la 🇫🇷", "family 👨‍👩‍👧", "mixed 数 and 🇯🇵 end", "é", "🇫🇷🇫🇷"]


def chats() -> list[list[dict[str, str]]]:
    out = []
    for ending in ENDINGS:
        out.append([{"role": "user", "content": "question ✓"}, {"role": "assistant", "content": ending}])
        out.append([{"role": "user", "content": "数"}, {"role": "assistant", "content": ending},
                    {"role": "user", "content": "🙂 again"}, {"role": "assistant", "content": ending + " ok"}])
    out.append([{"role": "assistant", "content": "the first token is longer than the span"}])
    return out


def ours(path: Path, template: str, chat: list[dict[str, str]]) -> int:
    bundle = load_tokenizer(str(path))
    planner = Planner(ChatTemplate(template, bundle.special_tokens), MaskMode.ASSISTANT, "test")
    work = planner.plan(Conversation(chat, (None,) * len(chat)), "test")
    [(_, ranges)] = Measurer(bundle.backend, bundle.added_ids).measure([work])
    return sum(stop - start for start, stop in ranges)


def theirs(hf: Any, template: str, chat: list[dict[str, str]]) -> int:
    out = hf.apply_chat_template(chat, chat_template=template, tokenize=True, return_dict=True,
                                 return_assistant_tokens_mask=True)
    return sum(out["assistant_masks"])


@pytest.mark.parametrize("style", ["chatml", "gemma"])  # byte-level BPE; metaspace BPE with byte fallback
@pytest.mark.parametrize("template", [BARE, FIRST, ADJACENT], ids=["bare", "first-token", "adjacent"])
def test_mask_equals_transformers_on_split_characters(style: str, template: str) -> None:
    path = tokenizer_dir(style, markers=True)
    hf = hf_tokenizer(path)
    for chat in chats():
        assert ours(path, template, chat) == theirs(hf, template, chat), chat


def test_the_cases_are_the_ones_that_differ() -> None:
    """The old rule (tokens of the span's first and last character) gives other numbers on these cases."""
    path = tokenizer_dir("chatml", markers=True)
    bundle = load_tokenizer(str(path))
    text = "vive la 🇫🇷"
    enc = bundle.backend.encode(text, add_special_tokens=False)
    old = enc.char_to_token(len(text) - 1) + 1 - enc.char_to_token(0)
    work = Work(text, False, "assistant", spans=[(0, len(text))], keep=[True])
    [(_, ranges)] = Measurer(bundle.backend, bundle.added_ids).measure([work])
    assert ranges == [(0, len(enc))] and old < len(enc)  # the flag's last bytes are their own tokens


def test_fast_path_equals_the_literal_walk() -> None:
    """Random spans over random text: the char_to_token path and transformers' walk agree token for token."""
    import random

    rng = random.Random(3)
    bundle = load_tokenizer(str(tokenizer_dir("gemma", markers=True)))
    measurer = Measurer(bundle.backend, bundle.added_ids)
    alphabet = ["a", "the ", "数", "🙂", "🇫🇷", " ", "\n", "é", "<start_of_turn>"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20)))
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, 2 * rng.randint(1, 3))))
        spans = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]
        keep = [rng.random() < 0.8 for _ in spans]
        work = Work(text, False, "assistant", spans=spans, keep=keep)
        enc = bundle.backend.encode(text, add_special_tokens=False)
        [(_, ranges)] = measurer.measure([work])
        assert ranges == _walk(work, enc), (text, spans)
