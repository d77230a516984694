"""A job as the controller holds it: its record plus what only the controller needs.

The record (``sflow.records.JobRecord``) is what everyone reads; the rest
(the request, the allocation, the process, pending kills) lives in the
store's controller-only columns. ``Job.columns()`` is exactly what
``store.update_job`` writes back, so a job is saved whole, never in pieces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sflow.backends.base import Allocation
from sflow.records import INFINITE, JobRecord
from sflow.slurm.indexset import IndexSet

# SLURM's priority/basic: the first job gets 0xFFFF0000 - 1, every later one one less.
PRIORITY_BASE = 0xFFFF0000


@dataclass
class Job:
    rec: JobRecord
    request_json: str | None = None  # set when new or changed; else in the store's ``requests``
    seq: int = 0
    token: str | None = None
    nice: int = 0
    alloc: Allocation | None = None
    launch: str | None = None  # None | "intent" | "launched"
    launch_time: float | None = None
    pid: int | None = None
    pid_start: str | None = None
    pgid: int | None = None
    status_path: str | None = None
    end_state: str | None = None  # CANCELLED, TIMEOUT, REQUEUE, REQUEUE_HOLD, EXIT:<n>, PREEMPTED, NODE_FAIL
    kill_at: float | None = None
    signal_done: bool = False
    verdict_by: float | None = None  # a Mithril step vanished: preempted or node failure, decided by then
    pending_indices: IndexSet | None = None  # an array's remainder
    expected_start: float | None = None
    begin_time: float | None = None  # not eligible before this (--begin, requeue delay)
    plan: dict | None = None  # what its backend's check planned at submission, placed as it is

    # Runtime only, never stored.
    request: object = None  # the parsed JobRequest, loaded on first use
    need: object = None  # the backend's view of the request, cached
    never_reason: str | None = None  # PartitionConfig/PartitionNodeLimit, from the backend's check
    pidfd: int | None = None
    popen: object = None
    extra: dict = field(default_factory=dict)

    @property
    def job_id(self) -> int:
        return self.rec.job_id

    @property
    def is_array_remainder(self) -> bool:
        return self.rec.array_job_id is not None and self.rec.array_task_id is None

    @property
    def display_id(self) -> str:
        """``12``, ``12_3`` or ``12_[4-9]`` as scancel and squeue name it."""
        rec = self.rec
        if rec.array_job_id is None:
            return str(rec.job_id)
        if rec.array_task_id is not None:
            return f"{rec.array_job_id}_{rec.array_task_id}"
        return f"{rec.array_job_id}_[{rec.array_task_str}]"

    def deadline(self) -> float | None:
        """When the time limit strikes, for a started job."""
        limit = self.rec.time_limit
        if self.rec.start_time is None or limit is None or limit >= INFINITE:
            return None
        return self.rec.start_time + limit * 60

    def columns(self) -> dict:
        return {
            "seq": self.seq, "token": self.token, "nice": self.nice,
            "alloc": json.dumps(self.alloc.to_json()) if self.alloc else None,
            "launch": self.launch, "launch_time": self.launch_time, "pid": self.pid,
            "pid_start": self.pid_start, "pgid": self.pgid, "status_path": self.status_path,
            "end_state": self.end_state, "kill_at": self.kill_at, "signal_done": int(self.signal_done),
            "pending_indices": (json.dumps(self.pending_indices.to_json())
                                if self.pending_indices is not None else None),
            "expected_start": self.expected_start, "begin_time": self.begin_time,
            "plan": json.dumps(self.plan) if self.plan is not None else None,
        }

    @classmethod
    def from_row(cls, rec: JobRecord, columns: dict) -> "Job":
        alloc = columns.get("alloc")
        pending = columns.get("pending_indices")
        plan = columns.get("plan")
        return cls(
            rec=rec, seq=columns.get("seq") or 0,
            token=columns.get("token"), nice=columns.get("nice") or 0,
            alloc=Allocation.from_json(json.loads(alloc)) if alloc else None,
            launch=columns.get("launch"), launch_time=columns.get("launch_time"),
            pid=columns.get("pid"), pid_start=columns.get("pid_start"), pgid=columns.get("pgid"),
            status_path=columns.get("status_path"), end_state=columns.get("end_state"),
            kill_at=columns.get("kill_at"), signal_done=bool(columns.get("signal_done")),
            pending_indices=IndexSet.from_json(json.loads(pending)) if pending else None,
            expected_start=columns.get("expected_start"), begin_time=columns.get("begin_time"),
            plan=json.loads(plan) if plan else None,
        )


COLUMN_NAMES = tuple(Job(rec=None).columns())  # type: ignore[arg-type]


def base_priority(seq: int, nice: int) -> int:
    return max(1, PRIORITY_BASE - seq - nice)
