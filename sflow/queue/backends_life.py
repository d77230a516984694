"""The controller's backends: each made when first needed, what each reports applied to jobs.

A mixin of ``Controller``. The local backend is there from the start; any
other (a partition's ``Backend=``) is made the first time one of its jobs is
submitted or found in the store, or when it left records to follow (Mithril's
live bids). A backend with news of its own (a worker thread watching a market)
wakes the controller's loop through its ``wake_fd``, and each turn
``backends_turn`` applies its ``events`` inside the turn's transaction, the
same way whichever backend said them:

- ``Changed``: a pending job's placement moved: plan again (squeue's reason follows);
- ``Preempting``: the job's ``--signal`` (else SIGCONT and SIGTERM) goes to it now,
  within the notice; when its batch step ends it is requeued with the same id
  (``--no-requeue``: PREEMPTED);
- ``NodeLost``: its batch step is ended and the job with it, as NODE_FAIL
  (requeued when allowed, as SLURM does);
- ``Refused``: the job is held, with the backend's reason;
- ``CostSettled``: its record's ``cost_cents`` follows;
- ``MarketReady``: submissions waiting for it are taken up again.
"""

from __future__ import annotations

import selectors
import sys
import time

from sflow.backends import default_name, make_backend, with_records
from sflow.backends.base import (BackendContext, Changed, CostSettled, Deferred, MarketReady, NodeLost,
                                 Preempting, Refused)
from sflow.errors import SflowError, SlurmError
from sflow.queue import launch, store

LIVE_STATES = ("PENDING", "RUNNING", "COMPLETING")


