"""A small reproduction of "LoRA Without Regret"'s headline claims on a 2-core CPU.

    python examples/reproduce_10x/reproduce.py [--out runs/reproduce_10x] [--pretrain-steps 400] [--steps 30]

1. corpus: the project's deterministic chat corpus (benchmarks/make_chat_corpus.py), split in two slices;
2. pretrain: a small Llama-architecture model from scratch on the first slice (plain next-token loss on the
   chat-templated text, AdamW, cosine), saved as a local checkpoint;
3. sweep: `loraplan sweep`'s engine on the second slice: LoRA at two ranks and full fine-tuning, adaptive
   until every optimum is bracketed;
4. report: the measured ratio of optimal LRs (LoRA / full fine-tuning, the article says about 10x), whether
   the early training-loss curves of different ranks at one LR coincide, and a plot (docs/reproduce_10x.png).

What comes out is whatever the measurement says; results.json keeps every number and the wall times.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

TOKENIZER = ROOT / "examples" / "tokenizer"
ARCHITECTURE = "meta-llama/Llama-3.2-1B"


def make_corpus(out: Path, pretrain_records: int) -> tuple[Path, Path]:
    corpus = out / "corpus.jsonl"
    if not corpus.is_file():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_chat_corpus.py"), str(corpus), "--mb", "3",
                        "--seed", "0"], check=True)
    lines = [ln for ln in corpus.read_text(encoding="utf-8").splitlines() if ln.strip()]
    pretrain, finetune = out / "pretrain.jsonl", out / "finetune.jsonl"
    tail = lines[pretrain_records:pretrain_records + 400]
    if len(tail) < 100:
        raise SystemExit(f"the corpus has {len(lines)} records: lower --pretrain-records")
    pretrain.write_text("\n".join(lines[:pretrain_records]) + "\n", encoding="utf-8")
    finetune.write_text("\n".join(tail) + "\n", encoding="utf-8")
    return pretrain, finetune


def pretrain(data: Path, folder: Path, args: argparse.Namespace) -> float:
    """Next-token pretraining from random init; returns the last loss."""
    import torch
    from transformers import AutoTokenizer

    from loraplan.train.models import ModelRef, load_model, load_tokenizer_for

    torch.manual_seed(0)
    ref = ModelRef(ARCHITECTURE, True, args.layers, args.hidden)
    bundle, _ = load_tokenizer_for(ref, str(TOKENIZER))
    model = load_model(ref, bundle, torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZER))
    ids: list[int] = []
    for line in data.read_text(encoding="utf-8").splitlines():
        text = tokenizer.apply_chat_template(json.loads(line)["messages"], tokenize=False)
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
    block = args.seq_len
    blocks = torch.tensor(ids[: len(ids) // block * block]).view(-1, block)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.pretrain_lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.pretrain_lr, total_steps=args.pretrain_steps,
                                                   pct_start=0.05)
    model.train()
    loss = math.nan
    for step in range(args.pretrain_steps):
        batch = blocks[torch.randint(0, len(blocks), (args.batch_size,))]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 50 == 0 or step == args.pretrain_steps - 1:
            print(f"  pretrain step {step + 1}/{args.pretrain_steps}: loss {loss.item():.3f}", flush=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return float(loss.item())


def coincidence(rows: list[dict], lr: float, first: int) -> float | None:
    """Max over the first `first` steps of (max - min) / mean training loss across ranks at one LR."""
    curves = [r["losses"][:first] for r in rows if r["method"] == "lora" and r["lr"] == lr and r["losses"]]
    if len(curves) < 2:
        return None
    steps = min(len(c) for c in curves)
    return max((max(c[i] for c in curves) - min(c[i] for c in curves)) / (sum(c[i] for c in curves) / len(curves))
               for i in range(steps))


def plot(rows: list[dict], summary: dict, lr: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for curve in summary["curves"]:
        points = [(p["lr"], p["loss"]) for p in curve["loss_by_lr"] if p["loss"] is not None]
        line = left.plot(*zip(*points, strict=True), marker="o", ms=4, label=curve["label"],
                         ls="--" if curve["method"] == "full" else "-")[0]
        if curve["optimum"]:
            left.axvline(curve["optimum"], color=line.get_color(), lw=0.8, ls=":")
    left.set_xscale("log")
    left.set_xlabel("learning rate")
    left.set_ylabel("final held-out loss")
    ratios = ", ".join(f"rank {r}: {v:.1f}x" for r, v in summary["lora_over_full"].items()) or "not bracketed"
    left.set_title(f"LoRA / full FT optimal LR: {ratios}", fontsize=9)
    left.legend(fontsize=8)
    for row in sorted(rows, key=lambda r: r["rank"]):
        if row["method"] == "lora" and row["lr"] == lr:
            right.plot(range(1, len(row["losses"]) + 1), row["losses"], label=f"rank {row['rank']}")
    right.set_xlabel("step")
    right.set_ylabel("training loss")
    right.set_title(f"LoRA training loss at lr {lr:g}, ranks overlaid", fontsize=9)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "reproduce_10x")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--pretrain-steps", type=int, default=400)
    parser.add_argument("--pretrain-lr", type=float, default=3e-3)
    parser.add_argument("--pretrain-records", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--ranks", default="4,64")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "reproduce_10x.png")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    pretrain_data, finetune_data = make_corpus(args.out, args.pretrain_records)
    base = args.out / "base"
    if not (base / "config.json").is_file():
        print("pretraining from scratch ...", flush=True)
        pretrain(pretrain_data, base, args)
    timings["corpus_and_pretrain_s"] = time.perf_counter() - start

    from loraplan.train.sweep import SweepSpec, run_sweep

    spec = SweepSpec(model=str(base), data=(str(finetune_data),), tokenizer=str(base),
                     lrs=(3e-4, 1e-3, 3e-3, 1e-2), ranks=tuple(int(r) for r in args.ranks.split(",")),
                     full_lrs=(3e-5, 1e-4, 3e-4, 1e-3), steps=args.steps, batch_size=args.batch_size,
                     seq_len=args.seq_len, adaptive=True, max_rounds=4)
    start = time.perf_counter()
    outcome = run_sweep(spec, args.out / "sweep")
    timings["sweep_s"] = time.perf_counter() - start
    summary = outcome.summary.as_dict()
    lora_best = [c for c in outcome.summary.curves if c.method == "lora"]
    common_lr = lora_best[0].best_lr if lora_best else spec.lrs[0]
    early = coincidence(outcome.rows, common_lr, first=10)
    result = {"summary": summary, "early_curve_spread": early, "early_curve_lr": common_lr, "timings": timings,
              "trials": len(outcome.rows), "rounds": outcome.rounds, "notes": outcome.notes}
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    plot(outcome.rows, summary, common_lr, args.plot)
    for curve in outcome.summary.curves:
        found = (f"optimum {curve.optimum:.3g} (bracket {curve.bracket[0]:.3g}-{curve.bracket[1]:.3g})"
                 if curve.optimum else f"not bracketed (best {curve.best_lr:.3g} at the edge)")
        print(f"{curve.label}: {found}")
    for rank, ratio in outcome.summary.ratios.items():
        print(f"LoRA rank {rank} / full fine-tuning optimal LR: {ratio:.1f}x (article: ~10x)")
    if early is not None:
        print(f"early training loss, first 10 steps at lr {common_lr:g}: ranks differ by at most {early:.1%}")
    print(f"time: corpus + pretraining {timings['corpus_and_pretrain_s']:.0f} s, sweep {timings['sweep_s']:.0f} s "
          f"({len(outcome.rows)} trials, {outcome.rounds} rounds); plot {args.plot}")


if __name__ == "__main__":
    main()
