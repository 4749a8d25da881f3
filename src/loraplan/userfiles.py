"""One guarded way to open a file a user handed us.

Every reader of user input (trainer configs, model configs and safetensors headers, chat templates,
data sets, sweep tables, calibration files) opens through here, because the failure modes are the
same everywhere and each is cheap to refuse up front:

- a FIFO, socket or device would block ``open`` or never end ``read``: the file is opened with
  ``O_NONBLOCK`` (so opening a FIFO does not wait for a writer) and refused unless ``fstat`` says it
  is a regular file;
- a 1 GB file where a 1 MiB config is expected costs memory: the size is checked on the open file
  descriptor before reading, and reads stop one byte past the limit (a file that grows while read is
  refused too);
- an ``OSError`` (missing, permission, ENAMETOOLONG, a folder) becomes one line naming the file.

Symlinks are followed for reading (the Hugging Face cache is made of them); what is checked is
the file they lead to. Bottom floor: imports nothing from loraplan but the error family.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from loraplan.errors import InputFileError

READ_CHUNK = 1 << 20  # bytes per read: memory follows the file's size, not the limit


def file_kind(mode: int) -> str:
    """What a non-regular file is, for messages: 'a folder', 'a FIFO (named pipe)', 'a device', ..."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def open_user_file(path: str | os.PathLike[str], *, what: str, max_bytes: int | None = None) -> BinaryIO:
    """Open a user's file for binary reading: regular files only, size checked before any read.

    ``what`` names the file's role in messages ("trainer config", "chat template"); ``max_bytes``
    refuses a larger file with the limit in the message (None: any size, for streamed data).
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot open the {what} ({exc.strerror or exc})") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputFileError(f"{path}: the {what} is {file_kind(info.st_mode)}; give a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise InputFileError(
                f"{path}: {info.st_size:,} bytes is too large for a {what} (limit {max_bytes:,} bytes)"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_user_bytes(path: str | os.PathLike[str], *, what: str, max_bytes: int) -> bytes:
    """The whole file, refused when it is (or grows) past ``max_bytes``."""
    chunks: list[bytes] = []
    size = 0
    with open_user_file(path, what=what, max_bytes=max_bytes) as fh:
        try:  # in pieces: one read(max_bytes + 1) reserves the whole limit up front, whatever the file's size
            while size <= max_bytes and (chunk := fh.read(min(READ_CHUNK, max_bytes + 1 - size))):
                chunks.append(chunk)
                size += len(chunk)
        except OSError as exc:
            raise InputFileError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from exc
    raw = b"".join(chunks)
    if len(raw) > max_bytes:
        raise InputFileError(f"{path}: too large for a {what} (more than the limit of {max_bytes:,} bytes)")
    return raw


def read_user_text(path: str | os.PathLike[str], *, what: str, max_bytes: int) -> str:
    """The whole file as UTF-8 text (a BOM is dropped); the first undecodable byte is named."""
    raw = read_user_bytes(path, what=what, max_bytes=max_bytes)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path}: the {what} is not UTF-8 text (byte {exc.start})") from exc
