"""Mithril jobs in the controller: the backend made on demand, its reports applied to jobs.

A mixin of ``Controller``. The Mithril backend (``sflow.backends.mithril``)
is created the first time a Mithril job is submitted or found in the store;
its worker thread wakes the controller's loop through a pipe, and each turn
``cloud_turn`` applies what it reported inside the turn's transaction:

- a pending job's bid moved: plan again (the reason in squeue follows);
- a running job's bid is being preempted: the job's ``--signal`` (else
  SIGCONT and SIGTERM) goes to it now, within the notice; when its batch
  step ends it is requeued with the same id (``--no-requeue``: PREEMPTED);
- a bid was refused for good: the job is held, with Mithril's reason;
- a job's cost changed: its record's ``cost_cents`` follows;
- the market arrived: submissions waiting for it are taken up again.
"""

from __future__ import annotations

import selectors
import sys

from sflow.backends import make_backend
from sflow.backends.base import (BackendContext, Changed, CostSettled, MarketReady, NodeLost, Preempting,
                                 Refused)
from sflow.errors import SlurmError
from sflow.mithril import bids
from sflow.queue import launch, store


class CloudLife:
    mithril = None  # the MithrilBackend, once needed
    deferred: list  # (conn, message): submissions waiting for the market (set by Controller)

    def cloud(self):
        if self.mithril is None:
            self.mithril = make_backend("mithril", self.cluster, self.backend_context())
            self.mithril.reload()
            self.sel.register(self.mithril.wake_fd, selectors.EVENT_READ, ("mithril", None))
        return self.mithril

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

    def backend_for(self, job):
        """The backend that placed ``job`` (its partition's at submission)."""
        return self.backend if job.rec.backend == self.backend.name else self.cloud()

    def on_this_machine(self, job) -> bool:
        return self.backend_for(job).on_this_machine

    def cloud_needed(self) -> bool:
        """At start: live bids, bids whose billing record is still to be read, or Mithril jobs left by
        a previous controller."""
        if any(job.rec.backend != self.backend.name for job in self.jobs.values()):
            return True
        try:
            row = self.conn.execute("SELECT 1 FROM bids WHERE ended IS NULL LIMIT 1").fetchone()
            return row is not None or bool(bids.unsettled(self.conn))
        except Exception:
            return False

    def cloud_recover(self) -> None:
        """Bids of jobs that are over are deleted; every live bid goes back to the worker."""
        if not self.cloud_needed():
            return
        backend = self.cloud()
        for row in list(backend.rows.values()):
            job = self.jobs.get(row.job_id)
            if not row.must_delete and (job is None or job.rec.state not in ("PENDING", "RUNNING", "COMPLETING")):
                backend.withdraw(row.job_id)
        backend.kick()

    def cloud_resync(self) -> None:
        """After a turn was undone: the records as stored, handed to the worker again."""
        if self.mithril is not None:
            self.mithril.reload()
            self.mithril.kick()

    def cloud_busy(self) -> bool:
        return bool(self.deferred) or (self.mithril is not None and self.mithril.busy())

    # ------------------------------------------------------------ submissions waiting for the market

    def defer(self, conn, message: dict) -> None:
        self.deferred.append((conn, message))
        conn.deferred += 1

    def retry_deferred(self) -> None:
        waiting, self.deferred = self.deferred, []
        for conn, message in waiting:
            conn.deferred -= 1
            self.handle_message(conn, message)

    # ------------------------------------------------------------ the worker's reports

    def cloud_turn(self, now: float) -> None:
        if self.mithril is None:
            return
        for event in self.mithril.events(now):
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

    def cloud_split_task(self, array, task) -> None:
        """An array task split off its array's record: its bid (and what it cost) go with it."""
        if self.mithril is None or self.on_this_machine(task):
            return
        self.mithril.split_task(array.job_id, task.rec.array_task_id, task.job_id)
        task.rec.cost_cents = self.mithril.job_cost_cents(task.job_id)
        array.rec.cost_cents = self.mithril.job_cost_cents(array.job_id)

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
        """The bid is being preempted: signal the job within the notice (once)."""
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
        self.cloud_run_over(job, "PREEMPTED")
        if job.rec.requeue:
            self.write()
            self.requeue(job)
        else:
            self.finish(job, "PREEMPTED", exit_code, sig, reason="None")

    def cloud_run_over(self, job, outcome: str) -> None:
        """A Mithril job's run ended (or it left the queue): its bids go, with how it ended."""
        if self.on_this_machine(job):
            return
        backend = self.backend_for(job)
        backend.withdraw(job.job_id)
        backend.record_outcome(job.job_id, job.rec.restart_count, outcome)


__all__ = ["CloudLife"]
