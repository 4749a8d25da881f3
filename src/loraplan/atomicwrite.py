"""One safe way to write a file the user asked for (`-o`, `--fix -o`, `--plot`).

The new content goes to a temporary file created with ``O_EXCL | O_NOFOLLOW`` under a random name in
the destination's folder (so a name planted in advance, or a symlink there, is never opened), is
flushed to disk, then renamed over the destination in one step: a reader sees the old file or the
new one, never half of either, and a crash leaves at most a stray temporary file (removed on every
error we see).

The destination itself is checked with ``lstat`` before anything is written:

- a symlink is refused rather than followed or replaced (the user may not know where it points);
- a device node, FIFO, socket or folder is refused (``plan -o /dev/full`` as root would otherwise
  replace the device node with a regular file);
- a file that is one of the command's own inputs is refused (``calibrate SWEEP.md -o SWEEP.md`` would
  destroy the sweep table), except where rewriting the input is the documented feature (``check --fix``).

An existing file keeps its permission bits; a new one gets the usual ``0o666`` less the umask, as
``open(..., "w")`` would give it. Bottom floor: imports nothing from loraplan but the error family.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from loraplan.errors import OutputFileError
from loraplan.userfiles import file_kind

_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _umask() -> int:
    """The process umask (read by setting and restoring it: there is no getter before Python 3.13)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _same_file(info: os.stat_result, other: str | os.PathLike[str]) -> bool:
    try:
        theirs = os.stat(other)
    except (OSError, ValueError):
        return False
    return (info.st_dev, info.st_ino) == (theirs.st_dev, theirs.st_ino)


def _destination_mode(path: Path, inputs: Iterable[str | os.PathLike[str]]) -> int:
    """The mode the written file gets; refuses a destination that must not be replaced."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return 0o666 & ~_umask()
    except OSError as exc:
        raise OutputFileError(f"{path}: cannot write here ({exc.strerror or exc})") from exc
    if stat.S_ISLNK(info.st_mode):
        raise OutputFileError(f"{path}: is a symbolic link; refusing to write through it (give the real path)")
    if not stat.S_ISREG(info.st_mode):
        raise OutputFileError(f"{path}: is {file_kind(info.st_mode)}; refusing to replace it (give a file name)")
    for other in inputs:
        if _same_file(info, other):
            raise OutputFileError(f"{path}: is also an input of this command ({other}); write to another file")
    return stat.S_IMODE(info.st_mode)


def write_atomic(path: str | os.PathLike[str], content: str | bytes,
                 inputs: Iterable[str | os.PathLike[str]] = ()) -> None:
    """Write ``content`` (text as UTF-8) to ``path`` atomically; ``inputs`` are files it must not replace."""
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    mode = _destination_mode(path, inputs)
    folder = path.parent if str(path.parent) else Path(".")
    tmp = folder / f".{path.name[:64]}.{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(tmp, _TEMP_FLAGS, 0o600)
    except OSError as exc:
        raise OutputFileError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputFileError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
