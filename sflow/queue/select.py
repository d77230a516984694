"""Which jobs a command names: ``12``, ``12_3``, ``12_[1-3,5]``, ``12.4``, as scancel reads them."""

from __future__ import annotations

import re

from sflow.slurm.indexset import IndexSet

_SPEC = re.compile(r"^(\d+)(?:_(\d+|\[[0-9,\-]+\]))?(?:\.(\d+))?$")


# scancel reads ``[a-b]`` with hostlist rules: at most this many ids in one range.
MAX_RANGE = 65536
# Beyond 64 bits a range's bound no longer reads as a number: scancel drops the target.
_UNREADABLE = 1 << 64


class RangeError(ValueError):
    """A bracketed range scancel refuses; the message is its first error line."""


# squeue takes job ids up to INT32_MAX (recorded: 2147483648 is an invalid job id).
MAX_QUERY_ID = 0x7FFFFFFF


def parse_job_spec(text: str, max_id: int | None = MAX_QUERY_ID) -> tuple[int, IndexSet | None] | None:
    """``12`` -> (12, None); ``12_3`` -> (12, {3}); ``12_[1-3]`` -> (12, {1, 2, 3}); junk -> None.

    As squeue reads ``-j``: ids from 1 to ``max_id``, ranges of at most MAX_RANGE."""
    try:
        parsed = parse_target(text, max_range=MAX_RANGE)
    except RangeError:
        return None
    if parsed is None or (max_id is not None and not 0 < parsed[0] <= max_id):
        return None
    return parsed[0], parsed[1]


def split_ids(text: str) -> list[str]:
    """A comma list of job ids, keeping the commas inside ``12_[1,3]`` together."""
    return re.split(r",(?![^\[]*\])", text)


def parse_target(text: str, max_range: int | None = None) -> tuple[int, IndexSet | None, int | None] | None:
    """(job id, array indices or None, step id or None), or None when it is not a job id.

    Ranges stay runs, never lists, so ``12_[0-99999999]`` costs what ``12_[0-9]`` does;
    ``max_range`` bounds one range's size (RangeError beyond it)."""
    match = _SPEC.match(text.strip())
    if not match:
        return None
    job_id, part, step = int(match.group(1)), match.group(2), match.group(3)
    indices: IndexSet | None = None
    if part is not None:
        if part.startswith("["):
            runs = []
            for chunk in part[1:-1].split(","):
                low, dash, high = chunk.partition("-")
                if not low or (dash and not high) or int(high or low) < int(low):
                    if max_range:
                        raise RangeError(f"_parse_single_range: Invalid range: `{chunk}'")
                    return None
                first, last = int(low), int(high or low)
                if max_range and last - first + 1 > max_range:
                    raise RangeError(f"_parse_single_range: Too many hosts in range `{chunk}'")
                runs.append((first, last, 1))
            indices = IndexSet.from_runs(runs)
        else:
            indices = IndexSet.of((int(part),))
    return job_id, indices, (int(step) if step is not None else None)


def unreadable(text: str) -> bool:
    """A target whose bracketed range holds a number past 64 bits (scancel ignores it)."""
    match = _SPEC.match(text.strip())
    part = match.group(2) if match else None
    return bool(part and part.startswith("[") and
                any(int(n) >= _UNREADABLE for n in re.findall(r"\d+", part)))


def passes(job, filters: dict) -> bool:
    """scancel's filters: a job must satisfy every one given."""
    def wanted(key: str, value) -> bool:
        allowed = filters.get(key)
        return not allowed or value in allowed

    return (wanted("names", job.name) and wanted("users", job.user) and wanted("states", job.state)
            and wanted("partitions", job.partition) and wanted("accounts", job.account)
            and wanted("qos", job.qos)
            and (not filters.get("nodelist") or bool(set(filters["nodelist"]) & set(_nodes(job.nodelist)))))


def _nodes(nodelist: str) -> list[str]:
    if not nodelist:
        return []
    from sflow.slurm.values import InvalidValue, expand_hostlist  # deferred: squeue loads no value parser

    try:
        return expand_hostlist(nodelist)
    except InvalidValue:
        return [nodelist]


__all__ = ["MAX_RANGE", "RangeError", "parse_job_spec", "parse_target", "passes", "split_ids", "unreadable"]
