"""Counting on every core with worker processes, each rendering, encoding and tallying whole batches.

Rendering is Python and holds the GIL, so one process cannot render faster than one core; on a
machine with many cores the Rust encoder would then wait for it. Workers (spawned, so no state
is shared by accident) receive batches of raw records (JSONL lines stay bytes) and send back a
small Tally; at most two batches per worker are in flight, so memory does not grow with the data.

The tokenizer reaches the workers through a temporary file, not the spawn pipe: CPython writes the
start-up payload to a pipe whose read end it still holds, so a worker that dies before reading a
payload over 64 KiB (a script without an `if __name__ == "__main__":` guard) would hang the parent.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from loraplan.data.counting import CountOptions, Pipeline, Progress
from loraplan.data.errors import DataError, InvalidRecordError
from loraplan.data.records import RecordFormat, detect_format
from loraplan.data.result import Tally
from loraplan.data.sources import DataSet, RawRecord, parse
from loraplan.data.tokenizer import TokenizerBundle

CHUNK_RECORDS = 256  # records per task: the last tasks end close together, pickling stays negligible
CHUNK_BYTES = 8 * 2**20  # ... or fewer, when the records are long
_WORKER: dict[str, Any] = {}


def run_parallel(records: DataSet, bundle: TokenizerBundle, options: CountOptions, tally: Tally,
                 progress: Progress | None, workers: int) -> None:
    """Count `records` into `tally` with `workers` processes, merging their tallies in file order."""
    head = Pipeline(bundle, options)  # compiles the template here, so a broken one fails as it does serially
    chunks = _chunks(records)
    fmt, detected_at, first = _detect(chunks, options.record_format, head, tally)
    if first is not None:
        with tempfile.TemporaryDirectory(prefix="loraplan-workers-") as folder:
            state = Path(folder) / "pipeline.pickle"
            state.write_bytes(pickle.dumps((bundle, options, fmt, detected_at)))
            try:
                _fan_out(itertools.chain([first], chunks), records, tally, progress, workers, state)
            except BrokenProcessPool as exc:
                raise DataError("a counting worker process died (killed for memory, or a script calling "
                                "count_trained_tokens without an `if __name__ == \"__main__\":` guard); "
                                "pass workers=1 (--workers 1) to count in one process") from exc
    head.finish(tally)
    if progress is not None:
        progress(records.done_bytes, records.total_bytes, tally.total)


def _fan_out(chunks: Iterator[list[RawRecord]], records: DataSet, tally: Tally, progress: Progress | None,
             workers: int, state: Path) -> None:
    """Submit chunks, at most two per worker ahead, and merge results in submission (file) order."""
    pending: deque[Future[Tally]] = deque()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start, initargs=(str(state),)) as pool:
        try:
            for chunk in chunks:
                pending.append(pool.submit(_count_chunk, chunk))
                if len(pending) >= 2 * workers:
                    tally.merge(pending.popleft().result())
                    if progress is not None:
                        progress(records.done_bytes, records.total_bytes, tally.total)
            while pending:
                tally.merge(pending.popleft().result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _chunks(records: DataSet) -> Iterator[list[RawRecord]]:
    """Tasks of CHUNK_RECORDS records, cut early at CHUNK_BYTES so that huge records do not pile up in flight."""
    chunk: list[RawRecord] = []
    size = 0
    for raw in records:
        chunk.append(raw)
        size += len(raw.payload) if isinstance(raw.payload, bytes) else 0
        if len(chunk) >= CHUNK_RECORDS or size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _detect(chunks: Iterator[list[RawRecord]], record_format: RecordFormat, head: Pipeline,
            tally: Tally) -> tuple[RecordFormat, str | None, list[RawRecord] | None]:
    """Fix the format once, as the serial count would, so that every worker applies the same one.

    Returns the format, where it was detected, and the rest of the chunk from that record on. The
    records before it are the ones a serial count rejects while still detecting (bad JSON, not an
    object, no known fields): they are counted here, so their errors and skips are the serial ones.
    """
    for chunk in chunks:
        if record_format is not RecordFormat.AUTO:
            return record_format, None, chunk
        for i, raw in enumerate(chunk):
            try:
                record = parse(raw)
                fmt = detect_format(record, raw.where) if isinstance(record, dict) else None
            except InvalidRecordError:
                fmt = None
            if fmt is not None:
                _count_here(head, chunk[:i], tally)
                return fmt, raw.where, chunk[i:]
        _count_here(head, chunk, tally)
    return record_format, None, None


def _count_here(pipeline: Pipeline, chunk: list[RawRecord], tally: Tally) -> None:
    for batch in pipeline.plan(chunk, tally):
        pipeline.measure(batch, tally)


def _start(state: str) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker: the workers are the parallelism
    bundle: TokenizerBundle
    options: CountOptions
    bundle, options, fmt, detected_at = pickle.loads(Path(state).read_bytes())
    _WORKER["pipeline"] = Pipeline(bundle, options, fmt, detected_at)
    _WORKER["max_length"] = options.max_length


def _count_chunk(chunk: list[RawRecord]) -> Tally:
    pipeline: Pipeline = _WORKER["pipeline"]
    tally = Tally(_WORKER["max_length"])
    _count_here(pipeline, chunk, tally)
    pipeline.finish(tally)
    return tally
