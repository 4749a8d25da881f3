"""What the adapter must learn: trained (loss-carrying) tokens of a training set.

    limits.py     DataLimits: per-record bounds (record bytes, render time) and what scales with them
    sources.py    files, folders, globs, hub data sets -> raw records (file:line attached)
    readers.py    JSONL, JSON, CSV/TSV, Parquet (and .gz/.zst) streamed with capped reads
    records.py    record formats (messages, ShareGPT, prompt/completion, Alpaca, text, preference) -> sequences
    template.py   chat templates rendered as transformers renders them, generation spans tracked
    sandbox.py    the Jinja sandbox with work bounded (sizes, loops, time): a hostile template is a record error
    tokenizer.py  tokenizer.json + template + special tokens, without importing transformers
    masking.py    loss-mask modes -> what to measure (generation spans, or prompt prefixes)
    measure.py    one batched encode -> token counts and trained ranges, exact against the oracles
    result.py     TokenCount and the bounded-memory Tally
    counting.py   count_trained_tokens: the pipeline (render thread + parallel Rust encode)
    parallel.py   the same pipeline in worker processes, one per core, for files over 32 MiB
    sampling.py   --sample: reservoir sample, scaled estimate, 95% interval
    estimate.py   no tokenizer: byte-based estimate, labelled as such

Nothing here imports torch or transformers at import time.
"""

from loraplan.data.counting import count_trained_tokens
from loraplan.data.errors import (
    DataError,
    DataSourceError,
    InvalidRecordError,
    MaskError,
    TokenizerError,
    TokenizerUnavailableError,
)
from loraplan.data.limits import DataLimits
from loraplan.data.masking import MaskMode
from loraplan.data.records import RecordFormat
from loraplan.data.result import ConfidenceInterval, SideCount, TokenCount
from loraplan.data.tokenizer import TokenizerBundle, load_tokenizer

__all__ = [
    "ConfidenceInterval",
    "DataError",
    "DataLimits",
    "DataSourceError",
    "InvalidRecordError",
    "MaskError",
    "MaskMode",
    "RecordFormat",
    "SideCount",
    "TokenCount",
    "TokenizerBundle",
    "TokenizerError",
    "TokenizerUnavailableError",
    "count_trained_tokens",
    "load_tokenizer",
]
