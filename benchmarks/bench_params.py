#!/usr/bin/env python3
"""`loraplan params` wall time: a built-in layout, and a layout read on the meta device (first and second call).

Each call runs the console script in a fresh process, as a user does, with an empty shape cache
at the start; the first call on a non-built-in layout imports torch and builds the model on the
meta device, the second reads the cached shapes. Printed: the fastest of --repeat runs of each,
and the ratios to the built-in layout, all measured in this one run.

    python benchmarks/bench_params.py                 # a BLOOM config (transformers' own class; no built-in layout)
    python benchmarks/bench_params.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("loraplan")), "params", *args, "--json"], env=env,
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--config-class", default="BloomConfig", help="a transformers config class")
    opts = parser.parse_args()
    import transformers

    work = Path(tempfile.mkdtemp(prefix="bench-params-"))
    config = work / "config.json"
    config.write_text(json.dumps(getattr(transformers, opts.config_class)().to_dict()))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    built_in, first, second = [], [], []
    try:
        for i in range(opts.repeat):
            env["LORAPLAN_CACHE_DIR"] = str(work / f"cache-{i}")
            built_in.append(_run(["meta-llama/Llama-3.1-8B"], env))
            first.append(_run([str(config)], env))
            second.append(_run([str(config)], env))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = {"built-in (Llama-3.1-8B)": min(built_in), f"{opts.config_class}, first call": min(first),
            f"{opts.config_class}, second call (cached)": min(second)}
    base = min(built_in)
    for name, seconds in best.items():
        print(f"{name:<45} {seconds:6.2f} s   x{seconds / base:5.2f} of built-in")


if __name__ == "__main__":
    main()
