"""One error family for everything a user can get wrong.

    LoraplanError (ValueError)
    ├── ModelNotFoundError        the reference names no catalogue entry, folder, file or hub repo
    ├── ConfigError               a config.json / safetensors header that cannot be read as a model
    ├── UnsupportedModelError     a config we cannot turn into an Architecture without help
    ├── UncalibratedFamilyError   no LR rule for the family: names the remedies
    ├── CalibrationError          a calibration file that cannot be used
    ├── InputFileError            a user file that cannot be opened or read safely (FIFO, too large, not UTF-8)
    ├── OutputFileError           a destination that must not be written (symlink, device, an input) or cannot be
    └── MissingExtraError (ImportError is not subclassed: the CLI treats it as user-fixable)

The CLI catches the root once and prints one line; messages say what to do next.
"""

from __future__ import annotations


class LoraplanError(ValueError):
    """Root of every error a user can fix; the CLI prints its message and exits non-zero."""


class ModelNotFoundError(LoraplanError):
    """A model reference that resolves to nothing."""


class ConfigError(LoraplanError):
    """A config or header that is not a readable model description."""


class UnsupportedModelError(LoraplanError):
    """An architecture loraplan cannot derive from the config alone."""


class UncalibratedFamilyError(LoraplanError):
    """No learning-rate rule is calibrated for this model family."""


class CalibrationError(LoraplanError):
    """A calibration file that is malformed or inconsistent."""


class InputFileError(LoraplanError):
    """A user file that is missing, not a regular file, over its size limit or not text."""


class OutputFileError(LoraplanError):
    """A destination that is a symlink, device, FIFO, folder or one of the command's inputs, or not writable."""


class MissingExtraError(LoraplanError):
    """An optional dependency is needed; the message names the extra to install."""


def require(module: str, extra: str, purpose: str) -> object:
    """Import an optional dependency or raise a message that says how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs `{module}`; install it with `pip install 'loraplan[{extra}]'`"
        ) from exc
