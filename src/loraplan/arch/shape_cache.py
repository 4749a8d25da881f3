"""Weight shapes read on the meta device, cached by config content so the second call needs no torch.

Building a model on the meta device costs seconds and hundreds of MB (importing torch and
transformers); the shapes it yields depend only on the config, the transformers version and the
loraplan code that reads them. So the key is a SHA-256 over exactly those: the config's canonical
JSON, trust_remote_code, the transformers and loraplan versions (read from package metadata, no
import) and a digest of the modules that turn modules into weights. An entry is one JSON file in
the user cache folder ($LORAPLAN_CACHE_DIR, else $XDG_CACHE_HOME/loraplan, else ~/.cache/loraplan;
LORAPLAN_CACHE_DIR=off turns caching off). Writes are atomic (temp file + rename, mode 0600); an
entry that cannot be read, is not a regular file, is too large or does not validate is a miss and
is rewritten, never an error: the cache only ever saves time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from loraplan.arch.model import Kind, Role, Weight

ENV_VAR = "LORAPLAN_CACHE_DIR"
ENTRY_FORMAT = 1
MAX_ENTRY_BYTES = 64 * 1024 * 1024
# The code that turns a transformers model into Weights: a change to it invalidates every entry.
_READER_MODULES = ("meta.py", "from_weights.py", "roles.py", "model.py", "shape_cache.py")


def cache_dir() -> Path | None:
    """The folder entries live in, or None when caching is off."""
    configured = os.environ.get(ENV_VAR)
    if configured is not None:
        return None if configured.strip().lower() in ("", "off", "0", "none") else Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "loraplan" / "shapes"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


@cache
def _reader_digest() -> str:
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _READER_MODULES:
        with contextlib.suppress(OSError):
            digest.update((here / name).read_bytes())
    return digest.hexdigest()


def cache_key(config: dict[str, Any], trust_remote_code: bool) -> str:
    """SHA-256 of everything the derived shapes depend on."""
    material = {
        "format": ENTRY_FORMAT,
        "config": config,
        "trust_remote_code": trust_remote_code,
        "transformers": _version("transformers"),
        "loraplan": _version("loraplan"),
        "reader": _reader_digest(),
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _encode(weight: Weight) -> list[Any]:
    return [weight.name, weight.in_features, weight.out_features, weight.role.value, weight.layer,
            weight.num_experts, list(weight.parts), weight.kind.value]


def _decode(row: Any) -> Weight:
    name, inn, out, role, layer, experts, parts, kind = row
    ints = [inn, out, experts, *parts] + ([] if layer is None else [layer])
    if not isinstance(name, str) or not all(type(v) is int and v >= 0 for v in ints):
        raise ValueError("malformed weight row")
    return Weight(name, inn, out, Role(role), layer, experts, tuple(parts), Kind(kind))


def read_entry(name: str) -> Any:
    """The parsed JSON of one cache file, or None when it is absent, not a regular file, too large or not JSON."""
    folder = cache_dir()
    if folder is None:
        return None
    try:
        fd = os.open(folder / f"{name}.json", os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ENTRY_BYTES:
                return None
            return json.loads(fh.read(MAX_ENTRY_BYTES + 1))
    except (OSError, ValueError):
        return None


def write_entry(name: str, data: Any) -> None:
    """Write one cache file atomically (temp file, fsync, rename); a cache that cannot be written is skipped."""
    folder = cache_dir()
    if folder is None:
        return
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{name[:16]}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / f"{name}.json")
        tmp = None
    except OSError:
        return
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def load(key: str) -> tuple[list[Weight], int] | None:
    """(weights, total params) of a cached entry, or None on any kind of miss."""
    data = read_entry(key)
    try:
        if data.get("key") != key or type(data.get("total_params")) is not int:
            return None
        return [_decode(row) for row in data["weights"]], data["total_params"]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def store(key: str, weights: list[Weight], total_params: int) -> None:
    """Write an entry atomically; a cache that cannot be written is silently skipped."""
    write_entry(key, {"key": key, "total_params": total_params, "weights": [_encode(w) for w in weights]})