class BackendLife:
    backends: dict  # name -> backend, made when first needed (set by Controller)
    deferred: list  # (conn, message): submissions waiting for a backend's market (set by Controller)

    def backend_named(self, name: str):
        backend = self.backends.get(name)
        if backend is None:
            backend = self.add_backend(make_backend(name, self.cluster, self.backend_context()))
        return backend

    def add_backend(self, backend):
        """Run ``backend`` from now on (its news wakes the loop)."""
        self.backends[backend.name] = backend
        if backend.wake_fd is not None:
            self.sel.register(backend.wake_fd, selectors.EVENT_READ, ("backend", backend.name))
        return backend

    def backend_context(self) -> BackendContext:
        """What a backend keeping records in the store is handed: the store and this controller's turn."""
        return BackendContext(conn=self.conn, home=self.home, write=self.write,
                              after_commit=lambda effect: self.after_commit.append(effect),
                              partition_max_time=self.partition_max_time)

    def partition_max_time(self, name: str) -> int | None:
        try:
            return self.cluster.partition(name).max_time
        except SlurmError:  # deleted since the job was submitted
            return None

    @property
    def default_backend(self) -> str:
        """The config file's choice for jobs whose partition says none (read at each use: it may change)."""
        return default_name()

    def backend_for(self, job):
        """The backend that placed ``job`` (its partition's at submission)."""
        return self.backend if job.rec.backend == self.backend.name else self.backend_named(job.rec.backend)

    def replan(self, job) -> str | None:
        """A waiting job its backend planned was changed (its time limit, its partition): planned again
        from what it asks now, and a claim made with the old plan is given up. None, or why not."""
        if job.plan is None or job.rec.state != "PENDING":
            return None
        rec = job.rec
        request = self.request_of(job).model_copy(update={"time_limit": rec.time_limit, "partition": rec.partition})
        backend = self.backend_for(job)
        try:
            checked = backend.check(request, self.cluster.partitions_for(rec.partition), rec.time_limit, {},
                                    time.time())
        except Deferred:
            return None  # nothing to check it against now: the kept plan stands
        except SflowError as err:
            return str(err).removeprefix("Batch job submission failed: ")
        if checked.plan != job.plan:
            backend.withdraw(job.job_id)
            job.plan, rec.limit_price = checked.plan, checked.limit_price
            if checked.num_nodes is not None:
                rec.num_nodes = checked.num_nodes
        return None

    def on_this_machine(self, job) -> bool:
        return self.backend_for(job).on_this_machine

    def backends_recover(self) -> None:
        """At start: every backend that jobs in the store use or that left records of its own is made;
        each lets go of what ended jobs hold and resumes the rest."""
        names = {job.rec.backend for job in self.jobs.values()} | set(with_records(self.conn))
        names.discard(self.backend.name)
        live = {job_id for job_id, job in self.jobs.items() if job.rec.state in LIVE_STATES}
        for name in sorted(names):
            self.backend_named(name).recover(live)

    def backends_resync(self) -> None:
        """After a turn was undone: each backend's records as stored."""
        for backend in list(self.backends.values()):
            backend.resync()

    def backends_busy(self) -> bool:
        return bool(self.deferred) or any(backend.busy() for backend in self.backends.values())

    def backends_close(self) -> None:
        for backend in self.backends.values():
            backend.close()

    # ------------------------------------------------------------ submissions waiting for the market

    def defer(self, conn, message: dict) -> None:
        self.deferred.append((conn, message))
        conn.deferred += 1

    def retry_deferred(self) -> None:
        waiting, self.deferred = self.deferred, []
        for conn, message in waiting:
            conn.deferred -= 1
            self.handle_message(conn, message)

    # ------------------------------------------------------------ what backends report

    def backends_turn(self, now: float) -> None:
        for backend in list(self.backends.values()):
            for event in backend.events(now):
                self.apply_event(event)

    def apply_event(self, event) -> None:
        """What a backend said, done to the job it names (whichever backend said it)."""
        match event:
            case MarketReady():
                self.retry_deferred()
                self.schedule_wanted = True
            case Changed():
                self.schedule_wanted = True
            case CostSettled(job_id=job_id, cents=cents):
                self.record_cost(job_id, cents)
            case Preempting(job_id=job_id) if job_id in self.jobs:
                self.preempt(self.jobs[job_id])
            case NodeLost(job_id=job_id) if job_id in self.jobs:
                self.node_lost(self.jobs[job_id])
            case Refused(job_id=job_id, reason=reason) if job_id in self.jobs:
                if self.jobs[job_id].rec.state == "PENDING":
                    self.hold_refused(self.jobs[job_id], reason)

    def split_task_claim(self, array, task) -> None:
        """An array task split off its array's record: what its backend holds for it (and what that
        cost) go with it."""
        backend = self.backends.get(task.rec.backend)
        if backend is None or backend.on_this_machine:
            return
        backend.split_task(array.job_id, task.rec.array_task_id, task.job_id)
        task.rec.cost_cents = backend.job_cost_cents(task.job_id)
        array.rec.cost_cents = backend.job_cost_cents(array.job_id)

    def record_cost(self, job_id: int, cents: float | None) -> None:
        job = self.jobs.get(job_id)
        if job is not None:
            if job.rec.cost_cents != cents:
                job.rec.cost_cents = cents
                self.save(job)
            return
        records = store.read_jobs(self.conn, "job_id = ?", (job_id,))
        if records and records[0].cost_cents != cents:
            records[0].cost_cents = cents
            self.write()
            store.update_job(self.conn, records[0])

    def hold_refused(self, job, reason: str) -> None:
        """Refused for good: held, as SLURM holds a job whose launch failed."""
        print(f"job {job.job_id}: refused: {reason}", file=sys.stderr)
        rec = job.rec
        rec.held, rec.priority = True, 0
        rec.reason = reason
        self.save(job)
        self.schedule_wanted = True

    # ------------------------------------------------------------ preemption

    def preempt(self, job) -> None:
        """The job's nodes are being taken back (a spot bid preempted): signal it within the notice (once)."""
        if job.rec.state not in ("RUNNING", "COMPLETING") or job.end_state is not None:
            return
        request = self.request_of(job)
        job.end_state = "PREEMPTED"
        self.save(job)
        self.after_commit.append(lambda: self.note_in_output(job, " DUE TO PREEMPTION"))
        pgid = job.pgid
        if not pgid:
            return  # not started yet: the agent finds the instances gone and the step ends
        if request.signal is not None:
            mode = "batch" if request.signal.batch_only else "steps"
            number = request.signal.number
            self.after_commit.append(lambda: launch.signal_job(pgid, number, mode))
        else:
            self.after_commit.append(lambda: launch.terminate(pgid))

    def node_lost(self, job) -> None:
        """A node under the job failed: its batch step is ended, and the job with it as NODE_FAIL."""
        if job.rec.state not in ("RUNNING", "COMPLETING") or job.end_state is not None:
            return
        job.end_state = "NODE_FAIL"
        self.save(job)
        pgid = job.pgid
        if pgid:
            self.after_commit.append(lambda: launch.terminate(pgid))

    def preempted(self, job, exit_code: int, sig: int) -> None:
        """A preempted run is over (its resources already released): requeued, or PREEMPTED."""
        self.backend_run_over(job, "PREEMPTED")
        if job.rec.requeue:
            self.write()
            self.requeue(job)
        else:
            self.finish(job, "PREEMPTED", exit_code, sig, reason="None")

    def backend_run_over(self, job, outcome: str) -> None:
        """A job's run on a backend elsewhere ended (or it left the queue): what it held there goes,
        with how it ended."""
        if self.on_this_machine(job):
            return
        backend = self.backend_for(job)
        backend.withdraw(job.job_id)
        backend.record_outcome(job.job_id, job.rec.restart_count, outcome)


__all__ = ["BackendLife"]
