"""Reading operator-named files without ever blocking: only regular files are opened for reading.

A FIFO, a character device (``/dev/zero``), a socket or a directory at a path the settings name would make
``open()`` or ``read()`` wait forever or read without end. Every file the shim reads (progress file, trainer
log, run history, logo, templates) is opened with ``O_NONBLOCK`` (an open of a FIFO then returns at once),
checked with ``fstat`` to be a regular file no larger than a limit, and only then read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)


class NotRegularFileError(OSError):
    """The path names something other than a regular file (a FIFO, a device, a socket, a directory)."""


class FileTooLargeError(OSError):
    """The file is larger than the caller's limit; nothing was read."""


def kind(mode: int) -> str:
    """What a file of this mode is, in words (`a FIFO`, `a character device`)."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike[str]) -> tuple[int, os.stat_result]:
    """A read-only descriptor of the regular file at `path` and its stat; NotRegularFileError otherwise.

    ``O_NONBLOCK`` makes the open of a FIFO return at once (instead of waiting for a writer); the ``fstat``
    of the opened descriptor (not of the path, which may be replaced in between) decides. The caller closes
    the descriptor.
    """
    fd = os.open(path, _FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFileError(f"{path} is {kind(info.st_mode)}, not a regular file")
        return fd, info
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], limit: int, offset: int = 0) -> bytes:
    """At most `limit` bytes from `offset` of the regular file at `path`.

    Raises NotRegularFileError for anything but a regular file, FileTooLargeError when the file (from
    `offset`) holds more than `limit` bytes by its stat, and OSError (FileNotFoundError, ...) as open does.
    """
    fd, info = open_regular(path)
    try:
        if info.st_size - offset > limit:
            raise FileTooLargeError(f"{path} is {info.st_size:,} bytes, more than {limit:,}")
        chunks: list[bytes] = []
        size = 0
        position = offset
        while size < limit:
            chunk = os.pread(fd, min(limit - size, 1 << 20), position)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            position += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_regular_text(path: Path, limit: int) -> str:
    """A regular file of at most `limit` bytes as UTF-8 text (UnicodeDecodeError otherwise)."""
    return read_regular(path, limit).decode("utf-8")
