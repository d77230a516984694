"""Which jobs a scancel request names: ids, array elements and filters, as scancel reads them."""

from __future__ import annotations

import re

from sflow.records import JobRecord

_SPEC = re.compile(r"^(\d+)(?:_(\d+|\[[0-9,\-]+\]))?(?:\.\w+)?$")


def parse_job_spec(text: str) -> tuple[int, list[int] | None] | None:
    """``12`` -> (12, None); ``12_3`` -> (12, [3]); ``12_[1-3]`` -> (12, [1, 2, 3]); junk -> None."""
    match = _SPEC.match(text.strip())
    if not match:
        return None
    job_id, part = int(match.group(1)), match.group(2)
    if part is None:
        return job_id, None
    if part.startswith("["):
        indices: list[int] = []
        for chunk in part[1:-1].split(","):
            low, _, high = chunk.partition("-")
            indices += list(range(int(low), int(high or low) + 1))
        return job_id, indices
    return job_id, [int(part)]


def select_for_cancel(jobs: list[JobRecord], msg: dict) -> tuple[list[tuple[JobRecord, int | None]], list[str]]:
    """(job, array index or None) pairs to act on, and error lines."""
    specs = msg.get("job_specs") or []
    names = set(msg.get("names") or [])
    users = set(msg.get("users") or [])
    states = {s.upper() for s in msg.get("states") or []}
    partitions = set(msg.get("partitions") or [])

    def passes(job: JobRecord) -> bool:
        return ((not names or job.name in names) and (not users or job.user in users)
                and (not states or job.state in states) and (not partitions or job.partition in partitions))

    chosen: list[tuple[JobRecord, int | None]] = []
    if not specs:
        return [(j, None) for j in jobs if passes(j)], []
    for spec in specs:
        parsed = parse_job_spec(spec)
        if parsed is None:
            continue  # the caller rejected malformed ids already
        job_id, indices = parsed
        direct = [j for j in jobs if j.job_id == job_id]
        array = [j for j in jobs if j.array_job_id == job_id]
        if indices is None:
            targets = array or direct
            chosen += [(j, None) for j in targets if passes(j)]
            continue
        for index in indices:
            task = [j for j in array if j.array_task_id == index]
            if task:
                chosen += [(j, None) for j in task if passes(j)]
            else:
                # Still in the array's pending remainder.
                chosen += [(j, index) for j in array if j.array_task_id is None and passes(j)]
    return chosen, []
