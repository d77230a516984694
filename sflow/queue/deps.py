"""Job dependencies: is a waiting job free to go, still waiting, or never going to?"""

from __future__ import annotations

from sflow.records import FINISHED_STATES, JobRecord

ACTIVE = ("PENDING", "RUNNING", "COMPLETING", "SUSPENDED")


def _targets(job_ref: str, everyone: dict[int, JobRecord]) -> list[JobRecord]:
    """The jobs a reference names: ``12`` (a job, or every task of array 12) or ``12_3``."""
    if "_" in job_ref:
        base, index = job_ref.split("_", 1)
        if index == "*":
            return [j for j in everyone.values() if j.array_job_id == int(base)]
        return [j for j in everyone.values() if j.array_job_id == int(base) and j.array_task_id == int(index)]
    job_id = int(job_ref)
    array = [j for j in everyone.values() if j.array_job_id == job_id]
    if array:
        return array
    return [everyone[job_id]] if job_id in everyone else []


def _item_state(job: JobRecord, item, everyone: dict[int, JobRecord], now: float) -> str:
    """"ok", "wait" or "never" for one dependency item."""
    if item.kind == "singleton":
        rivals = [j for j in everyone.values() if j.name == job.name and j.user == job.user
                  and j.job_id != job.job_id and j.state in ("RUNNING", "COMPLETING")
                  or (j.name == job.name and j.user == job.user and j.state == "PENDING"
                      and j.job_id < job.job_id and not (j.array_job_id and j.array_job_id == job.array_job_id))]
        return "wait" if rivals else "ok"
    targets = _targets(item.job_id, everyone)
    if item.kind == "aftercorr" and job.array_task_id is not None:
        targets = [t for t in targets if t.array_task_id == job.array_task_id] or targets
    if not targets:
        return "ok"  # long gone: SLURM no longer knows it either and lets the job go
    pending_array = any(t.array_task_str for t in targets)
    if item.kind == "after":
        started = all(t.start_time is not None and t.start_time + item.delay_minutes * 60 <= now
                      for t in targets) and not pending_array
        return "ok" if started or all(t.state in FINISHED_STATES for t in targets) and not pending_array else "wait"
    if pending_array or any(t.state not in FINISHED_STATES for t in targets):
        return "wait"
    if item.kind == "afterany":
        return "ok"
    succeeded = all(t.state == "COMPLETED" and t.exit_code == 0 for t in targets)
    if item.kind in ("afterok", "aftercorr"):
        return "ok" if succeeded else "never"
    if item.kind == "afternotok":
        return "ok" if all(t.state != "COMPLETED" or t.exit_code != 0 for t in targets) else "never"
    return "ok"


def dependency_state(job: JobRecord, dependency, everyone: dict[int, JobRecord], now: float) -> str:
    states = [_item_state(job, item, everyone, now) for item in dependency.items]
    if dependency.any_of:
        if "ok" in states:
            return "ok"
        return "never" if all(s == "never" for s in states) else "wait"
    if "never" in states:
        return "never"
    return "ok" if all(s == "ok" for s in states) else "wait"
