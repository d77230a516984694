"""Injected failures, drawn from a seeded generator so that a run can be replayed.

Each request draws the same amount of randomness whether or not it fails, so the
n-th request's fault depends only on the seed and n. A fault strikes either before
the request takes effect or after (the work is done, the answer is lost): a client
that retries a create must send the same ``Idempotency-Key``.

An outage (``outages``: method and path pattern) fails every matching request with a 503 while it
lasts, whatever the draw: a test scripts which calls cannot get through, and when.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass

KINDS = ("429", "500", "503", "slow", "drop")


@dataclass(frozen=True)
class Fault:
    kind: str  # 429 | 500 | 503 | slow | drop (close the connection without answering)
    phase: str  # before | after the request takes effect


class FaultPlan:
    def __init__(self, rate: float = 0.0, seed: int = 0, kinds: tuple[str, ...] = KINDS):
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        self.rate, self.kinds = rate, tuple(kinds)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.history: list[tuple[int, str, str, Fault | None]] = []  # (n, method, path, fault)
        self.outages: list[tuple[str, str]] = []  # (method, path regular expression, whole path)

    def draw(self, method: str, path: str) -> Fault | None:
        with self._lock:
            roll, pick, phase = self._rng.random(), self._rng.random(), self._rng.random()
            fault = None
            if roll < self.rate and self.kinds:
                kind = self.kinds[int(pick * len(self.kinds))]
                # a rate limiter turns requests away before any work is done
                fault = Fault(kind, "before" if kind == "429" or phase < 0.5 else "after")
            if any(method == m and re.fullmatch(pattern, path) for m, pattern in self.outages):
                fault = Fault("503", "before")
            self.history.append((len(self.history), method, path, fault))
            return fault
