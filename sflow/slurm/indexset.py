"""Sets of array indices kept as arithmetic runs, never as one int per index.

SLURM allows arrays of up to MaxArraySize (4,000,001) tasks and scancel ranges
of 65,536 ids. One Python int per index would cost hundreds of megabytes and a
JSON column rewritten at every task start; as runs, ``0-3999999`` is one tuple
and ``0-3999998:2`` another. Standard library only: the shims use it.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import chain, islice
from typing import Iterable, Iterator

Run = tuple[int, int, int]  # first, last (inclusive, on the step's grid), step

# SLURM shows an array that is one arithmetic progression as ``first-last:step``
# once listing it would be long: from 7 elements, or 6 with a step above 2
# (recorded from SLURM 22.05: 0-10:2 lists, 0-20:4 and 0-12:2 do not).
_STRIDE_MIN_COUNT = 7


def _run_len(run: Run) -> int:
    first, last, step = run
    return (last - first) // step + 1


def _clip(run: Run, low: int, high: int) -> Run | None:
    """The part of ``run`` inside [low, high], or None."""
    first, last, step = run
    if low > first:
        first += -(-(low - first) // step) * step
    if high < last:
        last = first + ((high - first) // step) * step if high >= first else first - 1
    if first > last:
        return None
    return (first, last, step) if first < last else (first, first, 1)


def _compress(ordered: list[int]) -> list[Run]:
    """Sorted distinct ints -> runs: consecutive stretches, then arithmetic ones, then singles."""
    runs: list[Run] = []
    k, n = 0, len(ordered)
    while k < n:
        first = ordered[k]
        if k + 1 == n:
            runs.append((first, first, 1))
            break
        step = ordered[k + 1] - first
        j = k + 1
        while j + 1 < n and ordered[j + 1] - ordered[j] == step:
            j += 1
        if step > 1 and j == k + 1:  # two points make no progression worth keeping
            runs.append((first, first, 1))
            k += 1
            continue
        runs.append((first, ordered[j], step))
        k = j + 1
    return runs


class IndexSet:
    """An immutable set of non-negative ints as sorted runs whose extents do not overlap."""

    __slots__ = ("runs", "_count", "_firsts")

    def __init__(self, runs: Iterable[Run] = ()):
        # Trusted: callers outside this module use from_runs/of, which normalise.
        self.runs: tuple[Run, ...] = tuple(runs)
        self._count = sum(_run_len(r) for r in self.runs)
        self._firsts = [r[0] for r in self.runs]

    # ------------------------------------------------------------ building

    @classmethod
    def of(cls, values: Iterable[int]) -> "IndexSet":
        return cls(_compress(sorted(set(values))))

    @classmethod
    def from_runs(cls, runs: Iterable[Run]) -> "IndexSet":
        """Any runs, overlapping or not. Overlapping stepped runs are expanded, so callers
        bound each run's extent first (an array's against MaxArraySize)."""
        cleaned = []
        for first, last, step in runs:
            if last >= first:
                last = first + ((last - first) // step) * step
                cleaned.append((first, last, step if last > first else 1))
        cleaned.sort()
        merged: list[Run] = []
        group: list[Run] = []
        group_last = -1

        def flush() -> None:
            if len(group) == 1:
                merged.append(group[0])
            elif all(step == 1 for _, _, step in group):
                merged.append((group[0][0], max(last for _, last, _ in group), 1))
            else:
                merged.extend(_compress(sorted({i for f, l, s in group for i in range(f, l + 1, s)})))

        for run in cleaned:
            if group and run[0] > group_last:
                flush()
                group = []
            group.append(run)
            group_last = max(group_last, run[1]) if len(group) > 1 else run[1]
        if group:
            flush()
        # Touching consecutive stretches and singles become one stretch.
        joined: list[Run] = []
        for run in merged:
            if joined:
                f0, l0, s0 = joined[-1]
                if (s0 == 1 or f0 == l0) and (run[2] == 1 or run[0] == run[1]) and run[0] == l0 + 1:
                    joined[-1] = (f0, run[1], 1)
                    continue
            joined.append(run)
        return cls(joined)

    # ------------------------------------------------------------ reading

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[int]:
        # Chained in C: a pending array's 1,000 tasks are listed without a generator's step each.
        return chain.from_iterable([range(first, last + 1, step) for first, last, step in self.runs])

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int):
            return False
        k = bisect_right(self._firsts, value) - 1
        if k < 0:
            return False
        first, last, step = self.runs[k]
        return value <= last and (value - first) % step == 0

    def __eq__(self, other: object) -> bool:
        # The same set may be held as different runs ({0,2,4} as one run or three singles).
        if not isinstance(other, IndexSet):
            return NotImplemented
        return self.runs == other.runs or (
            self._count == other._count and list(self._stretches()) == list(other._stretches()))

    def __hash__(self) -> int:
        return hash(tuple(self._stretches()))

    def __repr__(self) -> str:
        return f"IndexSet({self.slurm_text(limit=80)!r})"

    def min(self) -> int:
        return self.runs[0][0]

    def max(self) -> int:
        return self.runs[-1][1]

    def head(self, count: int) -> list[int]:
        """The ``count`` smallest indices."""
        return list(islice(iter(self), count))

    def stride(self) -> int | None:
        """The step when the set is one arithmetic progression (1 for a single index), else None."""
        if not self.runs:
            return None
        if self._count < 2:
            return 1
        first_two = self.head(2)
        step = first_two[1] - first_two[0]
        previous = None
        for first, last, run_step in self.runs:
            if first != last and run_step != step:
                return None
            if previous is not None and first - previous != step:
                return None
            previous = last
        return step

    # ------------------------------------------------------------ set algebra

    def _intervals(self) -> list[tuple[int, int]]:
        """The set as consecutive stretches; a stepped run contributes each index."""
        out: list[tuple[int, int]] = []
        for first, last, step in self.runs:
            pieces = [(first, last)] if step == 1 else [(i, i) for i in range(first, last + 1, step)]
            for low, high in pieces:
                if out and out[-1][1] + 1 == low:
                    out[-1] = (out[-1][0], high)
                else:
                    out.append((low, high))
        return out

    def intersection(self, other: "IndexSet") -> "IndexSet":
        if len(self) < len(other) and any(step > 1 for _, _, step in other.runs):
            return IndexSet.of(i for i in self if i in other)  # the smaller side probes the other
        intervals = other._intervals()
        out: list[Run] = []
        for run in self.runs:
            k = self._first_overlap(intervals, run[0])
            while k < len(intervals) and intervals[k][0] <= run[1]:
                piece = _clip(run, *intervals[k])
                if piece:
                    out.append(piece)
                k += 1
        return IndexSet.from_runs(out)

    def without(self, other: "IndexSet") -> "IndexSet":
        if not other or not self:
            return self
        intervals = other._intervals()
        out: list[Run] = []
        for run in self.runs:
            rest: Run | None = run
            k = self._first_overlap(intervals, run[0])
            while rest is not None and k < len(intervals) and intervals[k][0] <= rest[1]:
                low, high = intervals[k]
                below = _clip(rest, rest[0], low - 1)
                if below:
                    out.append(below)
                rest = _clip(rest, high + 1, rest[1])
                k += 1
            if rest:
                out.append(rest)
        return IndexSet.from_runs(out)

    @staticmethod
    def _first_overlap(intervals: list[tuple[int, int]], value: int) -> int:
        """Index of the first interval whose end is at or after ``value`` (intervals are sorted)."""
        lo, hi = 0, len(intervals)
        while lo < hi:
            mid = (lo + hi) // 2
            if intervals[mid][1] < value:
                lo = mid + 1
            else:
                hi = mid
        return lo

    # ------------------------------------------------------------ text and storage

    def slurm_text(self, limit: int | None = None) -> str:
        """As SLURM shows an array's indices: ``0-3,7``, ``0-30:3``; at most ``limit`` characters,
        cut with ``...`` (SLURM_BITSTR_LEN's rule: the text fills limit-1 bytes, the last three dots)."""
        if not self.runs:
            return ""
        step = self.stride()
        if step is not None and step > 1:
            count = self._count
            if count >= _STRIDE_MIN_COUNT or (count == _STRIDE_MIN_COUNT - 1 and step > 2):
                text = f"{self.min()}-{self.max()}:{step}"
                return text if limit is None or len(text) < limit else text[: max(limit - 4, 0)] + "..."
        parts: list[str] = []
        size = 0
        for low, high in self._stretches():
            part = str(low) if low == high else f"{low}-{high}"
            parts.append(part)
            size += len(part) + 1
            if limit is not None and size > limit:
                break
        text = ",".join(parts)
        if limit is not None and len(text) >= limit:
            return text[: max(limit - 4, 0)] + "..."
        return text

    def ranges_text(self) -> str:
        """Consecutive stretches only (``0,2,4-7``), as srun names task ranks."""
        return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in self._stretches())

    def _stretches(self) -> Iterator[tuple[int, int]]:
        """Consecutive stretches, lazily (a long stepped run is never listed whole)."""
        pending: tuple[int, int] | None = None
        for first, last, step in self.runs:
            pieces = ((first, last),) if step == 1 else ((i, i) for i in range(first, last + 1, step))
            for low, high in pieces:
                if pending and pending[1] + 1 == low:
                    pending = (pending[0], high)
                    continue
                if pending:
                    yield pending
                pending = (low, high)
        if pending:
            yield pending

    def to_json(self) -> list[list[int]]:
        return [list(run) for run in self.runs]

    @classmethod
    def from_json(cls, data) -> "IndexSet":
        """Runs as stored; a plain list of ints (the older layout) is read too."""
        if not data:
            return cls()
        if isinstance(data[0], int):
            return cls.of(data)
        return cls.from_runs(tuple(run) for run in data)


__all__ = ["IndexSet", "Run"]
