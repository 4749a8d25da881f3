"""Trial throughput: loraplan's trial engine vs TRL's SFTTrainer + PEFT, and Ray Tune's overhead per trial.

    python benchmarks/bench_trials.py [--steps 30] [--batch-size 8] [--seq-len 256] [--skip-ray]

(a) the same tiny random-init model (a catalogue architecture shrunk to --layers/--hidden), the same chat
    data (examples/chat.jsonl, assistant tokens trained), batch, sequence length, steps, LR, LoRA rank and
    alpha, on the CPU in fp32, no held-out evaluation: tokens/s = non-padding input tokens / training wall
    time, as the engine measures it and as transformers counts it for TRL (`num_input_tokens_seen`).
    The ratio engine / TRL is printed (target >= 1.0).
(b) the same engine trial (with the engine's default held-out set, which a sweep scores) run directly
    (in a fresh process, as a Ray worker starts one; and in the warm benchmark process) and as a one-trial
    `loraplan sweep` on a Ray instance started beforehand (Ray's start-up is printed apart: a sweep pays
    it once): overhead = (Tune - direct) / direct.
Both sides start cold (model and data caches cleared), in one run, one after the other.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

DATA = ROOT / "examples" / "chat.jsonl"
TOKENIZER = ROOT / "examples" / "tokenizer"
MODEL = "meta-llama/Llama-3.2-1B"


def engine_trial(args: argparse.Namespace, eval_fraction: float = 0.0) -> dict[str, float]:
    from loraplan.train.engine import TrialSpec, clear_cache, default_setup, run_trial
    from loraplan.train.models import ModelRef

    clear_cache()
    spec = TrialSpec(setup=default_setup(), model=ModelRef(MODEL, True, args.layers, args.hidden), data=str(DATA),
                     tokenizer=str(TOKENIZER), steps=args.steps, lr=args.lr, rank=args.rank, alpha=32.0,
                     batch_size=args.batch_size, seq_len=args.seq_len, eval_fraction=eval_fraction, seed=0,
                     device="cpu")
    start = time.perf_counter()
    record = run_trial(spec)
    return {"tokens_per_s": record["tokens_per_s"], "train_s": record["train_seconds"],
            "tokens": record["input_tokens"], "wall_s": time.perf_counter() - start}


def trl_trial(args: argparse.Namespace) -> dict[str, float]:
    import json

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from loraplan.train.models import ModelRef, load_model, load_tokenizer_for

    ref = ModelRef(MODEL, True, args.layers, args.hidden)
    bundle, _ = load_tokenizer_for(ref, str(TOKENIZER))
    model = load_model(ref, bundle, torch.float32)  # the very architecture and init the engine trains
    tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZER))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    records = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    dataset = Dataset.from_list([{"messages": r["messages"]} for r in records])
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                           gradient_accumulation_steps=1, learning_rate=args.lr, lr_scheduler_type="constant",
                           warmup_steps=0, weight_decay=0.0, max_length=args.seq_len, assistant_only_loss=True,
                           packing=False, report_to="none", logging_steps=args.steps, save_strategy="no",
                           eval_strategy="no", seed=0, use_cpu=True, bf16=False, fp16=False,
                           include_num_input_tokens_seen="non_padding", dataloader_num_workers=0)
        peft_config = LoraConfig(r=args.rank, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=peft_config)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    tokens = trainer.state.num_input_tokens_seen
    return {"tokens_per_s": tokens / seconds, "train_s": seconds, "tokens": tokens}


def ray_overhead(args: argparse.Namespace) -> dict[str, float]:
    import ray

    from loraplan.train.engine import clear_cache
    from loraplan.train.sweep import OBJECT_STORE_BYTES, SweepSpec, run_sweep

    start = time.perf_counter()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(num_cpus=os.cpu_count() or 1, object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    ray_start = time.perf_counter() - start
    try:
        clear_cache()
        warm = engine_trial(args, eval_fraction=0.1)["wall_s"]  # a sweep trial scores a held-out set
        start = time.perf_counter()  # the same trial in a fresh process: imports and all, as a Ray worker pays
        subprocess.run([sys.executable, __file__, "--direct-trial", *sys.argv[1:]], check=True)
        direct = time.perf_counter() - start
        spec = SweepSpec(model=MODEL, data=(str(DATA),), lrs=(args.lr,), ranks=(args.rank,), steps=args.steps,
                         tokenizer=str(TOKENIZER), batch_size=args.batch_size, seq_len=args.seq_len,
                         random_init=True, layers=args.layers, hidden=args.hidden)
        with tempfile.TemporaryDirectory() as store:
            start = time.perf_counter()
            run_sweep(spec, Path(store) / "s", echo=False, cpus_per_trial=os.cpu_count() or 1)
            tuned = time.perf_counter() - start
    finally:
        ray.shutdown()
    return {"ray_start_s": ray_start, "direct_s": direct, "warm_s": warm, "tune_s": tuned,
            "overhead": (tuned - direct) / direct, "overhead_warm": (tuned - warm) / warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--direct-trial", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.direct_trial:  # (b)'s fresh-process baseline
        engine_trial(args, eval_fraction=0.1)
        return
    import torch

    print(f"{MODEL} random init, {args.layers} layers, hidden {args.hidden}; {args.steps} steps x batch "
          f"{args.batch_size} x seq {args.seq_len}; rank {args.rank}; torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} cores", flush=True)
    engine = engine_trial(args)
    print(f"(a) loraplan engine   {engine['tokens']:>9,} tokens  {engine['train_s']:7.1f} s  "
          f"{engine['tokens_per_s']:9.0f} tok/s", flush=True)
    if not args.skip_trl:
        trl = trl_trial(args)
        print(f"    TRL SFTTrainer    {trl['tokens']:>9,} tokens  {trl['train_s']:7.1f} s  "
              f"{trl['tokens_per_s']:9.0f} tok/s", flush=True)
        print(f"    ratio engine / TRL: {engine['tokens_per_s'] / trl['tokens_per_s']:.2f} (target >= 1.0)", flush=True)
    if not args.skip_ray:
        ray = ray_overhead(args)
        print(f"(b) one trial: in a fresh process {ray['direct_s']:.1f} s, in this warm process {ray['warm_s']:.1f} s, "
              f"as a one-trial sweep on Ray Tune {ray['tune_s']:.1f} s; overhead {ray['overhead']:+.1%} vs fresh, "
              f"{ray['overhead_warm']:+.1%} vs warm (target < 10% for a 60-second trial); Ray start-up "
              f"{ray['ray_start_s']:.1f} s once per sweep", flush=True)


if __name__ == "__main__":
    main()
