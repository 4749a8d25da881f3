"""--sample N: count a uniform random sample of records and scale up, with a 95% interval.

One pass draws the sample by reservoir sampling over raw records (JSONL lines are not even
parsed), which also counts the population exactly. The sample is then counted like the full
corpus, and totals are estimated as N x mean with a normal-approximation interval, corrected
for sampling without replacement. Skipped records enter the mean as zeros, so the estimate is
of the tokens the counted records carry.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import replace

from loraplan.data.counting import CountOptions, Progress, run_count
from loraplan.data.errors import DataError, DataSourceError
from loraplan.data.result import ConfidenceInterval, SideCount, Tally, TokenCount
from loraplan.data.sources import RawRecord
from loraplan.data.tokenizer import TokenizerBundle

Z_95 = 1.959964


def reservoir(records: Iterable[RawRecord], k: int, seed: int) -> tuple[list[RawRecord], int]:
    """A uniform sample of k records (Algorithm R) and the number of records seen; empty-file markers are ignored."""
    rng = random.Random(seed)
    sample: list[RawRecord] = []
    seen = 0
    for raw in records:
        if raw.problem is not None and raw.reason == "empty file":
            continue
        seen += 1
        if len(sample) < k:
            sample.append(raw)
        else:
            j = rng.randrange(seen)
            if j < k:
                sample[j] = raw
    return sample, seen


def interval(values: list[int], population: int, level_z: float = Z_95) -> tuple[int, int]:
    """Interval for population x mean(values), finite-population corrected; exact when the sample is everything."""
    n = len(values)
    if n == 0:
        return 0, 0
    mean = sum(values) / n
    if n >= population or n == 1:
        spread = 0.0
    else:
        var = sum((v - mean) ** 2 for v in values) / (n - 1)
        spread = level_z * math.sqrt(var / n) * math.sqrt(1 - n / population)
    return max(0, math.floor(population * (mean - spread))), math.ceil(population * (mean + spread))


def scale_sample(count: TokenCount, tally: Tally, population: int) -> TokenCount:
    """Turn a count of the sample into an estimate of the population."""
    records = list(tally.records or [])
    records += [(0, 0)] * count.skipped
    n = len(records)
    if n == 0 or n >= population:
        return count
    factor = population / n

    def up(x: int) -> int:
        return round(x * factor)

    ci = ConfidenceInterval(0.95, n, population, interval([r[0] for r in records], population),
                            interval([r[1] for r in records], population))
    return replace(
        count, examples=up(count.examples), total_tokens=up(count.total_tokens),
        trained_tokens=up(count.trained_tokens), trained_by_role={k: up(v) for k, v in count.trained_by_role.items()},
        truncated_examples=up(count.truncated_examples), truncated_tokens=up(count.truncated_tokens),
        truncated_trained_tokens=up(count.truncated_trained_tokens), untrained_examples=up(count.untrained_examples),
        skipped=up(count.skipped), skip_reasons={k: up(v) for k, v in count.skip_reasons.items()},
        sides={k: SideCount(up(s.examples), up(s.total_tokens), up(s.trained_tokens)) for k, s in count.sides.items()},
        estimated=True, method="sample", ci=ci)


def count_sample(dataset: Iterable[RawRecord], bundle: TokenizerBundle, options: CountOptions, size: int,
                 seed: int, progress: Progress | None = None) -> TokenCount:
    """Draw `size` records, count them exactly, scale to the population."""
    if size <= 0:
        raise DataError(f"--sample must be positive, got {size}")
    sample, population = reservoir(dataset, size, seed)
    if population == 0:
        raise DataSourceError("no records found")
    tally = run_count(sample, bundle, options, Tally(options.max_length, keep_records=True), progress)
    count = tally.result(tokenizer=bundle.name)
    return scale_sample(count, tally, population)
