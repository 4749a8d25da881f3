"""Read tensor names and shapes from safetensors headers without touching the weights.

A safetensors file starts with an 8-byte little-endian header length and a JSON object that maps
tensor names to dtype, shape and offsets. We read only that, refuse absurd lengths, and never
load a byte of weights.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from loraplan.errors import ConfigError, InputFileError
from loraplan.userfiles import open_user_file

MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_DIMS = 8  # weights are 1-D to 3-D (stacked experts); convolutions reach 5
MAX_DIM = 1 << 32  # the largest real dimension is a vocabulary of a few hundred thousand


def read_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from one .safetensors file (metadata entry skipped)."""
    try:
        with open_user_file(path, what="safetensors file") as fh:  # regular files only: a FIFO never blocks
            prefix = fh.read(8)
            if len(prefix) != 8:
                raise ConfigError(f"{path}: too short to be a safetensors file")
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES:
                raise ConfigError(f"{path}: safetensors header claims {length:,} bytes (limit 100 MB); refusing")
            raw = fh.read(length)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    except InputFileError as exc:
        raise ConfigError(str(exc)) from exc
    if len(raw) != length:
        raise ConfigError(f"{path}: header truncated ({len(raw):,} of {length:,} bytes)")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: safetensors header is not valid JSON ({exc})") from exc
    except (RecursionError, ValueError) as exc:  # nesting past the recursion limit; a 4300-digit number
        raise ConfigError(f"{path}: safetensors header is not a usable JSON object ({type(exc).__name__})") from exc
    if not isinstance(header, dict):
        raise ConfigError(f"{path}: safetensors header is not a JSON object")
    return shapes_from_header(header, str(path))


def shapes_from_header(header: dict[str, object], where: str) -> dict[str, tuple[int, ...]]:
    """Validate a parsed header and keep name -> shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if (not isinstance(shape, list) or len(shape) > MAX_DIMS
                or not all(type(d) is int and 0 <= d <= MAX_DIM for d in shape)):
            raise ConfigError(f"{where}: tensor `{name}` has no valid shape (up to {MAX_DIMS} whole numbers "
                              f"0..{MAX_DIM:,}), got {shape!r:.60}")
        shapes[name] = tuple(shape)
    return shapes


def read_folder(folder: Path) -> dict[str, tuple[int, ...]]:
    """All tensors of every .safetensors file in a checkpoint folder."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        shapes.update(read_header(file))
    return shapes
