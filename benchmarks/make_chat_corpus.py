#!/usr/bin/env python3
"""Write a deterministic synthetic chat corpus (JSONL, one conversation per line).

Vendored from the team's shared bench folder (../shared/bench/make_chat_corpus.py), with type
hints added and the generator logic unchanged, so the benchmark runs from this repository alone
and writes byte-identical corpora (same seed, same Python minor version).

English text comes from the Python standard library's own documentation (pydoc_data.topics),
so the corpus needs no download.

Formats:
  messages            {"messages": [{"role": ..., "content": ...}, ...]}
  prompt-completion   {"prompt": "...", "completion": "..."}
  text                {"text": "..."}

Usage: make_chat_corpus.py OUT.jsonl --mb 100 [--format messages] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pydoc_data.topics import topics
from typing import Any


def sentences() -> list[str]:
    text = " ".join(topics.values())
    text = re.sub(r"\s+", " ", text)
    parts = re.split(r"(?<=[.!?]) ", text)
    return [p for p in parts if 20 <= len(p) <= 400]


def write_corpus(out: str, mb: float = 10.0, fmt: str = "messages", seed: int = 0) -> tuple[int, int]:
    """Write records until `mb` MiB; returns (records, bytes)."""
    rng = random.Random(seed)
    pool = sentences()
    target = int(mb * 1024 * 1024)
    written = 0
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        while written < target:
            turns = rng.choice([1, 1, 2, 3])
            msgs = []
            if rng.random() < 0.5:
                msgs.append({"role": "system", "content": " ".join(rng.sample(pool, 1))})
            for _ in range(turns):
                msgs.append({"role": "user", "content": " ".join(rng.sample(pool, rng.randint(1, 3)))})
                msgs.append({"role": "assistant", "content": " ".join(rng.sample(pool, rng.randint(2, 12)))})
            rec: dict[str, Any]
            if fmt == "messages":
                rec = {"messages": msgs}
            elif fmt == "prompt-completion":
                rec = {"prompt": msgs[-2]["content"], "completion": msgs[-1]["content"]}
            else:
                rec = {"text": " ".join(m["content"] for m in msgs)}
            line = json.dumps(rec, ensure_ascii=False) + "\n"
            f.write(line)
            written += len(line.encode("utf-8"))
            n += 1
    return n, written


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--mb", type=float, default=10.0, help="target size in MiB")
    ap.add_argument("--format", choices=["messages", "prompt-completion", "text"], default="messages")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n, written = write_corpus(args.out, args.mb, args.format, args.seed)
    print(f"wrote {n} records, {written / 1e6:.1f} MB to {args.out}")


if __name__ == "__main__":
    main()
