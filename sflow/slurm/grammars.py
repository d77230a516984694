"""Build each Lark grammar once per process, from grammar/*.lark.

lark itself is imported here, lazily: a shim that never parses a value or a
directive (``squeue``, ``--help``) does not pay for it. ``cache=True`` keeps the
compiled LALR tables on disk across processes.
"""

from __future__ import annotations

import os
from functools import lru_cache

from sflow._resources import GRAMMAR_DIR


@lru_cache(maxsize=None)
def parser(name: str, start: str | tuple[str, ...] = "start"):
    """The LALR parser for ``grammar/<name>.lark``."""
    from lark import Lark

    return Lark.open(
        os.path.join(GRAMMAR_DIR, f"{name}.lark"),
        parser="lalr",
        start=list(start) if isinstance(start, tuple) else start,
        cache=True,
        propagate_positions=False,
        maybe_placeholders=False,
    )
