"""Trial throughput: loraplan's trial engine vs TRL's SFTTrainer + PEFT, and Ray Tune's overhead per trial.

    python benchmarks/bench_trials.py [--steps 30] [--batch-size 8] [--seq-len 256] [--skip-ray]

(a) the same tiny random-init model (a catalogue architecture shrunk to --layers/--hidden), the same chat
    data (examples/chat.jsonl, assistant tokens trained), batch, sequence length, steps, LR, LoRA rank and
    alpha, on the CPU in fp32, no held-out evaluation: tokens/s = non-padding input tokens / training wall
    time, as the engine measures it and as transformers counts it for TRL (`num_input_tokens_seen`).
    The ratio engine / TRL is printed (target >= 1.0).
(b) trials of about --trial-seconds (60 s end to end: steps chosen from two short runs)
    as the user runs them, through the installed console script in fresh processes: `loraplan run` per
    trial (directly) against one `loraplan sweep` over the same trials (a Ray Tune experiment, on the Ray
    instance the command starts and stops), for one trial and for three, alternated --repeat times:
    overhead = (sweep - runs) / runs, everything included.
Both sides start cold (model and data caches cleared), in one run, one after the other.
"""

from __future__ import annotations

import argparse
import os
import statistics
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
LORAPLAN = str(Path(sys.executable).with_name("loraplan"))  # the console script installed next to this Python


def engine_trial(args: argparse.Namespace) -> dict[str, float]:
    from loraplan.train.engine import TrialSpec, clear_cache, default_setup, run_trial
    from loraplan.train.models import ModelRef

    clear_cache()
    spec = TrialSpec(setup=default_setup(), model=ModelRef(MODEL, True, args.layers, args.hidden), data=str(DATA),
                     tokenizer=str(TOKENIZER), steps=args.steps, lr=args.lr, rank=args.rank, alpha=32.0,
                     batch_size=args.batch_size, seq_len=args.seq_len, eval_fraction=0.0, seed=0,
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


def cli_args(args: argparse.Namespace, steps: int) -> list[str]:
    """The trial both sides run, as a user types it."""
    return [MODEL, "--random-init", "--layers", str(args.layers), "--hidden", str(args.hidden), "--data", str(DATA),
            "--tokenizer", str(TOKENIZER), "--steps", str(steps), "--batch-size", str(args.batch_size),
            "--seq-len", str(args.seq_len), "--json"]


def timed(command: list[str]) -> tuple[float, dict]:
    import json

    start = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, json.loads(done.stdout)


def ray_overhead(args: argparse.Namespace, steps: int, lrs: list[float]) -> dict[str, list[float]]:
    """`loraplan run` once per LR (each trial directly, one after the other) against one `loraplan sweep` over
    the same LRs (the same trials on a Ray instance the command starts and stops; every CPU per trial, so
    the trials run one after the other as the direct ones do), through the installed console script,
    alternated `--repeat` times so that drifts of a shared machine hit both sides."""
    common = cli_args(args, steps)
    out: dict[str, list[float]] = {"run_s": [], "sweep_s": [], "run_trial_s": [], "sweep_trial_s": []}
    for _ in range(args.repeat):
        walls, trains = [], []
        for lr in lrs:
            wall, record = timed([LORAPLAN, "run", *common, "--lr", f"{lr:g}", "--rank", str(args.rank)])
            walls.append(wall)
            trains.append(record["train_seconds"])
        out["run_s"].append(sum(walls))
        out["run_trial_s"].append(sum(trains))
        with tempfile.TemporaryDirectory() as store:
            wall, result = timed([LORAPLAN, "sweep", *common, "--lrs", ",".join(f"{lr:g}" for lr in lrs),
                                  "--ranks", str(args.rank), "--cpus-per-trial", str(os.cpu_count() or 1),
                                  "--store", str(Path(store) / "s")])
        out["sweep_s"].append(wall)
        out["sweep_trial_s"].append(sum(t["wall_s"] for t in result["trials"]))
    return out


def steps_for(args: argparse.Namespace) -> int:
    """Steps for which `loraplan run` takes about --trial-seconds end to end, from two short runs (--steps and
    3 x --steps): their difference is the time per step, the rest does not grow with the steps (start-up,
    loading, the fixed number of held-out evaluations)."""
    walls = [timed([LORAPLAN, "run", *cli_args(args, n), "--lr", str(args.lr), "--rank", str(args.rank)])[0]
             for n in (args.steps, 3 * args.steps)]
    per_step = max(1e-3, (walls[1] - walls[0]) / (2 * args.steps))
    fixed = max(0.0, walls[0] - args.steps * per_step)
    return max(1, round((args.trial_seconds - fixed) / per_step))


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
    parser.add_argument("--trial-seconds", type=float, default=60.0,
                        help="(b): steps chosen from two short runs so that a trial takes about this long")
    parser.add_argument("--repeat", type=int, default=2, help="(b): run/sweep pairs")
    parser.add_argument("--ray-sets", type=int, default=2, choices=(1, 2),
                        help="(b): 1 = the one-trial comparison only, 2 = also three trials")
    parser.add_argument("--skip-trl", action="store_true")
    args = parser.parse_args()
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
        steps = steps_for(args)
        for lrs in ([args.lr], [args.lr * f for f in (0.3, 1.0, 3.0)])[:args.ray_sets]:
            ray = ray_overhead(args, steps, lrs)
            what = "one trial" if len(lrs) == 1 else f"{len(lrs)} trials (LRs {', '.join(f'{v:g}' for v in lrs)})"
            for n, (run, sweep) in enumerate(zip(ray["run_s"], ray["sweep_s"], strict=True)):
                print(f"(b) {what}, {steps} steps each, pair {n + 1}: `loraplan run` x{len(lrs)} {run:.1f} s "
                      f"(trials {ray['run_trial_s'][n]:.1f} s), `loraplan sweep` {sweep:.1f} s (trials "
                      f"{ray['sweep_trial_s'][n]:.1f} s): overhead {(sweep - run) / len(lrs):+.1f} s per trial = "
                      f"{(sweep - run) / run:+.1%}", flush=True)
            run, sweep = statistics.median(ray["run_s"]), statistics.median(ray["sweep_s"])
            print(f"    {what}: median overhead {(sweep - run) / run:+.1%} of running them directly (target < 10% "
                  f"for a 60-second trial; Ray's start and stop included)", flush=True)


if __name__ == "__main__":
    main()
