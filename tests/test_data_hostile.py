"""Hostile data, templates and tokenizer files: one line on stderr, exit 2, in bounded time and memory.

Every hostile file is generated here (small on disk: the zstd bomb is a few tens of KB, the 2 GB record
a sparse file) and `loraplan tokens` runs in a child process under RLIMIT_AS and a timeout, as a user
runs it. Under --skip-invalid the same inputs are that record's error and the run goes on.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.data.support import tokenizer_dir, write_jsonl

MEMORY_LIMIT = 1 << 30  # 1 GiB of address space: every bomb below expands past it
GOOD = {"messages": [{"role": "user", "content": "question"}, {"role": "assistant", "content": "answer"}]}


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`loraplan tokens ARGS` in a child with 1 GiB of address space; the timeout fails the test as a hang."""
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "loraplan", "tokens", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, preexec_fn=_limit_memory, env=env)


def refused(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit 2, one line on stderr naming `words`, no traceback."""
    message = proc.stderr.strip()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "\n" not in message, proc.stderr[-2000:]
    for word in words:
        assert word in message, message
    return message


def skipped(proc: subprocess.CompletedProcess[str], reason: str, examples: int) -> dict:
    """--skip-invalid --json: exit 0, the record tallied under `reason`, the good ones counted."""
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["skip_reasons"].get(reason) == 1 and result["examples"] == examples, result
    return result


@pytest.fixture(scope="module")
def tok() -> Path:
    return tokenizer_dir("chatml", markers=True)


@pytest.fixture(scope="module")
def plain_tok() -> Path:
    return tokenizer_dir("chatml", markers=False)


ZEROS = b"0" * (1 << 24)
COPIES = 80  # 80 x 16 MiB = 1.25 GiB expanded, past the child's whole address space


# -- decompression bombs and long records ---------------------------------------------------------------
def test_zstd_bomb_is_one_record_error(tmp_path: Path, tok: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    compress = zstandard.ZstdCompressor(level=19).compress
    bomb = tmp_path / "bomb.jsonl.zst"  # frames: a good record, 1.25 GiB of zeros on one line, a good record
    bomb.write_bytes(compress(json.dumps(GOOD).encode() + b"\n") + compress(ZEROS) * COPIES
                     + compress(b"\n" + json.dumps(GOOD).encode() + b"\n"))
    assert bomb.stat().st_size < 400_000
    refused(run(bomb, "-t", tok), "bomb.jsonl.zst:2", "record longer than 67,108,864 bytes", "--max-record-bytes")
    skipped(run(bomb, "-t", tok, "--skip-invalid", "--json"), "record too large", 2)


def test_gzip_bombs_line_and_document(tmp_path: Path, tok: Path) -> None:
    member = gzip.compress(ZEROS, compresslevel=9)  # gzip members concatenate into one stream
    bomb = tmp_path / "bomb.jsonl.gz"
    bomb.write_bytes(member * COPIES)
    assert bomb.stat().st_size < 2_000_000
    refused(run(bomb, "-t", tok), "bomb.jsonl.gz:1", "record longer than")
    document = tmp_path / "bomb.json.gz"
    document.write_bytes(gzip.compress(b"[") + member * COPIES)
    refused(run(document, "-t", tok), "bomb.json.gz", "a .json document over 268,435,456 bytes", "JSON Lines")


def test_gigabyte_single_line_record(tmp_path: Path, tok: Path) -> None:
    """A sparse 1.25 GiB line: read in capped pieces, never held (the child has 1 GiB in all)."""
    big = tmp_path / "big.jsonl"
    with big.open("wb") as fh:
        fh.write(json.dumps(GOOD).encode() + b"\n")
        fh.truncate(5 << 28)
    result = skipped(run(big, "-t", tok, "--skip-invalid", "--json", "--max-record-bytes", 1 << 20),
                     "record too large", 1)
    assert "big.jsonl:2: record longer than 1,048,576 bytes" in result["skip_examples"][0]


def test_corrupt_compressed_files(tmp_path: Path, tok: Path) -> None:
    (tmp_path / "fake.jsonl.zst").write_bytes(b"this is not zstd\n")
    refused(run(tmp_path / "fake.jsonl.zst", "-t", tok), "fake.jsonl.zst", "cannot read or decompress", "zstd")
    good = gzip.compress(b"".join(json.dumps(GOOD).encode() + b"\n" for _ in range(200)))
    (tmp_path / "cut.jsonl.gz").write_bytes(good[: len(good) // 2])
    proc = run(tmp_path / "cut.jsonl.gz", "-t", tok, "--skip-invalid", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["skip_reasons"] == {"corrupt file": 1}


def test_bounded_lines_equal_plain_splitting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines cut across reads of any size come out as str.splitlines would give them, long ones as None."""
    import io
    import random

    from loraplan.data import readers

    rng = random.Random(5)
    for _ in range(300):
        lines = [b"x" * rng.choice([0, 1, 2, 5, 9, 30]) + rng.choice([b"", b"\r"]) for _ in range(rng.randint(0, 12))]
        text = b"\n".join(lines) + rng.choice([b"", b"\n"])
        limit = rng.randint(0, 12)
        monkeypatch.setattr(readers, "READ_CHUNK", rng.randint(1, 16))
        expected = [line if len(line.removesuffix(b"\n").removesuffix(b"\r")) <= limit else None
                    for line in io.BytesIO(text)]
        assert list(readers.bounded_lines(io.BytesIO(text), limit)) == expected, (text, limit)


# -- chat templates that ask for unbounded work ------------------------------------------------------------
TEMPLATE_BOMBS = {
    "string-times": ("{{ 'x' * 10000000000 }}", "repeated sequence"),
    "list-times": ("{{ ([0] * 1000000000)|length }}", "repeated sequence"),
    "tojson-indent": ("{{ messages|tojson(indent=1000000000) }}", "tojson indent"),
    "nested-range": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "range()"),
    "recursive-macro": ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "RecursionError"),
    "doubling": ("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
                 "{{ ns.s }}", "concatenation"),
    "center": ("{{ 'x'.center(10000000000) }}", "str.center"),
    "expandtabs": ("{{ ('\t' * 100000000).expandtabs() }}", "str.expandtabs"),
    "printf-width": ("{{ '%999999999d' % 1 }}", "wider than"),
    "join-separator": ("{{ range(100000)|map('string')|join('x' * 100000) }}", "'join' filter"),
    "power": ("{{ 2 ** 100000000 }}", "integer over"),
    "division": ("{{ 1 / 0 }}", "ZeroDivisionError"),
    "int-plus-str": ("{{ 1 + 'a' }}", "TypeError"),
    "same-range-twice": ("{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}",
                         "took over 1 s"),
}


