"""Which pending jobs start now, and why the others wait (SLURM's reason words).

One pass: jobs in priority order (SLURM's priority/basic: submit order,
lowered by ``--nice``, or ``--priority`` as given); each first passes the
gates that do not depend on resources (holds, dependencies, begin time,
partition state and limits, array throttle), then asks for resources.

Resources are planned on a timeline (conservative backfill): a job that
cannot start now gets a reservation at the earliest time it fits, given the
time limits of what runs and of the reservations before it; a lower-priority
job starts now only if it fits *around* every reservation, so it never
delays a job ahead of it. The first job blocked in a partition waits for
``Resources``, the ones behind it for ``Priority``. Pure: the controller
applies the plan. The one exception is a job placed by a backend elsewhere
(Mithril): past the gates it asks that backend, which places (or withdraws) its bid and answers an
allocation once the bid's instances run; such jobs never touch the timeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sflow.backends.base import Allocation
from sflow.backends.local import NodeUse, Usage
from sflow.queue import deps
from sflow.records import INFINITE
from sflow.slurm.indexset import IndexSet

FOREVER = math.inf
# Reservations computed per pass, as SLURM's bf_max_job_test bounds backfill's work.
MAX_RESERVATIONS = 48
HELD_REASONS = ("JobHeldUser", "JobHeldAdmin", "launch failed requeued held")
REFUSED = "Refused"  # the end of the first word of a backend's reason for holding a job (MithrilRefused: ...)


@dataclass
class Plan:
    starts: list = field(default_factory=list)  # (job, array index or None, Allocation)
    reasons: dict = field(default_factory=dict)  # job_id -> reason
    dependency_text: dict = field(default_factory=dict)  # job_id -> what scontrol shows
    cancels: list = field(default_factory=list)  # jobs whose dependency can never be met
    too_late: list = field(default_factory=list)  # jobs that can no longer end before their --deadline
    eligible: dict = field(default_factory=dict)  # job_id -> eligible time, first time seen
    expected: dict = field(default_factory=dict)  # job_id -> planned start
    wake_at: float = FOREVER  # the next time a gate opens by itself
    partitions: dict = field(default_factory=dict)  # (job_id, array index) -> the partition it starts in


def _merge(into: Usage, other: Usage) -> None:
    for name, use in other.nodes.items():
        have = into.nodes.get(name)
        if have is None:
            into.nodes[name] = NodeUse(use.cpus, use.mem_mb, use.gpus, use.exclusive, use.jobs)
            continue
        have.cpus = max(have.cpus, use.cpus)
        have.mem_mb = max(have.mem_mb, use.mem_mb)
        have.gpus = have.gpus | use.gpus
        have.exclusive = have.exclusive or use.exclusive
        have.jobs = max(have.jobs, use.jobs)


def _partition_refusal(partition, rec) -> str | None:
    """Why ``partition`` cannot run the job now, whatever its resources (SLURM's reason), or None."""
    if partition.state in ("DOWN", "DRAIN"):
        return "PartitionDown"
    if partition.state == "INACTIVE":
        return "PartitionInactive"
    limit = rec.time_limit if rec.time_limit is not None else INFINITE
    if partition.max_time not in (None, INFINITE) and limit > partition.max_time:
        return "PartitionTimeLimit"
    return None


def _earliest(timeline, job, partitions, duration: float, now_only: bool = False):
    """(start, allocation, partition) of the job's earliest fit over its partitions, tried in order."""
    best = None
    for partition in partitions:
        fit = timeline.earliest(job.job_id, job.need, partition, duration, now_only=now_only)
        if fit is not None and (best is None or fit[0] < best[0]):
            best = (fit[0], fit[1], partition)
            if fit[0] <= timeline.now:
                break
    return best


class Timeline:
    """Resources over time: what runs now (freed at its time limit) plus reservations."""

    def __init__(self, backend, now: float, running: list[tuple[float, Allocation]]):
        self.backend = backend
        self.now = now
        self.base = backend.usage.copy()
        self.ends = sorted(((end, alloc) for end, alloc in running if end < FOREVER), key=lambda e: e[0])
        self.reservations: list[tuple[float, float, Allocation]] = []

    def _usage_at(self, t: float) -> Usage:
        usage = self.base.copy()
        for end, alloc in self.ends:
            if end > t:
                break
            usage.remove(alloc)
        for start, end, alloc in self.reservations:
            if start <= t < end:
                usage.add(alloc)
        return usage

    def _usage_over(self, t0: float, t1: float) -> Usage:
        if not self.reservations and t0 <= self.now:
            return self.base  # running jobs only ever give resources back
        points = {t0}
        points.update(end for end, _ in self.ends if t0 < end < t1)
        points.update(start for start, _, _ in self.reservations if t0 < start < t1)
        merged = Usage()
        for point in sorted(points):
            _merge(merged, self._usage_at(point))
        return merged

    def earliest(self, job_id: int, need, partition, duration: float, now_only: bool = False):
        """(start time, allocation) of the earliest fit, or None if none is foreseeable."""
        candidates = [self.now]
        if not now_only:
            later = {end for end, _ in self.ends if end > self.now}
            later.update(end for _, end, _ in self.reservations if self.now < end < FOREVER)
            candidates += sorted(later)
        for t in candidates:
            alloc = self.backend.place(job_id, need, partition, self._usage_over(t, t + duration))
            if alloc is not None:
                return t, alloc
        return None

    def start(self, alloc: Allocation, end: float) -> None:
        self.base.add(alloc)
        if end < FOREVER:
            self.ends.append((end, alloc))
            self.ends.sort(key=lambda e: e[0])

    def reserve(self, start: float, end: float, alloc: Allocation) -> None:
        self.reservations.append((start, end, alloc))


class Scheduler:
    def __init__(self, cluster, backend, kill_invalid_default: bool = False, backend_named=None):
        self.cluster = cluster
        self.backend = backend
        self.kill_invalid_default = kill_invalid_default
        self.backend_named = backend_named  # name -> the backend of that name, for jobs placed elsewhere

    # ------------------------------------------------------------ gates

    def gate(self, job, now: float, lookup, plan: Plan, running_tasks: dict) -> tuple[str | None, list | None]:
        """(reason to wait or None, eligible array indices or None for all)."""
        rec = job.rec
        request = job.request
        if rec.held:
            held = rec.reason in HELD_REASONS or rec.reason.partition(":")[0].endswith(REFUSED)
            return (rec.reason if held else "JobHeldUser"), None
        indices = None
        dependency = request.dependency
        if dependency is not None and dependency.items:
            verdict, text = self._dependency(job, dependency, lookup, now)
            if isinstance(verdict, list):
                indices, verdict = verdict, (deps.OK if verdict else deps.WAIT)
            plan.dependency_text[rec.job_id] = text
            if any(item.delay_minutes for item in dependency.items):
                plan.wake_at = min(plan.wake_at, now + 5)
            if verdict == deps.NEVER:
                kill = request.kill_on_invalid_dep
                if kill if kill is not None else self.kill_invalid_default:
                    plan.cancels.append(job)
                return "DependencyNeverSatisfied", None
            if verdict == deps.WAIT:
                return "Dependency", None
        elif rec.dependency:
            plan.dependency_text[rec.job_id] = ""
        if rec.deadline is not None:
            # SLURM drops a job that cannot end by its deadline, even at its shortest (--time-min).
            shortest = rec.time_min if rec.time_min else rec.time_limit
            if shortest is not None and shortest < INFINITE:
                if now + shortest * 60 > rec.deadline:
                    plan.too_late.append(job)
                    return "DeadLine", None
                plan.wake_at = min(plan.wake_at, rec.deadline - shortest * 60)
            elif now >= rec.deadline:
                plan.too_late.append(job)
                return "DeadLine", None
        if job.begin_time and job.begin_time > now:
            plan.wake_at = min(plan.wake_at, job.begin_time)
            if rec.eligible_time is None:
                plan.eligible[rec.job_id] = job.begin_time
            return "BeginTime", None
        try:
            partitions = self.cluster.partitions_for(rec.partition)
        except Exception:
            return "PartitionDown", None
        refusals = [_partition_refusal(partition, rec) for partition in partitions]
        if None not in refusals:  # a job may wait on one partition while another of its can take it
            return refusals[0], None
        if job.never_reason:
            return job.never_reason, None
        if rec.eligible_time is None:
            plan.eligible[rec.job_id] = now
        throttle = rec.array_max_tasks
        if throttle and job.is_array_remainder and running_tasks.get(rec.job_id, 0) >= throttle:
            return "JobArrayTaskLimit", None
        return None, indices

    def _dependency(self, job, dependency, lookup, now):
        rec = job.rec
        common = dict(job_id=rec.job_id, name=rec.name, user=rec.user, seq=job.seq, now=now)
        per_task = job.is_array_remainder and any(i.kind == "aftercorr" for i in dependency.items)
        if not per_task:
            return deps.evaluate(dependency, lookup, task_index=rec.array_task_id, **common)
        ready, text, verdicts = [], "", []
        for index in job.pending_indices or []:
            verdict, shown = deps.evaluate(dependency, lookup, task_index=index, **common)
            verdicts.append(verdict)
            if verdict == deps.OK:
                ready.append(index)
            elif not text:
                text = shown
        if not ready and verdicts and all(v == deps.NEVER for v in verdicts):
            return deps.NEVER, text
        return ready, text

    # ------------------------------------------------------------ the pass

    def plan(self, now: float, pending: list, running: list, lookup) -> Plan:
        plan = Plan()
        running_tasks: dict[int, int] = {}
        for job in running:
            if job.rec.array_job_id is not None:
                running_tasks[job.rec.array_job_id] = running_tasks.get(job.rec.array_job_id, 0) + 1
        timeline = Timeline(self.backend, now, [(job.deadline() or FOREVER, job.alloc) for job in running
                                                if job.alloc and job.rec.backend == self.backend.name])
        blocked: set[str] = set()
        budget = MAX_RESERVATIONS
        order = sorted(pending, key=lambda j: (-j.rec.priority, j.seq, j.job_id))
        for job in order:
            if job.rec.backend != self.backend.name and self.backend_named is not None:
                self._plan_elsewhere(job, now, lookup, plan, running_tasks)
                continue
            reason, indices = self.gate(job, now, lookup, plan, running_tasks)
            if reason is not None:
                plan.reasons[job.job_id] = reason
                continue
            if budget <= 0:
                plan.reasons[job.job_id] = "Priority" if job.rec.partition in blocked else "Resources"
                blocked.add(job.rec.partition)
                continue
            partitions = [partition for partition in self.cluster.partitions_for(job.rec.partition)
                          if _partition_refusal(partition, job.rec) is None]
            limit = job.rec.time_limit
            duration = FOREVER if limit is None or limit >= INFINITE else limit * 60
            if job.is_array_remainder:
                # Lazily: an array may hold millions of pending indices, and few start per pass.
                todo = (i for i in (job.pending_indices or ()) if indices is None or i in indices)
            else:
                todo = [None]
            started = 0
            waiting_reason = None
            for index in todo:
                if job.is_array_remainder and job.rec.array_max_tasks and \
                        running_tasks.get(job.job_id, 0) >= job.rec.array_max_tasks:
                    waiting_reason = "JobArrayTaskLimit"
                    break
                fit = _earliest(timeline, job, partitions, duration, now_only=not timeline.reservations)
                if fit is not None and fit[0] <= now:
                    alloc = fit[1]
                    timeline.start(alloc, now + duration)
                    plan.starts.append((job, index, alloc))
                    plan.partitions[(job.job_id, index)] = fit[2].name
                    started += 1
                    if job.is_array_remainder:
                        running_tasks[job.job_id] = running_tasks.get(job.job_id, 0) + 1
                        if any(i.kind == "singleton" for i in (job.request.dependency.items
                                                               if job.request.dependency else ())):
                            break  # one task at a time: the next waits for this one
                    continue
                # Blocked: reserve its earliest start so nothing behind it delays it.
                budget -= 1
                if fit is None and not timeline.reservations:
                    fit = _earliest(timeline, job, partitions, duration)
                if fit is not None:
                    timeline.reserve(fit[0], fit[0] + duration, fit[1])
                    plan.expected[job.job_id] = fit[0]
                waiting_reason = "Priority" if job.rec.partition in blocked else "Resources"
                blocked.add(job.rec.partition)
                break
            if job.is_array_remainder and started == len(job.pending_indices or []):
                continue  # every task started: the record itself became the last task
            if waiting_reason is None:
                if started:
                    continue
                waiting_reason = "Dependency" if indices is not None else "Resources"
            plan.reasons[job.job_id] = waiting_reason
        return plan

    def _plan_elsewhere(self, job, now: float, lookup, plan: Plan, running_tasks: dict) -> None:
        """A job placed by a backend elsewhere (Mithril): the same gates, then its claim there (a
        bid; none while a gate is closed)."""
        backend = self.backend_named(job.rec.backend)
        reason, indices = self.gate(job, now, lookup, plan, running_tasks)
        if reason is not None:
            plan.reasons[job.job_id] = reason
            backend.withdraw(job.job_id)
            return
        plan.wake_at = min(plan.wake_at, now + backend.recheck_seconds)
        if job.is_array_remainder:
            self._plan_elsewhere_tasks(job, backend, indices, now, plan, running_tasks)
            return
        outcome = backend.allocate(job, job.request, now)
        if isinstance(outcome, Allocation):
            plan.starts.append((job, None, outcome))
            return
        plan.reasons[job.job_id] = outcome.reason

    def _plan_elsewhere_tasks(self, job, backend, indices, now: float, plan: Plan, running_tasks: dict) -> None:
        """A Mithril array's pending tasks: each its own bid, placed as the task becomes eligible.

        ``%N`` bounds the tasks holding a bid (running, waiting on one, or having one deleted), so
        at most N bids of the array are ever live."""
        pending = job.pending_indices or IndexSet()
        todo = [i for i in pending if indices is None or i in indices]
        rows = backend.task_rows(job.job_id)
        for index, row in rows.items():
            if row.job_id == job.job_id and not row.must_delete and index not in todo:
                backend.withdraw(job.job_id, task=index)  # cancelled, or its dependency closed again
        throttle = job.rec.array_max_tasks
        held = max(len(rows), running_tasks.get(job.job_id, 0))
        started, reason = 0, None
        for index in todo:
            row = rows.get(index)
            placed = row is not None and row.job_id == job.job_id and not row.must_delete
            if not placed and throttle and held >= throttle:
                reason = reason or "JobArrayTaskLimit"
                break
            outcome = backend.allocate(job, job.request, now, task=index)
            held += 0 if placed else 1
            if isinstance(outcome, Allocation):
                plan.starts.append((job, index, outcome))
                started += 1
            else:
                reason = reason or outcome.reason
        if started == len(pending):
            return  # every task started: the record itself became the last task
        plan.reasons[job.job_id] = reason or ("Dependency" if indices is not None else "JobArrayTaskLimit")


__all__ = ["FOREVER", "Plan", "Scheduler", "Timeline"]
