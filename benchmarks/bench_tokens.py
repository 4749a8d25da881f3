#!/usr/bin/env python3
"""Token-counting benchmark: loraplan's full count against raw `tokenizers` encode_batch, in one run.

The issue's target is relative, so both sides are measured on the same machine, same corpus, same
run: (a) raw `encode_batch` of pre-rendered text on every core (rendering untimed), (b) optionally
transformers' per-example `apply_chat_template(..., return_assistant_tokens_mask=True)` on a subset,
(c) `count_trained_tokens` on the whole file (reading, rendering, masking, counting), with the peak
memory of its main process and of its worker processes. Each phase runs in its own process, one
after the other, so that phases neither share a core nor inherit each other's memory high-water mark.
With --repeat N, (a) and (c) alternate N times and the fastest run of each is kept: on a shared
machine, other load only ever slows a run down, so the best run is the closest to the code's speed.

    python benchmarks/bench_tokens.py                      # 100 MiB corpus, built once into the cache
    python benchmarks/bench_tokens.py --corpus my.jsonl    # any chat JSONL ({"messages": [...]})
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TOKENIZER = REPO / "examples" / "tokenizer"
TARGET_RATIO = 0.9
TARGET_MEMORY_MB = 500


def default_corpus(mb: float) -> Path:
    """A cache path outside the repository: the corpus is deterministic, so it is built once and reused."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "loraplan" / "bench"
    return cache / f"chat-{mb:g}mb-seed0.jsonl"


def ensure_corpus(path: Path, mb: float) -> None:
    if path.is_file():
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_chat_corpus import write_corpus

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    print(f"building a {mb:g} MiB corpus at {path} (once) ...", file=sys.stderr)
    write_corpus(str(partial), mb)
    partial.replace(path)


def peak_mb(who: int) -> float:
    """Max RSS in MB of this process (RUSAGE_SELF) or of its largest finished child (RUSAGE_CHILDREN)."""
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def phase_encode(corpus: Path, tokenizer: str, batches: list[int]) -> dict[str, Any]:
    """Raw encode_batch throughput: render every chat first (untimed), then time only the encoding.

    Each batch size is timed in turn and the fastest kept: rayon splits a bigger batch more evenly over
    the cores, so the best batch size is the strictest baseline.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    from loraplan.data import load_tokenizer
    from loraplan.data.template import ChatTemplate

    bundle = load_tokenizer(tokenizer)
    if bundle.chat_template is None:
        raise SystemExit(f"{tokenizer} has no chat template")
    template = ChatTemplate(bundle.chat_template, bundle.special_tokens)
    with corpus.open("rb") as lines:
        texts = [template.render(json.loads(line)["messages"])[0] for line in lines if line.strip()]
    by_batch = {}
    tokens = 0
    for batch in batches:
        tokens = 0
        start = time.perf_counter()
        for i in range(0, len(texts), batch):
            tokens += sum(len(e) for e in bundle.backend.encode_batch(texts[i:i + batch], add_special_tokens=False))
        by_batch[batch] = time.perf_counter() - start
    best = min(by_batch, key=by_batch.__getitem__)
    return {"phase": "encode", "records": len(texts), "tokens": tokens, "seconds": by_batch[best], "batch": best,
            "seconds_by_batch": by_batch}


def phase_template(corpus: Path, tokenizer: str, records: int) -> dict[str, Any]:
    """transformers' own path, one example at a time: what a trainer's data collator does."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    chats = []
    with corpus.open("rb") as lines:
        for line in lines:
            if len(chats) >= records:
                break
            if line.strip():
                chats.append(json.loads(line)["messages"])
    tokens = 0
    start = time.perf_counter()
    for chat in chats:
        out = tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        tokens += len(out["input_ids"])
    seconds = time.perf_counter() - start
    return {"phase": "template", "records": len(chats), "tokens": tokens, "seconds": seconds}


def phase_count(corpus: Path, tokenizer: str, workers: int | None) -> dict[str, Any]:
    """The full count, timed end to end (worker start-up included)."""
    from loraplan.data import count_trained_tokens
    from loraplan.data.counting import PARALLEL_MIN_BYTES, available_cores

    if workers is None:  # what count_trained_tokens decides, reported
        workers = available_cores() if corpus.stat().st_size >= PARALLEL_MIN_BYTES else 1
    start = time.perf_counter()
    result = count_trained_tokens(corpus, tokenizer, workers=workers)
    seconds = time.perf_counter() - start
    return {"phase": "count", "workers": workers, "records": result.examples, "tokens": result.total_tokens,
            "trained": result.trained_tokens, "seconds": seconds, "main_peak_mb": peak_mb(resource.RUSAGE_SELF),
            "worker_peak_mb": peak_mb(resource.RUSAGE_CHILDREN)}


