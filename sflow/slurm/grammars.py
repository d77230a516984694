"""Build each Lark grammar once per process, from grammar/*.lark.

Only this module imports lark, and its users import it where they parse, not at
their top: a shim that never parses a value or a directive (``squeue``,
``--help``) does not pay for lark. ``cache=True`` keeps the compiled LALR
tables on disk across processes.
"""

from __future__ import annotations

import os
from functools import lru_cache

from lark import Lark
from lark.exceptions import LarkError, UnexpectedInput

from sflow._resources import GRAMMAR_DIR

# The exceptions a parse raises, for callers that import lark no other way.
__all__ = ["LarkError", "UnexpectedInput", "parser"]


@lru_cache(maxsize=None)
def parser(name: str, start: str | tuple[str, ...] = "start"):
    """The LALR parser for ``grammar/<name>.lark``."""
    return Lark.open(
        os.path.join(GRAMMAR_DIR, f"{name}.lark"),
        parser="lalr",
        start=list(start) if isinstance(start, tuple) else start,
        cache=True,
        propagate_positions=False,
        maybe_placeholders=False,
    )

