"""Bad input: one clear message naming file and line, --skip-invalid tallies, inputs never written."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from loraplan.data import (
    DataError,
    DataSourceError,
    InvalidRecordError,
    MaskError,
    TokenizerError,
    count_trained_tokens,
)
from loraplan.errors import LoraplanError
from tests.fixtures.data.support import tokenizer_dir, write_jsonl

FIXTURES = Path(__file__).parent / "fixtures" / "data"


@pytest.fixture(scope="module")
def tok() -> str:
    return str(tokenizer_dir("chatml", markers=True))


@pytest.mark.parametrize(("name", "where", "words"), [
    ("malformed.jsonl", "malformed.jsonl:2", "invalid JSON"),
    ("latin1.jsonl", "latin1.jsonl:1", "not UTF-8 (byte 0xe9"),
    ("empty.jsonl", "empty.jsonl", "empty file"),
    ("no_assistant.jsonl", "no_assistant.jsonl:1", "no assistant turn"),
    ("unknown_role.jsonl", "unknown_role.jsonl:1", "message 1 has unknown role 'narrator'"),
])
def test_bad_records_stop_with_file_line_and_problem(name: str, where: str, words: str, tok: str) -> None:
    with pytest.raises(InvalidRecordError) as info:
        count_trained_tokens(FIXTURES / name, tok)
    message = str(info.value)
    assert where in message and words in message
    assert isinstance(info.value, LoraplanError) and "\n" not in message


def test_skip_invalid_counts_reasons_and_keeps_the_rest(tok: str) -> None:
    files = [FIXTURES / n for n in ("malformed.jsonl", "latin1.jsonl", "empty.jsonl", "no_assistant.jsonl",
                                    "unknown_role.jsonl")]
    got = count_trained_tokens(files, tok, skip_invalid=True)
    assert got.examples == 2  # the two good lines of malformed.jsonl
    assert got.skipped == 5
    assert got.skip_reasons == {"invalid JSON": 1, "not UTF-8": 1, "empty file": 1, "no assistant turn": 1,
                                "unknown role": 1}
    line = (FIXTURES / "malformed.jsonl").read_text().splitlines()[1]
    assert got.skip_examples[0].endswith(
        f"malformed.jsonl:2: invalid JSON (Expecting ',' delimiter at column {len(line) + 1})")


def test_no_assistant_turn_is_counted_under_mask_all(tok: str) -> None:
    got = count_trained_tokens(FIXTURES / "no_assistant.jsonl", tok, mask="all")
    assert got.examples == 1 and got.trained_tokens == got.total_tokens > 0


@pytest.mark.parametrize(("records", "words"), [
    ([{"messages": "not a list"}], "messages must be a non-empty list"),
    ([{"messages": [{"role": "user"}]}], "message 0 (user) has no content"),
    ([{"messages": [{"role": "assistant", "content": "a", "weight": 2}]}], "weight must be 0 or 1, got 2"),
    ([{"messages": [{"role": "user", "content": "q", "weight": 1}]}], "only assistant turns take one"),
    ([{"question": "q", "answer": "a"}], "cannot tell the record format from its keys (answer, question)"),
    ([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, {"text": "t"}],
     "mixed formats need --format"),
    ([[1, 2]], "a record must be a JSON object, got list"),
])
def test_record_problems_are_named(records: list, words: str, tok: str, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", records)
    with pytest.raises(InvalidRecordError) as info:
        count_trained_tokens(path, tok)
    assert words in str(info.value) and f"d.jsonl:{len(records)}" in str(info.value)


def test_source_tokenizer_and_mask_problems(tok: str, tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="no such file, folder or glob match"):
        count_trained_tokens(tmp_path / "missing.jsonl", tok)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataSourceError, match="unknown file type"):
        count_trained_tokens(tmp_path / "notes.txt", tok)
    with pytest.raises(DataSourceError, match="folder has no data files"):
        count_trained_tokens(tmp_path, tok)
    data = write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "q"},
                                                             {"role": "assistant", "content": "a"}]}])
    with pytest.raises(TokenizerError, match=r"neither a folder, a tokenizer\.json nor a hub id"):
        count_trained_tokens(data, str(tmp_path / "nope"))
    with pytest.raises(MaskError, match="--mask completion needs prompt/completion records"):
        count_trained_tokens(data, tok, mask="completion")
    with pytest.raises(ValueError, match="last"):
        count_trained_tokens(data, tok, mask="lastt")
    with pytest.raises(DataError, match="--max-length must be a positive integer"):
        count_trained_tokens(data, tok, max_length=0)


def test_conversations_need_a_chat_template(tmp_path: Path) -> None:
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tokenizer_dir("chatml", markers=True), bare)
    (bare / "chat_template.jinja").unlink()
    data = write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "q"},
                                                             {"role": "assistant", "content": "a"}]}])
    with pytest.raises(TokenizerError, match="has no chat template; pass --chat-template FILE"):
        count_trained_tokens(data, str(bare))


def test_a_failing_template_names_the_record(tmp_path: Path, tok: str) -> None:
    template = tmp_path / "strict.jinja"
    template.write_text("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}"
                        "{% endif %}{{ m['content'] }}{% endfor %}")
    data = write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "system", "content": "s"},
                                                             {"role": "user", "content": "q"},
                                                             {"role": "assistant", "content": "a"}]}])
    with pytest.raises(InvalidRecordError, match=r"d\.jsonl:1: chat template .*strict\.jinja failed on this record "
                       r"\(template line 1\): no system"):
        count_trained_tokens(data, tok, chat_template=template)


def test_inputs_are_never_written(tok: str) -> None:
    before = {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
              for p in FIXTURES.iterdir()}
    count_trained_tokens(sorted(FIXTURES.glob("*.json*")), tok, skip_invalid=True)
    after = {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in FIXTURES.iterdir()}
    assert before == after


@pytest.mark.parametrize("name", ["malformed.jsonl", "latin1.jsonl", "empty.jsonl", "unknown_role.jsonl"])
def test_cli_prints_one_line_and_exits_2(name: str, tok: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "loraplan", "tokens", str(FIXTURES / name), "--tokenizer", tok],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert name in proc.stderr


# A tool call rendered the way DeepSeek-V3's original template renders it: `arguments` concatenated as a string.
TOOL_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.tool_calls %}"
                 "{% for tc in m.tool_calls %}{{ '<tool>' + tc.function.name + '\\n' + tc.function.arguments + "
                 "'</tool>' }}{% endfor %}{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}")


def test_a_template_type_error_is_the_record_error_and_skippable(tmp_path: Path, tok: str) -> None:
    template = tmp_path / "tools.jinja"
    template.write_text(TOOL_TEMPLATE)
    call = {"function": {"name": "f", "arguments": {"x": 1}}}  # a dict, as OpenAI-style data stores it
    records = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
               {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [call]}]}]
    data = write_jsonl(tmp_path / "d.jsonl", records)
    with pytest.raises(InvalidRecordError, match=r"d\.jsonl:2: chat template .*tools\.jinja failed on this record "
                       r"\(template line 2\): TypeError: can only concatenate str \(not \"dict\"\) to str"):
        count_trained_tokens(data, tok, chat_template=template, mask="all")
    got = count_trained_tokens(data, tok, chat_template=template, mask="all", skip_invalid=True)
    assert got.examples == 1 and got.skip_reasons == {"template error": 1}


def test_an_opening_assistant_turn_is_counted_against_the_empty_prompt(tmp_path: Path) -> None:
    """Without markers, the opening turn trains what it adds to the template's empty conversation + generation
    prompt; the later turns follow the prefix rule (oracle: transformers' tokenizer on the rendered strings)."""
    from tests.fixtures.data.support import hf_tokenizer, prefix_oracle

    path = tokenizer_dir("chatml", markers=False)
    hf = hf_tokenizer(path)
    chat = [{"role": "assistant", "content": "hello there"}, {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"}]
    got = count_trained_tokens(write_jsonl(tmp_path / "d.jsonl", [{"messages": chat}]), str(path))

    def n(text: str) -> int:
        return len(hf(text, add_special_tokens=False)["input_ids"])

    first = n("<|im_start|>assistant\nhello there<|im_end|>\n") - n("<|im_start|>assistant\n")
    total, later = prefix_oracle(hf, chat, [2])
    assert (got.total_tokens, got.trained_tokens) == (total, first + later)


def test_an_opening_assistant_turn_says_why_when_the_template_needs_a_first_message(tmp_path: Path) -> None:
    template = tmp_path / "first.jinja"  # the `messages[0]['role']` check Llama-3.2's template opens with
    template.write_text("{% if messages[0]['role'] == 'system' %}{% set offset = 1 %}{% endif %}"
                        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    chat = [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"}]
    data = write_jsonl(tmp_path / "d.jsonl", [{"messages": chat}])
    plain = str(tokenizer_dir("chatml", markers=False))
    with pytest.raises(InvalidRecordError, match=r"d\.jsonl:1: the conversation opens with an assistant turn, whose "
                       r"prompt is the template's empty conversation, and the template cannot render one") as info:
        count_trained_tokens(data, plain, chat_template=template)
    assert "start the conversation with a user or system turn" in str(info.value)
    got = count_trained_tokens(data, plain, chat_template=template, mask="last")  # no empty prompt needed
    assert got.examples == 1 and got.trained_tokens > 0
