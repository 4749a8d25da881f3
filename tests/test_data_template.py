"""ChatTemplate renders the same text and generation spans as transformers, on its fast and exact paths.

The fast path wraps each generation block in private-use marker characters; records that contain
those characters themselves, nested blocks and tool calls are the cases where it could go wrong.
"""

from __future__ import annotations

from typing import Any

import pytest

from loraplan.data.template import CLOSE, OPEN, ChatTemplate
from tests.fixtures.data.support import CHATML, GEMMA, LLAMA3, random_conversations

NESTED = (
    "{% for m in messages %}<{{ m['role'] }}>"
    "{% if m['role'] == 'assistant' %}{% generation %}[{% generation %}{{ m['content'] }}{% endgeneration %}"
    "{% if m.tool_calls %}{{ m.tool_calls | tojson }}{% endif %}]{% endgeneration %}"
    "{% else %}{{ m['content'] }}{% endif %}</>{% endfor %}"
)
SPECIALS = {"bos_token": "<s>", "eos_token": "</s>"}


def transformers_render(template: str, chat: list[dict[str, Any]]) -> tuple[str, list[tuple[int, int]]]:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, indices = render_jinja_template([chat], chat_template=template, return_assistant_tokens_mask=True,
                                              **SPECIALS)
    return rendered[0], [tuple(span) for span in indices[0]]


CHATS = [
    *random_conversations(12, seed=11),
    [{"role": "user", "content": f"a {OPEN}marker{CLOSE} in the prompt"},
     {"role": "assistant", "content": f"and {CLOSE} one {OPEN} in the answer"}],
    [{"role": "user", "content": "call it"},
     {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": f"f{OPEN}", "arguments": {}}}]}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": f"{OPEN}{OPEN}"},
     {"role": "user", "content": "again"}, {"role": "assistant", "content": "fine"}],
]


@pytest.mark.parametrize("template", [CHATML, LLAMA3, GEMMA, NESTED], ids=["chatml", "llama3", "gemma", "nested"])
def test_text_and_spans_equal_transformers(template: str) -> None:
    ours = ChatTemplate(template, SPECIALS)
    for chat in CHATS:
        assert ours.render(chat) == transformers_render(template, chat)
