"""Writing output files so that they are either complete or untouched, with the permissions
the process's umask gives."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from typing import IO, Any

__all__ = ["atomic_write"]


def _umask() -> int:
    """The process's file-mode creation mask."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:  # Linux: read without changing it
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it
    os.umask(mask)
    return mask


def atomic_write(
    path: str | os.PathLike, write: Callable[[IO], Any], *, text: bool = False
) -> None:
    """Write ``path`` through ``write(file)`` (binary, or text with ``text``) so that it is
    either complete or untouched.

    The data go to a temporary file in the same directory, are flushed to disk, and then
    replace ``path`` in one rename, so a crash at any point leaves the previous file as it was.
    The file gets the mode ``open`` would give it (0666 less the umask), not the temporary
    file's private 0600.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w" if text else "wb", **({"encoding": "utf-8"} if text else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
