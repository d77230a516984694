"""The submitting side's facts, gathered once: who, where, with what environment."""

from __future__ import annotations

import os
import sys


def identity() -> dict:
    uid = os.getuid()
    try:
        import pwd

        user = pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        user = os.environ.get("USER", str(uid))
    return {"user": user, "uid": uid, "gid": os.getgid(), "host": os.uname().nodename.split(".")[0]}


def read_stdin_script() -> str | None:
    """The script piped to sbatch, or None when stdin is a terminal (sbatch then errors)."""
    if sys.stdin is None or sys.stdin.isatty():
        return None
    data = sys.stdin.buffer.read()
    return data.decode("utf-8", errors="surrogateescape")
