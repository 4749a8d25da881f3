"""The guarded open every reader of user files goes through: regular files only, size first."""

from __future__ import annotations

import os
import time

import pytest

from loraplan.errors import InputFileError
from loraplan.userfiles import open_user_file, read_user_bytes, read_user_text


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(InputFileError, match="FIFO"):
        read_user_text(fifo, what="trainer config", max_bytes=1024)
    assert time.monotonic() - started < 2


def test_folder_device_and_missing_file_are_one_line_errors(tmp_path):
    for path, words in [(tmp_path, "folder"), ("/dev/zero", "device"), (tmp_path / "nope", "No such file")]:
        with pytest.raises(InputFileError, match=words) as info:
            read_user_bytes(path, what="chat template", max_bytes=10)
        assert "\n" not in str(info.value)


def test_size_is_checked_before_reading(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b"x" * 101)
    with pytest.raises(InputFileError, match=r"too large for a model config \(limit 100 bytes"):
        read_user_bytes(big, what="model config", max_bytes=100)
    assert read_user_bytes(big, what="model config", max_bytes=101) == b"x" * 101


def test_text_names_the_first_bad_byte_and_drops_a_bom(tmp_path):
    bad = tmp_path / "t.jinja"
    bad.write_bytes(b"ok\xff")
    with pytest.raises(InputFileError, match="byte 2"):
        read_user_text(bad, what="chat template", max_bytes=100)
    bom = tmp_path / "b.yaml"
    bom.write_bytes("\ufeffa: 1".encode())
    assert read_user_text(bom, what="trainer config", max_bytes=100) == "a: 1"


def test_symlinks_to_regular_files_are_followed(tmp_path):
    target = tmp_path / "blob"
    target.write_text("{}")
    link = tmp_path / "config.json"
    link.symlink_to(target)
    with open_user_file(link, what="model config") as fh:
        assert fh.read() == b"{}"


def test_a_small_file_under_a_large_limit_costs_little_memory(tmp_path):
    """The limit is a ceiling, not an allocation: a 1 KiB file read under a 1 GiB limit in a 512 MiB child."""
    import subprocess
    import sys

    small = tmp_path / "tokenizer.json"
    small.write_bytes(b"{}" * 512)
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20));"
            "from loraplan.userfiles import read_user_bytes;"
            "print(len(read_user_bytes(sys.argv[1], what='tokenizer file', max_bytes=1 << 30)))")
    done = subprocess.run([sys.executable, "-c", code, str(small)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "1024", done.stderr