@pytest.mark.parametrize("name", list(TEMPLATE_BOMBS))
def test_template_bombs_are_record_errors(name: str, tmp_path: Path, tok: Path) -> None:
    source, words = TEMPLATE_BOMBS[name]
    template = tmp_path / f"{name}.jinja"
    template.write_text(source)
    data = write_jsonl(tmp_path / "d.jsonl", [GOOD, GOOD])
    seconds = 1 if "took over" in words else 20  # only the time limit's own case races the clock
    message = refused(run(data, "-t", tok, "--chat-template", template, "--max-render-seconds", seconds, timeout=40),
                      "d.jsonl:1", f"chat template {template}", words)
    assert "failed on this record" in message or "took over" in message


def test_template_errors_skip_under_skip_invalid(tmp_path: Path, tok: Path) -> None:
    """A template that fails on some records only: those are skipped, the rest counted."""
    template = tmp_path / "picky.jinja"
    template.write_text("{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>' }}"
                        "{% if m.content == 'boom' %}{{ 'x' * 10000000000 }}{% endif %}{% endfor %}")
    bad = {"messages": [{"role": "user", "content": "boom"}, {"role": "assistant", "content": "a"}]}
    data = write_jsonl(tmp_path / "d.jsonl", [GOOD, bad, GOOD])
    result = skipped(run(data, "-t", tok, "--chat-template", template, "--skip-invalid", "--json", "--mask", "all"),
                     "template error", 2)
    assert result["skip_examples"][0].startswith(f"{data}:2: chat template {template} failed on this record")


