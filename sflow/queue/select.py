"""Which jobs a command names: ``12``, ``12_3``, ``12_[1-3,5]``, ``12.4``, as scancel reads them."""

from __future__ import annotations

import re

_SPEC = re.compile(r"^(\d+)(?:_(\d+|\[[0-9,\-]+\]))?(?:\.(\d+))?$")


def parse_job_spec(text: str) -> tuple[int, list[int] | None] | None:
    """``12`` -> (12, None); ``12_3`` -> (12, [3]); ``12_[1-3]`` -> (12, [1, 2, 3]); junk -> None."""
    parsed = parse_target(text)
    return None if parsed is None else (parsed[0], parsed[1])


def parse_target(text: str) -> tuple[int, list[int] | None, int | None] | None:
    """(job id, array indices or None, step id or None), or None when it is not a job id."""
    match = _SPEC.match(text.strip())
    if not match:
        return None
    job_id, part, step = int(match.group(1)), match.group(2), match.group(3)
    indices: list[int] | None = None
    if part is not None:
        if part.startswith("["):
            indices = []
            for chunk in part[1:-1].split(","):
                if not chunk:
                    return None
                low, _, high = chunk.partition("-")
                if not low or (high == "" and "-" in chunk) or int(high or low) < int(low):
                    return None
                indices += range(int(low), int(high or low) + 1)
        else:
            indices = [int(part)]
    return job_id, indices, (int(step) if step is not None else None)


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
    from sflow.slurm.values import InvalidValue, expand_hostlist

    try:
        return expand_hostlist(nodelist)
    except InvalidValue:
        return [nodelist]


__all__ = ["parse_job_spec", "parse_target", "passes"]
