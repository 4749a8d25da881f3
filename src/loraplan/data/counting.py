"""count_trained_tokens: read, render, mask and count a training set, as fast as raw encode_batch.

The work splits in two: Python reads, parses and renders records (one template call per
conversation) on a background thread, while the main thread hands whole batches to the Rust
tokenizer, whose `encode_batch` releases the GIL and runs on every core. Queues hold at most a
few batches, so memory stays flat whatever the corpus size.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from loraplan.data.errors import DataError, InvalidRecordError, TokenizerUnavailableError
from loraplan.data.limits import DEFAULT_LIMITS, DataLimits
from loraplan.data.masking import MaskMode, Planner, Work
from loraplan.data.measure import Measurer
from loraplan.data.records import Example, RecordFormat, Sequence, detect_format, to_example
from loraplan.data.result import Tally, TokenCount
from loraplan.data.sources import DataSet, RawRecord, parse
from loraplan.data.template import ChatTemplate
from loraplan.data.tokenizer import TokenizerBundle, load_tokenizer, with_template
from loraplan.errors import LoraplanError

BATCH_RECORDS = 1024
BATCH_CHARS = 32 * 2**20  # a batch also ends at this much rendered text, so a few huge records stay few
PREFETCH_BATCHES = 3
PARALLEL_MIN_BYTES = 32 * 2**20  # below this, starting worker processes costs more than it saves
T = TypeVar("T", covariant=True)
Progress = Callable[[int, int | None, int], None]  # (bytes done, bytes total, tokens so far)


@dataclass(frozen=True)
class CountOptions:
    """How records are read and masked (the CLI's options, in one value)."""

    record_format: RecordFormat = RecordFormat.AUTO
    mask: MaskMode = MaskMode.AUTO
    max_length: int | None = None
    skip_invalid: bool = False
    limits: DataLimits = DEFAULT_LIMITS


def count_trained_tokens(
    data: str | Path | Seq[str | Path],
    tokenizer: str | TokenizerBundle | None,
    *,
    chat_template: str | Path | None = None,
    record_format: RecordFormat | str = RecordFormat.AUTO,
    mask: MaskMode | str = MaskMode.AUTO,
    max_length: int | None = None,
    split: str = "train",
    subset: str | None = None,
    skip_invalid: bool = False,
    sample: int | None = None,
    seed: int = 0,
    estimate_if_unavailable: bool = True,
    progress: Progress | None = None,
    workers: int | None = None,
    limits: DataLimits | None = None,
) -> TokenCount:
    """Count the tokens a trainer would train on `data` (files, folders, globs or a hub data set).

    tokenizer: local folder, tokenizer.json or hub id (or a loaded bundle); None gives the byte estimate.
    chat_template: a file that overrides the tokenizer's template.
    record_format / mask: 'auto' detects the format and picks the trainers' default mask for it.
    max_length: truncate each sequence like the trainer; tokens cut off are reported, not trained.
    sample: count a uniform random sample of this many records and scale up, with a 95% interval.
    estimate_if_unavailable: when the tokenizer cannot be fetched (offline, gated), estimate from bytes
        (TokenCount.estimated is then True) instead of raising TokenizerUnavailableError.
    workers: processes to count with; None uses every core once the files pass PARALLEL_MIN_BYTES; never more
        than the cores this process may use.
    limits: per-record bounds (record size, render time; loraplan.data.limits); None: the defaults.
    """
    limits = limits or DEFAULT_LIMITS
    options = CountOptions(RecordFormat(record_format), MaskMode(mask), max_length, skip_invalid, limits)
    if max_length is not None and (not isinstance(max_length, int) or max_length <= 0):
        raise DataError(f"--max-length must be a positive integer, got {max_length!r}")
    if workers is not None and (not isinstance(workers, int) or workers <= 0):
        raise DataError(f"--workers must be a positive integer, got {workers!r}")
    dataset = DataSet(data, split, subset, limits)
    bundle = None
    note = None
    if isinstance(tokenizer, TokenizerBundle):
        bundle = tokenizer
    elif tokenizer is not None:
        try:
            bundle = load_tokenizer(tokenizer, chat_template)
        except TokenizerUnavailableError as exc:
            if not estimate_if_unavailable:
                raise
            note = str(exc)
    if bundle is None:
        from loraplan.data.estimate import estimate_from_bytes

        name = tokenizer if isinstance(tokenizer, str) else None
        return estimate_from_bytes(dataset, options, name, note, sample, seed)
    if chat_template is not None and isinstance(tokenizer, TokenizerBundle):
        bundle = with_template(bundle, chat_template)
    if sample is not None:
        from loraplan.data.sampling import count_sample

        return count_sample(dataset, bundle, options, sample, seed, progress)
    if workers is None:
        big = dataset.total_bytes is not None and dataset.total_bytes >= PARALLEL_MIN_BYTES
        workers = available_cores() if big else 1
    workers = min(workers, available_cores())  # more processes than cores only cost memory
    return run_count(dataset, bundle, options, Tally(max_length), progress, workers).result(tokenizer=bundle.name)


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_count(records: Iterable[RawRecord], bundle: TokenizerBundle, options: CountOptions, tally: Tally,
              progress: Progress | None = None, workers: int = 1) -> Tally:
    """Feed raw records through render -> encode -> mask into `tally` and return it.

    workers > 1 (and a data set on disk): worker processes each render, encode and tally whole batches.
    Otherwise one process: a thread renders while the Rust tokenizer encodes on every core.
    """
    if workers > 1 and isinstance(records, DataSet):
        from loraplan.data.parallel import run_parallel

        run_parallel(records, bundle, options, tally, progress, workers)
    else:
        pipeline = Pipeline(bundle, options)
        for batch in _prefetch(pipeline.plan(records, tally), PREFETCH_BATCHES):
            pipeline.measure(batch, tally)
            if progress is not None and isinstance(records, DataSet):
                progress(records.done_bytes, records.total_bytes, tally.total)
        pipeline.finish(tally)
    if tally.examples == 0 and not tally.skip_reasons:
        from loraplan.data.errors import DataSourceError

        raise DataSourceError("no records found")
    return tally


class Pipeline:
    """Render, encode and tally with one tokenizer: the same code in-process and in worker processes."""

    def __init__(self, bundle: TokenizerBundle, options: CountOptions, record_format: RecordFormat | None = None,
                 detected_at: str | None = None) -> None:
        template = ChatTemplate(bundle.chat_template, bundle.special_tokens, options.limits,
                                bundle.template_name) if bundle.chat_template else None
        self.planner = Planner(template, options.mask, bundle.name)
        self.measurer = Measurer(bundle.backend, bundle.added_ids)
        self.examples = Examples(record_format or options.record_format, bundle.eos_token, detected_at)
        self.skip_invalid = options.skip_invalid

    def plan(self, records: Iterable[RawRecord], tally: Tally) -> Iterator[list[tuple[Example, list[Work]]]]:
        return plan_batches(records, self.examples, self.planner, tally, self.skip_invalid)

    def measure(self, batch: list[tuple[Example, list[Work]]], tally: Tally) -> None:
        works = [w for _, ws in batch for w in ws]
        measured = self.measurer.measure(works)
        at = 0
        for _, ws in batch:
            tally.add_example([(w, n, ranges) for w, (n, ranges) in zip(ws, measured[at:at + len(ws)], strict=True)])
            at += len(ws)

    def finish(self, tally: Tally) -> None:
        tally.format = tally.format or self.examples.fmt.value
        tally.masks |= self.planner.resolved


class Examples:
    """Raw record -> Example, detecting the format from the first record when it is 'auto'."""

    def __init__(self, record_format: RecordFormat, eos_token: str | None, detected_at: str | None = None) -> None:
        self.fmt = record_format
        self.detected_at = detected_at
        self.eos_token = eos_token

    def build(self, raw: RawRecord) -> Example:
        record = parse(raw)
        if self.fmt is RecordFormat.AUTO:
            if not isinstance(record, dict):
                raise InvalidRecordError(raw.where, f"a record must be a JSON object, got {type(record).__name__}")
            self.fmt, self.detected_at = detect_format(record, raw.where), raw.where
        elif self.detected_at is not None and isinstance(record, dict) and not _fits(record, self.fmt):
            raise InvalidRecordError(raw.where, f"record does not look like {self.fmt.value} (the format detected at "
                                     f"{self.detected_at}); mixed formats need --format", "mixed formats")
        return to_example(record, self.fmt, raw.where, self.eos_token)


def _fits(record: dict[str, Any], fmt: RecordFormat) -> bool:
    try:
        return detect_format(record, "") is fmt
    except InvalidRecordError:
        return False


class SequencePlanner(Protocol[T]):
    def plan(self, seq: Sequence, where: str, weight: int = 1) -> T: ...


def plan_batches(records: Iterable[RawRecord], examples: Examples, planner: SequencePlanner[T], tally: Tally,
                 skip_invalid: bool) -> Iterator[list[tuple[Example, list[T]]]]:
    """Batches of (example, planned sequences); invalid records raise, or are tallied as skips (--skip-invalid)."""
    batch: list[tuple[Example, list[T]]] = []
    chars = 0
    for raw in records:
        try:
            example, works = _plan_one(raw, examples, planner)
        except InvalidRecordError as exc:
            if not skip_invalid:
                raise
            tally.skip(exc.reason, str(exc))
            continue
        batch.append((example, works))
        chars += sum(len(getattr(w, "text", "")) for w in works)
        if len(batch) >= BATCH_RECORDS or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _plan_one(raw: RawRecord, examples: Examples, planner: SequencePlanner[T]) -> tuple[Example, list[T]]:
    """One record's example and planned sequences; an unexpected error from its content is that record's error."""
    try:
        example = examples.build(raw)
        return example, [planner.plan(seq, raw.where, example.weight) for seq in example.sequences]
    except LoraplanError:
        raise
    except Exception as exc:  # a value of a type no check foresaw: name it, never a traceback
        raise InvalidRecordError(raw.where, f"cannot use this record ({type(exc).__name__}: {str(exc)[:200]})",
                                 "malformed record") from exc


_DONE = object()


def _prefetch(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """Run `items` on a background thread, at most `depth` ahead; its exceptions re-raise here."""
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                slots.put(item)
            slots.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            slots.put(exc)

    thread = threading.Thread(target=produce, name="loraplan-render", daemon=True)
    thread.start()
    try:
        while (item := slots.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                slots.get(timeout=0.05)
        thread.join()
