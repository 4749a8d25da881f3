"""Errors of the data package, all under the project's one root (loraplan.errors.LoraplanError).

    LoraplanError (ValueError)
    └── DataError                    anything wrong with a data set, a tokenizer or a template
        ├── DataSourceError          a path, glob, folder or hub data set that yields no readable file
        ├── InvalidRecordError       one record that cannot be counted: names file, line and what is wrong
        ├── TokenizerError           a tokenizer or chat template that cannot be loaded or rendered
        │   └── TokenizerUnavailableError  offline or gated: the byte estimate may stand in
        └── MaskError                a loss-mask mode the records cannot honour

Every message names the file and line (or row) where that makes sense, and what to do next.
"""

from __future__ import annotations

from loraplan.errors import LoraplanError


class DataError(LoraplanError):
    """Root of the data package's errors."""


class DataSourceError(DataError):
    """A data source that cannot be opened or holds no records."""


class InvalidRecordError(DataError):
    """One record that cannot be counted; `reason` is a short key used to tally skips."""

    def __init__(self, where: str, problem: str, reason: str = "malformed record") -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        """Rebuild from the three parts when a worker process sends the error back."""
        return type(self), (self.where, self.problem, self.reason)


class TokenizerError(DataError):
    """A tokenizer or chat template that cannot be used."""


class TokenizerUnavailableError(TokenizerError):
    """The tokenizer exists but cannot be fetched now (offline, gated): an estimate may stand in."""


class MaskError(DataError):
    """A loss-mask mode that does not apply to the records' format."""
