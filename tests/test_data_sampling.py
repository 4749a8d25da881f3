"""--sample and the byte estimate: labelled as estimates, intervals that cover the exact count."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from loraplan.data import count_trained_tokens
from loraplan.data.sampling import interval
from tests.fixtures.data.support import random_conversations, tokenizer_dir, write_jsonl


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [{"messages": c} for c in random_conversations(60, seed=11)]
    return write_jsonl(tmp_path_factory.mktemp("sample") / "d.jsonl", rows)


def test_interval_is_the_textbook_normal_interval() -> None:
    values = [3, 9, 4, 12, 7, 7, 1, 15]
    population = 100
    half = 1.959964 * statistics.stdev(values) / math.sqrt(len(values)) * math.sqrt(1 - len(values) / population)
    mean = statistics.mean(values)
    assert interval(values, population) == (math.floor(population * (mean - half)),
                                             math.ceil(population * (mean + half)))
    assert interval(values, len(values)) == (sum(values), sum(values))


def test_sample_as_large_as_the_data_is_the_exact_count(corpus: Path) -> None:
    tok = str(tokenizer_dir("chatml", markers=True))
    exact = count_trained_tokens(corpus, tok)
    assert count_trained_tokens(corpus, tok, sample=1000) == exact


def test_sample_intervals_cover_the_exact_count(corpus: Path) -> None:
    tok = str(tokenizer_dir("chatml", markers=True))
    exact = count_trained_tokens(corpus, tok)
    covered = 0
    for seed in range(30):
        est = count_trained_tokens(corpus, tok, sample=20, seed=seed)
        assert est.estimated and est.method == "sample" and est.ci is not None
        assert est.examples == exact.examples and est.ci.population == 60 and est.ci.sample_size == 20
        lo, hi = est.ci.trained_tokens
        assert lo <= est.trained_tokens <= hi
        covered += lo <= exact.trained_tokens <= hi
    assert covered >= 24  # nominal 95%; a loose bound keeps the test deterministic and meaningful


def test_byte_estimate_is_bytes_over_four(tmp_path: Path) -> None:
    texts = ["short", "a somewhat longer line of text", "unicode: 数据 🙂"]
    got = count_trained_tokens(write_jsonl(tmp_path / "t.jsonl", [{"text": t} for t in texts]), None)
    expected = sum(math.ceil(len(t.encode("utf-8")) / 4) for t in texts)
    assert (got.total_tokens, got.trained_tokens) == (expected, expected)
    assert got.estimated and got.method == "bytes" and got.estimate_error == 0.25


def test_byte_estimate_follows_the_mask(corpus: Path) -> None:
    assistant = count_trained_tokens(corpus, None)
    last = count_trained_tokens(corpus, None, mask="last")
    everything = count_trained_tokens(corpus, None, mask="all")
    assert 0 < last.trained_tokens < assistant.trained_tokens < everything.trained_tokens == everything.total_tokens
    assert assistant.total_tokens == everything.total_tokens
