"""The machine's user database, asked the way every command needs it.

A name SLURM would call invalid (unknown, or holding a NUL byte that the C
library cannot take) is simply not a user; no lookup raises.
"""

from __future__ import annotations

import pwd


def uid_of(name: str) -> int | None:
    """The uid a user name (or a uid written as digits) stands for."""
    if name.isdecimal():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except (KeyError, ValueError):
        return None


def name_of(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, ValueError, OverflowError):
        return None
