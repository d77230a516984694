"""Whole writes to a file descriptor, with no buffering layers (no fstat, no isatty): the
controller writes a file or two per job, where a file object's set-up costs more than the write."""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to ``fd``: one write where it fits, more where the kernel takes less."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_file(path: str, data: bytes, mode: int, flags: int = os.O_TRUNC) -> None:
    """``data`` as the content of ``path`` (``flags``: ``os.O_APPEND`` adds it at the end instead)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | flags, mode)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