def run_phase(args: argparse.Namespace, name: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", name, "--corpus", str(args.corpus), "--tokenizer", args.tokenizer,
           "--batch", args.batch, "--template-records", str(args.template_records)]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, help="chat JSONL to count (default: a generated corpus in the cache)")
    ap.add_argument("--mb", type=float, default=100.0, help="size of the generated corpus in MiB")
    ap.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER), help="tokenizer folder (default: examples/)")
    ap.add_argument("--batch", default="1024,16384",
                    help="texts per encode_batch call in phase (a); a comma list is timed in turn, fastest kept")
    ap.add_argument("--workers", type=int, help="worker processes of the count (default: automatic, every core)")
    ap.add_argument("--template-records", type=int, default=2000,
                    help="records for the apply_chat_template phase (0 skips it)")
    ap.add_argument("--repeat", type=int, default=1, help="alternate (a) and (c) N times, keep the fastest of each")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--phase", choices=["encode", "template", "count"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase is not None:
        work = {"encode": lambda: phase_encode(args.corpus, args.tokenizer, [int(b) for b in args.batch.split(",")]),
                "template": lambda: phase_template(args.corpus, args.tokenizer, args.template_records),
                "count": lambda: phase_count(args.corpus, args.tokenizer, args.workers)}[args.phase]
        print(json.dumps(work()))
        return
    args.corpus = args.corpus or default_corpus(args.mb)
    ensure_corpus(args.corpus, args.mb)
    runs: dict[str, list[dict[str, Any]]] = {"encode": [], "count": []}
    for i in range(max(1, args.repeat)):
        runs["encode"].append(run_phase(args, "encode"))
        if i == 0 and args.template_records > 0:
            runs["template"] = [run_phase(args, "template")]
        runs["count"].append(run_phase(args, "count"))
    phases = {name: min(runs[name], key=lambda p: p["seconds"]) for name in ("encode", "template", "count")
              if name in runs}
    count = phases["count"]
    count["main_peak_mb"] = max(p["main_peak_mb"] for p in runs["count"])
    count["worker_peak_mb"] = max(p["worker_peak_mb"] for p in runs["count"])
    for p in phases.values():
        p["tokens_per_s"] = p["tokens"] / p["seconds"]
    ratio = count["tokens_per_s"] / phases["encode"]["tokens_per_s"]
    n_workers = count["workers"]
    memory = count["main_peak_mb"] + (count["worker_peak_mb"] * n_workers if n_workers > 1 else 0)
    report = {"corpus": str(args.corpus), "corpus_mb": args.corpus.stat().st_size / 2**20, "cores": cores(),
              "workers": n_workers, "repeat": args.repeat, "phases": phases,
              "all_seconds": {name: [round(p["seconds"], 2) for p in done] for name, done in runs.items()},
              "ratio": ratio, "peak_memory_mb": memory,
              "same_tokens": count["tokens"] == phases["encode"]["tokens"],
              "meets_target": ratio >= TARGET_RATIO and memory < TARGET_MEMORY_MB}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"corpus {args.corpus} ({report['corpus_mb']:.0f} MiB, {count['records']:,} records), {cores()} cores, "
          f"best of {args.repeat}: {report['all_seconds']}")
    labels = {"encode": f"(a) raw encode_batch (batch {phases['encode']['batch']})",
              "template": "(b) apply_chat_template + mask", "count": "(c) loraplan count, end to end"}
    for name, p in phases.items():
        print(f"{labels[name]:<38} {p['tokens']:>12,} tokens {p['seconds']:>8.1f} s "
              f"{p['tokens_per_s'] / 1e6:>7.3f} M tok/s")
    print(f"ratio (c)/(a): {ratio:.2f} (target >= {TARGET_RATIO}); same token total: {report['same_tokens']}")
    workers = (f", {n_workers} workers <= {count['worker_peak_mb']:.0f} MB each" if n_workers > 1
               else " (counted in one process)")
    print(f"peak memory: main {count['main_peak_mb']:.0f} MB{workers}, total <= {memory:.0f} MB "
          f"(target < {TARGET_MEMORY_MB})")


if __name__ == "__main__":
    main()
