"""Training batches from loraplan.data: the same rendering and loss mask that `loraplan tokens` counts.

Each sequence is rendered and masked by loraplan.data's pipeline (record format detection, chat template,
generation markers or prefix rendering), encoded with the same tokenizer, truncated to `seq_len` like the
counter truncates, and turned into `labels` that are -100 outside the mask. So the label tokens of one
epoch are exactly `loraplan tokens`' trained_tokens for the same file, template and max length.

(transformers shifts labels inside the model, so a label at position 0 is never scored; with chat data
position 0 is a prompt token and never in the mask.)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loraplan.data.counting import CountOptions, Examples, plan_batches
from loraplan.data.errors import DataError, DataSourceError
from loraplan.data.masking import MaskMode, Planner
from loraplan.data.measure import Measurer
from loraplan.data.records import RecordFormat
from loraplan.data.result import Tally
from loraplan.data.sources import DataSet
from loraplan.data.template import ChatTemplate
from loraplan.data.tokenizer import TokenizerBundle

IGNORE_INDEX = -100  # the label value transformers' causal-LM loss skips
SPLIT_SEED = 0  # the held-out split never depends on the trial seed, so every trial is scored on the same rows


@dataclass(frozen=True)
class Tokenized:
    """One training sequence: token ids and labels (-100 outside the loss mask), both truncated to seq_len."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass(frozen=True)
class PreparedData:
    """A data set ready to train on.

    train / held_out: sequences (the held-out rows are a fixed fraction, chosen with SPLIT_SEED).
    untrained: sequences dropped because nothing in them carries loss (weight 0, empty mask).
    truncated: sequences longer than seq_len, cut like the trainer cuts them.
    mask: the loss-mask mode(s) applied; format: the record format read.
    """

    train: tuple[Tokenized, ...]
    held_out: tuple[Tokenized, ...]
    untrained: int
    truncated: int
    mask: str
    format: str


def tokenize(data: str | Sequence[str], bundle: TokenizerBundle, seq_len: int, mask: MaskMode | str = MaskMode.AUTO,
             record_format: RecordFormat | str = RecordFormat.AUTO) -> tuple[list[Tokenized], int, str, str]:
    """Every sequence of `data` as ids + labels; (sequences, truncated count, mask, format)."""
    options = CountOptions(RecordFormat(record_format), MaskMode(mask), seq_len)
    template = ChatTemplate(bundle.chat_template, bundle.special_tokens) if bundle.chat_template else None
    planner = Planner(template, options.mask, bundle.name)
    measurer = Measurer(bundle.backend, bundle.added_ids)
    examples = Examples(options.record_format, bundle.eos_token)
    tally = Tally(seq_len)
    out: list[Tokenized] = []
    truncated = 0
    for batch in plan_batches(DataSet(data), examples, planner, tally, skip_invalid=False):
        works = [w for _, ws in batch for w in ws]
        if any(w.side is not None for w in works):
            raise DataError("preference records (chosen/rejected) need a preference trainer; `run` and `validate` "
                            "train supervised data (messages, prompt/completion, text)")
        measured = measurer.measure(works)
        for flag in (False, True):
            index = [i for i, w in enumerate(works) if w.add_special is flag]
            encodings = measurer.encode([works[i].text for i in index], flag)
            for i, enc in zip(index, encodings, strict=True):
                work, (n, ranges) = works[i], measured[i]
                ids = list(enc.ids[:seq_len])
                labels = [IGNORE_INDEX] * len(ids)
                if work.weight != 0:
                    spans = [(0, len(ids))] if work.all_tokens else ranges
                    for start, stop in spans:
                        labels[start:min(stop, seq_len)] = ids[start:min(stop, seq_len)]
                truncated += n > seq_len
                out.append(Tokenized(tuple(ids), tuple(labels)))
    if not out:
        raise DataSourceError(f"{_name(data)}: no records to train on")
    return out, truncated, ",".join(sorted(planner.resolved)), examples.fmt.value


def prepare(data: str | Sequence[str], bundle: TokenizerBundle, seq_len: int, eval_fraction: float,
            mask: MaskMode | str = MaskMode.AUTO) -> PreparedData:
    """Tokenize, drop sequences with nothing to train, hold out `eval_fraction` of the rest."""
    sequences, truncated, mask_used, fmt = tokenize(data, bundle, seq_len, mask)
    trainable = [s for s in sequences if s.trained_tokens > 0]
    if not trainable:
        raise DataSourceError(f"{_name(data)}: no sequence has a token under the loss mask ({mask_used}); "
                              "check the chat template's generation markers or pass --mask all")
    order = list(range(len(trainable)))
    random.Random(SPLIT_SEED).shuffle(order)
    n_eval = round(len(trainable) * eval_fraction) if eval_fraction > 0 else 0
    n_eval = min(max(n_eval, 1 if eval_fraction > 0 else 0), len(trainable) - 1)
    held = frozenset(order[:n_eval])
    return PreparedData(
        train=tuple(s for i, s in enumerate(trainable) if i not in held),
        held_out=tuple(s for i, s in enumerate(trainable) if i in held),
        untrained=len(sequences) - len(trainable), truncated=truncated, mask=mask_used, format=fmt)


def _name(data: str | Sequence[str]) -> str:
    return data if isinstance(data, str) else ", ".join(map(str, data))


class SequenceDataset:
    """The torch map-style data set the Trainer samples from (plain lists; the collator makes tensors)."""

    def __init__(self, rows: Sequence[Tokenized]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.rows[index]
        return {"input_ids": row.input_ids, "labels": row.labels}


class PadCollator:
    """Right-pads a batch to its longest sequence: pad id in input_ids, -100 in labels, 0 in attention_mask."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"], dtype=torch.long)
            labels[i, :n] = torch.tensor(r["labels"], dtype=torch.long)
            attention[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": attention}