# -- many turns ----------------------------------------------------------------------------------------------
def _turns(n: int) -> dict:
    return {"messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(n)]}


def test_many_turns_without_markers_are_refused_fast(tmp_path: Path, plain_tok: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [_turns(100_000), GOOD])
    refused(run(data, "-t", plain_tok, timeout=30), "d.jsonl:1", "50,000 trained turns", "every prefix",
            "generation markers")
    data = write_jsonl(tmp_path / "d.jsonl", [_turns(10_000), GOOD])
    proc = run(data, "-t", plain_tok, "--mask", "last", "--json", timeout=30)  # one prefix: counted
    assert proc.returncode == 0 and json.loads(proc.stdout)["examples"] == 2


def test_many_turns_with_markers_are_counted_in_linear_time(tmp_path: Path, tok: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [_turns(20_000)])
    proc = run(data, "-t", tok, "--json", timeout=45)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["trained_tokens"] > 10_000


# -- files that are not files, names that are too long, loops ---------------------------------------------------
def test_fifos_are_refused(tmp_path: Path, tok: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    refused(run(fifo, "-t", tok, timeout=20), "pipe.jsonl", "FIFO")
    data = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    refused(run(data, "-t", tok, "--chat-template", fifo, timeout=20), "pipe.jsonl", "chat template", "FIFO")
    folder = tmp_path / "tok"
    shutil.copytree(tok, folder)
    (folder / "tokenizer.json").unlink()
    os.mkfifo(folder / "tokenizer.json")
    refused(run(data, "-t", folder, timeout=20), "tokenizer.json", "FIFO")


def test_names_too_long(tmp_path: Path, tok: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    refused(run("x" * 5000 + ".jsonl", "-t", tok), "File name too long")
    refused(run(data, "-t", "a/" * 3000 + "x"), "File name too long")


def test_glob_through_symlink_loops_ends(tmp_path: Path, tok: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    write_jsonl(tmp_path / "a" / "b" / "d.jsonl", [GOOD])
    for name, target in (("up", ".."), ("top", "../.."), ("self", ".")):  # three loops: 3^depth paths unfollowed
        (tmp_path / "a" / "b" / name).symlink_to(target)
    proc = run(f"{tmp_path}/**/*.jsonl", "-t", tok, "--json", timeout=30)
    assert proc.returncode == 0 and json.loads(proc.stdout)["examples"] == 1, proc.stderr
    proc = run(tmp_path, "-t", tok, "--json", timeout=30)  # a folder is walked the same way
    assert proc.returncode == 0 and json.loads(proc.stdout)["examples"] == 1, proc.stderr


def test_workers_are_capped_at_the_cores(tmp_path: Path, tok: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import loraplan.data.counting as counting
    import loraplan.data.parallel as parallel
    from loraplan.data import count_trained_tokens

    seen: list[int] = []
    monkeypatch.setattr(counting, "available_cores", lambda: 2)
    monkeypatch.setattr(parallel, "run_parallel", lambda *args: seen.append(args[-1]))
    data = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    with pytest.raises(Exception, match="no records found"):  # the stub counted nothing
        count_trained_tokens(data, str(tok), workers=200)
    assert seen == [2]


# -- record values and tokenizer files no check foresaw ------------------------------------------------------
@pytest.mark.parametrize(("record", "words"), [
    ({**GOOD, "tools": "[not json"}, "'tools' is a string that is not JSON"),
    ({**GOOD, "tools": "plain text"}, "'tools' is a string that is not JSON"),
    ({"messages": [{"role": "user", "content": [1, 2]}, {"role": "assistant", "content": "a"}]}, "TypeError"),
    ({"instruction": "q", "input": ["x"], "output": "a"}, "field 'input' must be a string"),
    ({"messages": "[" * 100_000}, "messages must be a non-empty list"),
])
def test_record_values_are_record_errors(record: dict, words: str, tmp_path: Path, tok: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [record])
    refused(run(data, "-t", tok), "d.jsonl:1", words)


def test_deeply_nested_json_is_a_record_error(tmp_path: Path, tok: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text("[" * 200_000 + "]" * 200_000 + "\n" + json.dumps(GOOD) + "\n")
    skipped(run(path, "-t", tok, "--skip-invalid", "--json"), "invalid JSON", 1)


def test_broken_tokenizer_files(tmp_path: Path, tok: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    missing = tmp_path / "missing"
    shutil.copytree(tok, missing)
    config = json.loads((missing / "tokenizer_config.json").read_text())
    (missing / "tokenizer_config.json").write_text(json.dumps({**config, "add_bos_token": True, "bos_token": "<no>"}))
    refused(run(data, "-t", missing), "tokenizer_config.json", "'<no>'", "does not have")
    for name in ("tokenizer_config.json", "tokenizer.json", "chat_template.jinja"):
        broken = tmp_path / f"latin1-{name}"
        shutil.copytree(tok, broken)
        (broken / name).write_bytes(b"\xff\xfe" + (broken / name).read_bytes())
        refused(run(data, "-t", broken), name, "not UTF-8")
