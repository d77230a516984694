"""A job's life in the controller: started, watched, ended, requeued, killed.

A mixin of ``Controller`` (which holds the store, the backend and the jobs):
every change goes through ``save``/``insert`` inside the turn's transaction;
signals and notes to files wait for the COMMIT (``after_commit``).
"""

from __future__ import annotations

import json
import os
import selectors
import signal as _signal
import sys
import time
import traceback

from sflow.exec import usage
from sflow.exec.batch import StepFilesUnavailable
from sflow.queue import accounting, launch, paths, store
from sflow.queue.jobs import Job, base_priority
from sflow.queue.ops import split_element
from sflow.queue.scheduler import FOREVER
from sflow.queue.submit import display_path
from sflow.records import INFINITE, StepRecord
from sflow.slurm.values import InvalidValue, expand_hostlist

RUNNING_STATES = ("RUNNING", "COMPLETING")
POLL_SECONDS = 1.0  # liveness checks for processes no pidfd watches
# A client may make a job's output directory just after sbatch returns (submitit's folder/%j/):
# slurmctld never launches a batch job that soon (0.25 s here when idle, more in a burst), so
# a start whose directories are missing waits this long for them before it fails as SLURM's does.
DIRECTORY_GRACE_SECONDS = 2.0
DIRECTORY_POLL_SECONDS = 0.05
LAUNCH_COMMIT_SECONDS = 0.05  # how long started pids may wait for a commit
LAUNCH_FAILED_SIGNAL = 53  # sacct's ExitCode 0:53 of a batch step that could not open its files


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class JobLife:
    """Start, watch, end, requeue and kill jobs (mixed into ``Controller``)."""

    def job_dir(self, job_id: int) -> str:
        return paths.job_dir(self.home, job_id)

    def start_jobs(self, plan) -> None:
        """Turn the plan's starts into committed intents (resources taken, state RUNNING)."""
        now = time.time()
        arrays: dict[int, Job] = {}  # split arrays, saved once each however many tasks left them
        for job, index, alloc in plan.starts:
            task, new = job, False
            if index is not None:  # the same split as scontrol's on one pending task
                task = split_element(self, job, index, save_array=False, write_task=False)
                new = task is not job
                if new:
                    self.split_task_claim(job, task)  # its bid cost follows the task
                    arrays[job.job_id] = job
            alloc.job_id = task.job_id
            rec = task.rec
            rec.partition = plan.partitions.get((job.job_id, index), rec.partition)  # one of several given
            rec.state, rec.reason = "RUNNING", "None"
            rec.start_time, rec.end_time = now, None
            if rec.deadline is not None and (rec.time_limit is None or rec.time_limit >= INFINITE
                                             or now + rec.time_limit * 60 > rec.deadline):
                rec.time_limit = int((rec.deadline - now) // 60)  # cut to end by the deadline, as SLURM does
            rec.eligible_time = rec.eligible_time or now
            rec.nodelist = alloc.nodelist
            rec.num_nodes = len(alloc.nodes)
            rec.num_cpus = alloc.num_cpus
            task.alloc = alloc
            task.launch, task.launch_time = "intent", now
            task.pid = task.pgid = task.pid_start = task.status_path = None
            task.end_state, task.kill_at, task.signal_done = None, None, False
            task.expected_start = None
            self.backend_for(task).restore(alloc)
            if new:
                self.insert(task)  # one write for a task split off and started
            else:
                self.save(task)
            self.to_launch.append(task)
        for array in arrays.values():
            self.save(array)

    def _task_paths(self, task: Job) -> None:

        request = self.request_of(task)
        rec = task.rec
        rec.stdout = display_path(request, request.stdout_pattern, rec.job_id, rec.array_job_id, rec.array_task_id)
        rec.stderr = display_path(request, request.stderr_pattern, rec.job_id, rec.array_job_id, rec.array_task_id)

    def launch_started(self) -> None:
        """Start the processes of the intents just committed; commit their pids.

        A start whose working or output directory is missing is put off (turn after turn,
        never blocking the loop) until it appears or the grace is over."""
        todo, self.to_launch = self.to_launch, []
        awaiting, self.awaiting_dirs = self.awaiting_dirs, set()
        todo += [self.jobs[job_id] for job_id in sorted(awaiting) if job_id in self.jobs]
        now = time.time()
        # All begun first, then each collected: nodes' threads start processes while the next
        # job's files are written.
        begun = []
        for job in todo:
            if self.jobs.get(job.job_id) is not job or job.launch != "intent":
                continue
            request = self.request_of(job)
            try:
                ctx = launch.local_context(job.rec, request, job.alloc, self.cluster)
                if (ctx is not None and now < (job.launch_time or 0.0) + DIRECTORY_GRACE_SECONDS
                        and launch.missing_directory(job.rec, request, job.alloc, self.cluster, ctx)):
                    self.awaiting_dirs.add(job.job_id)
                    continue
                begun.append((job, launch.begin(job.rec, request, job.alloc, self.cluster, self.home,
                                                 self.node_names, ctx)))
            except Exception as err:
                self._not_launched(job, err)
        for job, starting in begun:
            try:
                started = starting()
            except Exception as err:
                self._not_launched(job, err)
                continue
            job.pid, job.pgid, job.pid_start = started.pid, started.pgid, started.pid_start
            job.status_path, job.popen = started.status_path, started.popen
            job.launch = "launched"
            self.launched[job.job_id] = job  # saved by its columns alone, so indexed here (see save)
            self.write()  # only the launch's columns: the record itself is as the intent left it
            store.set_internal(self.conn, job.job_id, launch=job.launch, pid=job.pid, pgid=job.pgid,
                               pid_start=job.pid_start, status_path=job.status_path)
            self.watch(job)
        # The pids ride on the next turn's commit (at most LAUNCH_COMMIT_SECONDS away), not on
        # one of their own: a controller killed before it finds each started process by its pid
        # file (recovery.resolve_intent), so committing here would buy nothing, and an fsync now
        # would stand between a short job's end and the loop that sees it.
        wake = FOREVER
        if self.after_commit:  # a launch failed: its effects (a waiting sbatch answered) go now
            self.commit()
        elif self.in_tx:
            wake = time.time() + LAUNCH_COMMIT_SECONDS
        if self.awaiting_dirs:
            wake = min(wake, time.time() + DIRECTORY_POLL_SECONDS)
        self.next_wake = min(getattr(self, "next_wake", FOREVER), wake)

    def _not_launched(self, job: Job, err: Exception) -> None:
        if isinstance(err, StepFilesUnavailable):
            print(f"job {job.job_id}: launch failed: {err}", file=sys.stderr)
            self.launch_failed(job)
            return
        # The executor refused: SLURM holds the job after a launch failure.
        print(f"job {job.job_id}: launch failed: {type(err).__name__}: {err}", file=sys.stderr)
        traceback.print_exception(err)
        self.end_run(job)
        self.requeue(job, hold=True, reason="launch failed requeued held", count=False)

    def launch_failed(self, job: Job) -> None:
        """The batch step's files could not be opened: FAILED, as slurmd reports it (the batch
        step CANCELLED, both 0:53, reason JobLaunchFailure); nothing is requeued."""
        self.write()
        self.end_run(job, 0, LAUNCH_FAILED_SIGNAL, record_steps=True)
        self.finish(job, "FAILED", 0, LAUNCH_FAILED_SIGNAL)

    def watch(self, job: Job) -> None:
        """Wake when the batch step ends: a pidfd, else a poll every second."""
        def ours() -> bool:  # a pid of ours, or the same process we started (not a reused pid)
            return job.popen is not None or launch.alive(job.pid, job.pid_start)

        if not job.pid or not ours():
            self.polled.add(job.job_id)
            return
        try:
            fd = os.pidfd_open(job.pid)
        except (OSError, AttributeError):
            self.polled.add(job.job_id)
            return
        if not ours():  # ended (and the pid reused) just before the pidfd was opened
            os.close(fd)
            self.polled.add(job.job_id)
            return
        job.pidfd = fd
        self.sel.register(fd, selectors.EVENT_READ, ("pidfd", job.job_id))

    def unwatch(self, job: Job) -> None:
        if job.pidfd is not None:
            try:
                self.sel.unregister(job.pidfd)
            except (KeyError, ValueError):
                pass
            os.close(job.pidfd)
            job.pidfd = None
        self.polled.discard(job.job_id)

    def process_gone(self, job: Job) -> bool:
        if not job.pid:
            return True
        if job.popen is not None:
            return job.popen.poll() is not None
        try:
            os.waitpid(job.pid, os.WNOHANG)  # ours if this controller started it
        except ChildProcessError:
            pass
        return not launch.alive(job.pid, job.pid_start)

    def reap(self, job: Job) -> None:
        """The batch step is over: record how it ended."""
        status = launch.read_status(job.status_path)
        if status is None and self.on_this_machine(job):
            status = self.wrapper_exit(job)
        if status is None and job.end_state is None and self._await_market(job):
            return
        wrapper_signal = 0
        if job.popen is not None and job.popen.returncode is not None and job.popen.returncode < 0:
            wrapper_signal = -job.popen.returncode
        if self.session_snapshot is None:  # one pass over /proc for all the turn's ends
            self.session_snapshot = launch.sessions()
        launch.kill_stragglers(job.pgid, job.job_id, self.session_snapshot)  # nothing of a job outlives its batch step
        end_state = job.end_state or ""
        if status is None:
            exit_code, sig = 0, int(wrapper_signal or _signal.SIGKILL)  # a plain int: records are marshalled
        else:
            exit_code, sig = status
        self.end_run(job, exit_code, sig, end_state or None, record_steps=True)
        if end_state in ("REQUEUE", "REQUEUE_HOLD"):
            self.requeue(job, hold=end_state == "REQUEUE_HOLD")
        elif end_state.startswith("EXIT:"):
            code = int(end_state[5:])
            self.finish(job, "COMPLETED" if code == 0 else "FAILED", code, 0)
        elif end_state in ("CANCELLED", "TIMEOUT"):
            self.finish(job, end_state, exit_code, sig)
        elif end_state == "PREEMPTED":
            self.preempted(job, exit_code, sig)
        elif end_state == "NODE_FAIL":
            self.node_fail(job)
        elif status is None and not wrapper_signal:
            self.node_fail(job)
        else:
            self.finish(job, "COMPLETED" if exit_code == 0 and sig == 0 else "FAILED", exit_code, sig)

    def wrapper_exit(self, job: Job) -> tuple[int, int] | None:
        """Without a status file (a full disk kept the wrapper from writing it), the exit of a
        wrapper this controller started says the same; remembered until a commit makes it
        durable, as the turn that saw it may be undone."""
        if job.popen is not None and job.popen.returncode is not None and job.popen.returncode >= 0:
            self.wrapper_exits[job.pid] = job.popen.returncode
        rc = self.wrapper_exits.get(job.pid)
        return None if rc is None else launch.decode_status(rc)

    def _await_market(self, job: Job) -> bool:
        """A Mithril step that vanished without a status (its SSH link dropped): if the market took
        the instances back it was preempted, not a node failure; but the worker's next look at the
        bid may not have come yet, or the notice may have run out unseen. Wait for the looks (two
        polls) and for the backend's records of the instances before deciding."""
        if self.on_this_machine(job):
            return False
        backend = self.backend_for(job)
        if backend.lost_to_market(job):
            job.end_state = "PREEMPTED"
            self.after_commit.append(lambda: self.note_in_output(job, " DUE TO PREEMPTION"))
            return False
        now = time.time()
        if job.verdict_by is None:
            job.verdict_by = now + backend.verdict_seconds
            backend.look_back(job)
            self.unwatch(job)  # the process is gone: only the market's answer is awaited
            return True
        return not self._verdict_due(job, now)

    def _verdict_due(self, job: Job, now: float) -> bool:
        """No sign of the market yet: a node failure once the looks are past and the backend's records
        answered (or stayed out of reach for its patience)."""
        if now < job.verdict_by:
            return False
        backend = self.backend_for(job)
        return not backend.still_looking(job) or now >= job.verdict_by + backend.verdict_patience

    def market_verdicts(self, now: float) -> float:
        """Decide the vanished Mithril steps whose bids were looked at since; the next deadline."""
        wake = FOREVER
        for job in [j for j in self.launched_jobs() if j.verdict_by is not None]:
            backend = self.backend_for(job)
            # An end already decided meanwhile (a notice seen, a cancel) needs no verdict.
            if job.end_state is not None or backend.lost_to_market(job) or self._verdict_due(job, now):
                self.reap(job)
                job.verdict_by = None
            else:
                wake = min(wake, job.verdict_by if now < job.verdict_by else job.verdict_by + backend.verdict_patience)
        return wake

    def node_fail(self, job: Job) -> None:
        """The batch step vanished without a status: SLURM's node failure, requeued when allowed."""
        if job.rec.requeue:
            self.write()
            self.requeue(job)
        else:
            self.finish(job, "NODE_FAIL", 0, 0)

    def end_run(self, job: Job, exit_code: int = 0, sig: int = 0, end_state: str | None = None,
                record_steps: bool = False) -> None:
        """Release what a started job held; record its steps."""
        now = time.time()
        self.unwatch(job)
        if record_steps and job.rec.start_time is not None:
            self.record_steps(job, exit_code, sig, end_state, now)
        if job.alloc is not None:
            self.backend_for(job).release(job.alloc)
            job.alloc = None
        job.launch = None
        job.pid = job.pgid = job.pid_start = None
        job.popen = None
        job.kill_at = None
        job.end_state = None
        self.schedule_wanted = True

    def record_steps(self, job: Job, exit_code: int, sig: int, end_state: str | None, now: float) -> None:
        from sflow.exec import steplog  # deferred: loaded with the first job

        rec = job.rec
        if sig:
            state = "CANCELLED"
        else:
            state = "COMPLETED" if exit_code == 0 else "FAILED"
        first = job.alloc.nodes[0] if job.alloc and job.alloc.nodes else None
        steps = steplog.read_steps(self.home, rec.job_id)
        for step in steps:
            if "usage" not in step.extra:  # its srun died first: its last sample
                last = usage.load(usage.usage_path(self.home, rec.job_id, step.step_id))
                if last:
                    step.extra["usage"] = last
        self.write()
        store.save_step(self.conn, StepRecord(
            rec.job_id, "batch", "batch", state, rec.start_time, now, first.name if first else rec.nodelist,
            1, 1, first.cpus if first else rec.num_cpus, exit_code, sig,
            {"usage": accounting.batch_usage(self, job, steps)}))
        derived = 0
        for step in steps:
            if step.end_time is None:
                step.state, step.end_time = "CANCELLED", now
            derived = max(derived, step.exit_code)
            store.save_step(self.conn, step)
        rec.derived_exit_code = derived

    def finish(self, job: Job, state: str, exit_code: int = 0, sig: int = 0, reason: str | None = None) -> None:
        now = time.time()
        rec = job.rec
        if job.alloc is not None or job.pidfd is not None:
            self.end_run(job)
        self.backend_run_over(job, state)
        if rec.state == "PENDING" and rec.eligible_time is None:
            # Ended before a scheduling pass said since when it may start (sacct's windows list only
            # jobs ever eligible): nothing holds it (submitted or released a moment ago), or a --begin.
            if rec.reason == "None":
                rec.eligible_time = now
            elif rec.reason == "BeginTime" and job.begin_time:
                rec.eligible_time = job.begin_time
        rec.state = state
        rec.end_time = now
        if rec.start_time is None:
            rec.start_time = now  # SLURM's start time of a job ended while pending
        rec.exit_code, rec.exit_signal = exit_code, sig
        if reason is not None:
            rec.reason = reason
        elif state == "FAILED":
            # SLURM blames a batch shell killed by a signal on its launch.
            rec.reason = "JobLaunchFailure" if sig else "NonZeroExitCode"
        elif state == "TIMEOUT":
            rec.reason = "TimeLimit"
        elif state == "NODE_FAIL":
            rec.reason = "NodeDown"
        elif state != "CANCELLED" or job.launch is not None:
            rec.reason = "None"
        job.launch = None
        job.expected_start = None
        self.jobs.pop(rec.job_id, None)
        self.save(job)
        self.schedule_wanted = True
        self.after_commit.append(self.answer_waiters)

    def requeue(self, job: Job, hold: bool = False, reason: str | None = None, count: bool = True) -> None:
        """Back to PENDING, as ``scontrol requeue`` and a node failure do."""
        now = time.time()
        rec = job.rec
        if job.alloc is not None or job.pidfd is not None:
            self.end_run(job)
        self.write()
        # The next run numbers its steps from 0 again and sacct shows only its own, as in SLURM.
        store.delete_steps(self.conn, rec.job_id)
        counter = os.path.join(self.job_dir(rec.job_id), "steps")
        self.after_commit.append(lambda: _remove_quietly(counter))
        self.backend_run_over(job, "REQUEUED")
        if count:
            rec.restart_count += 1
        rec.state = "PENDING"
        rec.start_time = rec.end_time = None
        rec.nodelist = ""
        rec.exit_code = rec.exit_signal = rec.derived_exit_code = 0
        rec.submit_time = now
        rec.eligible_time = None
        request = self.request_of(job)
        rec.num_cpus = request.ntasks * request.cpus_per_task
        delay = self.requeue_delay if count else 0
        job.begin_time = max(job.begin_time or 0, now + delay) if delay > 0 else job.begin_time
        job.seq = store.next_seq(self.conn)
        job.launch = None
        if hold:
            rec.held, rec.priority = True, 0
            rec.reason = reason or "JobHeldUser"
        else:
            rec.priority = request.priority if request.priority is not None else base_priority(job.seq, job.nice)
            rec.reason = "BeginTime" if job.begin_time and job.begin_time > now else "None"
        self.jobs[rec.job_id] = job
        self.save(job)
        self.schedule_wanted = True

    def start_kill(self, job: Job, end_state: str, note: str | None = None) -> None:
        """SIGCONT and SIGTERM now, SIGKILL after KillWait, as slurmstepd does."""
        job.end_state = end_state
        job.kill_at = time.time() + self.cluster.kill_wait
        job.rec.state = "COMPLETING"
        self.save(job)
        if note is not None:
            self.after_commit.append(lambda: self.note_in_output(job, note))
        pgid = job.pgid
        if pgid:
            self.after_commit.append(lambda: launch.terminate(pgid))

    def note_in_output(self, job: Job, why: str) -> None:
        """slurmstepd's line in the job's error file: ``*** JOB 12 ON node1 CANCELLED AT ... ***``."""
        from sflow.exec import batch  # deferred: loaded with the first job
        from sflow.exec.env import JobContext

        rec = job.rec
        try:
            node = expand_hostlist(rec.nodelist)[0]
        except (InvalidValue, IndexError):
            node = rec.nodelist
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        # The step daemon of a cluster of named nodes on one host signs with its node, as on the reference cluster.
        line = f"slurmstepd-{node}: error: *** JOB {rec.job_id} ON {node} CANCELLED AT {when}{why} ***\n"
        try:
            request = self.request_of(job)
            with open(os.path.join(self.job_dir(rec.job_id), "context.json")) as handle:
                ctx = JobContext.from_json(json.load(handle))
            _, err_path, _ = batch.output_paths(ctx, request.stdout_pattern, request.error, None)
            fd = os.open(err_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def check_running(self, now: float) -> float:
        """Time limits, ``--signal`` and KillWait; the next time one is due."""
        wake = FOREVER
        for job in self.launched_jobs():
            if job.rec.state not in RUNNING_STATES or job.launch != "launched" or job.verdict_by is not None:
                continue
            if job.kill_at is not None:
                if now >= job.kill_at:
                    pgid = job.pgid
                    self.after_commit.append(lambda pgid=pgid: launch.signal_job(pgid, _signal.SIGKILL))
                    job.kill_at = now + max(1, self.cluster.kill_wait)
                    self.save(job)
                wake = min(wake, job.kill_at)
                continue
            deadline = job.deadline()
            if deadline is None:
                continue
            request = self.request_of(job)
            if request.signal is not None and not job.signal_done:
                when = deadline - request.signal.seconds
                if now >= when:
                    mode = "batch" if request.signal.batch_only else "steps"
                    pgid, number = job.pgid, request.signal.number
                    self.after_commit.append(lambda p=pgid, n=number, m=mode: launch.signal_job(p, n, m))
                    job.signal_done = True
                    self.save(job)
                else:
                    wake = min(wake, when)
            if now >= deadline:
                self.start_kill(job, "TIMEOUT", " DUE TO TIME LIMIT")
                wake = min(wake, job.kill_at)
            else:
                wake = min(wake, deadline)
        return wake

    def poll_processes(self, now: float) -> None:
        if now - self.last_poll < POLL_SECONDS:
            return
        self.last_poll = now
        for job_id in list(self.polled):
            job = self.jobs.get(job_id)
            if job is None or job.launch != "launched":
                self.polled.discard(job_id)
                continue
            if self.process_gone(job):
                self.reap(job)
