"""Record formats and file readers: every way of storing the same data counts the same, per the oracles."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from loraplan.data import count_trained_tokens
from tests.fixtures.data.support import (
    hf_tokenizer,
    marker_oracle,
    prefix_oracle,
    random_conversations,
    tokenizer_dir,
    write_jsonl,
)

FIXTURES = Path(__file__).parent / "fixtures" / "data"
CHATS = random_conversations(12, seed=3)
ROLES_TO_SHAREGPT = {"system": "system", "user": "human", "assistant": "gpt"}


def counts(path: Path | list, tok: Path, **kwargs: object) -> tuple[int, int, int]:
    got = count_trained_tokens(path, str(tok), **kwargs)
    return got.examples, got.total_tokens, got.trained_tokens


def marker_totals(chats: list[list[dict]], tok: Path) -> tuple[int, int, int]:
    hf = hf_tokenizer(tok)
    results = [marker_oracle(hf, c) for c in chats]
    return len(chats), sum(n for n, _ in results), sum(sum(m) for _, m in results)


@pytest.fixture(scope="module")
def tok() -> Path:
    return tokenizer_dir("chatml", markers=True)


def test_sharegpt_counts_as_the_same_messages(tmp_path: Path, tok: Path) -> None:
    rows = [{"conversations": [{"from": ROLES_TO_SHAREGPT[m["role"]], "value": m["content"]} for m in c]}
            for c in CHATS]
    assert counts(write_jsonl(tmp_path / "s.jsonl", rows), tok) == marker_totals(CHATS, tok)
    got = count_trained_tokens(FIXTURES / "sharegpt.jsonl", str(tok))
    assert got.format == "sharegpt" and got.examples == 2


def test_alpaca_becomes_instruction_newline_input_then_output(tok: Path) -> None:
    chats = [[{"role": "user", "content": "Translate to French.\nGood morning"},
              {"role": "assistant", "content": "Bonjour"}],
             [{"role": "system", "content": "Be polite."}, {"role": "user", "content": "Say hello."},
              {"role": "assistant", "content": "Hello!"}]]
    assert counts(FIXTURES / "alpaca.json", tok) == marker_totals(chats, tok)


def test_preference_counts_each_side_with_explicit_or_implicit_prompt(tok: Path) -> None:
    hf = hf_tokenizer(tok)
    got = count_trained_tokens(FIXTURES / "preference.jsonl", str(tok))
    records = [json.loads(line) for line in (FIXTURES / "preference.jsonl").read_text().splitlines()]
    expected = {"chosen": [0, 0], "rejected": [0, 0]}
    for rec in records:
        prompt = rec.get("prompt") or rec["chosen"][:1]
        for side in expected:
            completion = rec[side][-1:]
            total, trained = prefix_oracle(hf, prompt + completion, [len(prompt)])
            expected[side][0] += total
            expected[side][1] += trained
    assert got.format == "preference" and got.examples == 2 and got.mask == "completion"
    assert {k: (s.total_tokens, s.trained_tokens) for k, s in got.sides.items()} == {
        k: tuple(v) for k, v in expected.items()}
    assert got.trained_tokens == sum(v[1] for v in expected.values())
    assert got.trained_by_role == {"chosen": expected["chosen"][1], "rejected": expected["rejected"][1]}


def test_every_file_format_reads_the_same_records(tmp_path: Path, tok: Path) -> None:
    rows = [{"messages": c} for c in CHATS]
    expected = marker_totals(CHATS, tok)
    jsonl = write_jsonl(tmp_path / "a.jsonl", rows)
    (tmp_path / "b.json").write_text(json.dumps(rows), encoding="utf-8")
    with gzip.open(tmp_path / "c.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(jsonl.read_text(encoding="utf-8"))
    import zstandard

    (tmp_path / "d.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(jsonl.read_bytes()))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "e.parquet")
    with (tmp_path / "f.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["messages"])
        writer.writerows([[json.dumps(c, ensure_ascii=False)] for c in CHATS])
    for name in ("a.jsonl", "b.json", "c.jsonl.gz", "d.jsonl.zst", "e.parquet", "f.csv"):
        assert counts(tmp_path / name, tok) == expected, name
    folder_total = counts(tmp_path, tok)
    assert folder_total == tuple(6 * x for x in expected)
    assert counts(str(tmp_path / "*.jsonl*"), tok) == tuple(3 * x for x in expected)  # a, c.gz, d.zst
    assert counts([jsonl, tmp_path / "e.parquet"], tok) == tuple(2 * x for x in expected)


def test_hub_style_dataset_folder_is_read_with_datasets(tmp_path: Path, tok: Path) -> None:
    """A folder saved by `datasets` (save_to_disk) goes through the datasets library."""
    import datasets

    datasets.Dataset.from_list([{"messages": c} for c in CHATS]).save_to_disk(str(tmp_path / "saved"))
    assert counts(tmp_path / "saved", tok) == marker_totals(CHATS, tok)


def test_weights_turn_off_turns_and_records(tmp_path: Path, tok: Path) -> None:
    hf = hf_tokenizer(tok)
    chat = next(c for c in CHATS if sum(m["role"] == "assistant" for m in c) >= 2)
    first = next(i for i, m in enumerate(chat) if m["role"] == "assistant")
    n, mask = marker_oracle(hf, chat)
    _, mask_first = marker_oracle(hf, chat[: first + 1])
    weighted = [dict(m, weight=0) if i == first else m for i, m in enumerate(chat)]
    got = count_trained_tokens(write_jsonl(tmp_path / "w.jsonl", [{"messages": weighted}]), str(tok))
    assert (got.total_tokens, got.trained_tokens) == (n, sum(mask) - sum(mask_first))
    got = count_trained_tokens(write_jsonl(tmp_path / "r.jsonl", [{"messages": chat, "weight": 0}]), str(tok))
    assert (got.total_tokens, got.trained_tokens, got.untrained_examples) == (n, 0, 1)


def test_mask_all_trains_every_token_and_splits_roles(tmp_path: Path, tok: Path) -> None:
    examples, total, trained = marker_totals(CHATS, tok)
    got = count_trained_tokens(write_jsonl(tmp_path / "a.jsonl", [{"messages": c} for c in CHATS]), str(tok),
                               mask="all")
    assert (got.examples, got.total_tokens, got.trained_tokens) == (examples, total, total)
    assert got.trained_by_role == {"assistant": trained, "prompt": total - trained}


def test_format_override_and_explicit_text_of_a_messages_file(tmp_path: Path, tok: Path) -> None:
    rows = [{"messages": c, "text": "plain words"} for c in CHATS[:3]]
    path = write_jsonl(tmp_path / "both.jsonl", rows)
    assert count_trained_tokens(path, str(tok)).format == "messages"
    as_text = count_trained_tokens(path, str(tok), record_format="text")
    hf = hf_tokenizer(tok)
    assert as_text.total_tokens == 3 * len(hf("plain words" + hf.eos_token)["input_ids"])


def test_chat_template_file_overrides_the_tokenizers(tmp_path: Path) -> None:
    plain = tokenizer_dir("chatml", markers=False)
    marked = tokenizer_dir("chatml", markers=True)
    template = tmp_path / "t.jinja"
    template.write_text((marked / "chat_template.jinja").read_text(encoding="utf-8"), encoding="utf-8")
    path = write_jsonl(tmp_path / "a.jsonl", [{"messages": c} for c in CHATS])
    assert counts(path, plain, chat_template=template) == marker_totals(CHATS, marked)
