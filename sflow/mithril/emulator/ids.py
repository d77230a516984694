"""Prefixed ids (``bid_``, ``inst_``...) that repeat run after run for the same seed."""

from __future__ import annotations

import hashlib

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(data: bytes, length: int) -> str:
    n = int.from_bytes(data, "big")
    out = []
    for _ in range(length):
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(out)


def stable_id(prefix: str, name: str) -> str:
    """An id derived from a name alone: catalog entries keep theirs whatever the seed."""
    return f"{prefix}_{_base36(hashlib.sha256(name.encode()).digest(), 12)}"


class Ids:
    """Hands out fresh ids; the n-th id of a prefix depends only on the seed."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.counts: dict[str, int] = {}

    def new(self, prefix: str) -> str:
        n = self.counts.get(prefix, 0)
        self.counts[prefix] = n + 1
        return stable_id(prefix, f"{self.seed}/{prefix}/{n}")
