"""The per-user controller: owns the queue, schedules jobs and watches them run.

One process per sflow home (``python3 -m sflow.queue.controller``), started on
demand by the first command that needs it and gone after a while with nothing
to do. A single thread turns a ``selectors`` loop; each turn:

1. reads every request that has arrived and every batch step that ended,
2. applies them, fires due timers (time limits, ``--signal``, KillWait) and
   runs a scheduling pass, all in one SQLite transaction,
3. commits, and only then answers (an acknowledged submission is on disk)
   and signals processes,
4. starts the jobs the pass chose: their start (state RUNNING, resources) was
   committed in step 3 as an *intent*; each pid is committed right after its
   launch. ``recovery`` resolves intents a killed controller left behind, so
   no job is lost and none runs twice.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import signal as _signal
import socket
import struct
import sys
import time
import traceback

from sflow.backends.local import LocalBackend, Need, estimate_nodes
from sflow.queue import launch, paths, store
from sflow.queue.jobs import COLUMN_NAMES, Job, base_priority
from sflow.queue.scheduler import FOREVER, Scheduler
from sflow.records import FINISHED_STATES, JobRecord, StepRecord

RUNNING_STATES = ("RUNNING", "COMPLETING")
POLL_SECONDS = 1.0  # liveness checks for processes no pidfd watches


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class Conn:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.inbuf = b""
        self.outbuf = b""
        self.deferred = 0  # replies still owed (``wait``)
        self.eof = False


class Controller:
    def __init__(self, home: str, cluster=None):
        from sflow.conf import load_cluster

        self.home = home
        self.cluster = cluster or load_cluster()
        self.conf_stamp = self._conf_stamp()
        self.conn = store.open_db(home)
        self.backend = LocalBackend(self.cluster, home)
        self.scheduler = Scheduler(self.cluster, self.backend, self._kill_invalid_default())
        self.jobs: dict[int, Job] = {}
        self.in_tx = False
        self.after_commit: list = []
        self.replies: list[tuple[Conn, dict]] = []
        self.to_launch: list[Job] = []
        self.schedule_wanted = True
        self.plan_wake = FOREVER
        self.waiters: list[tuple[Conn, list[int]]] = []
        self.sel = selectors.DefaultSelector()
        self.conns: dict[int, Conn] = {}
        self.listener: socket.socket | None = None
        self.stopping = False
        self.polled: set[int] = set()  # jobs watched by polling (no pidfd)
        self.last_poll = 0.0
        self.idle_seconds = _env_float("SFLOW_CONTROLLER_IDLE", 600.0)
        self.requeue_delay = _env_float("SFLOW_REQUEUE_DELAY", 120.0)
        self.last_activity = time.time()
        self.uid = os.getuid()

    # ------------------------------------------------------------------ configuration

    def _conf_stamp(self):
        source = self.cluster.source
        try:
            return (source, os.stat(source).st_mtime_ns) if source else None
        except OSError:
            return None

    def _kill_invalid_default(self) -> bool:
        for key, value in self.cluster.config.items():
            if key.lower() == "dependencyparameters":
                return "kill_invalid_depend" in value.lower()
        return False

    def config_value(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.cluster.config.items():
            if key.lower() == name.lower():
                return value
        return default

    def maybe_reload(self) -> None:
        """Pick up an edited slurm.conf (at a submission, when it matters)."""
        source = self.cluster.source
        if not source:
            return
        try:
            stamp = (source, os.stat(source).st_mtime_ns)
        except OSError:
            return
        if stamp == self.conf_stamp:
            return
        from sflow.conf import load_file
        from sflow.errors import SflowError

        try:
            cluster = load_file(source)
        except SflowError as err:
            print(f"keeping the previous configuration: {err}", file=sys.stderr)
            self.conf_stamp = stamp
            return
        self.cluster = cluster
        self.conf_stamp = stamp
        self.backend = LocalBackend(cluster, self.home)
        for job in self.jobs.values():
            if job.alloc is not None:
                self.backend.restore(job.alloc)
            job.never_reason = None
        self.scheduler = Scheduler(cluster, self.backend, self._kill_invalid_default())
        for job in self.jobs.values():
            if job.rec.state == "PENDING":
                self.check_never(job)
        self.schedule_wanted = True

    # ------------------------------------------------------------------ store

    def write(self) -> None:
        if not self.in_tx:
            self.conn.execute("BEGIN IMMEDIATE")
            self.in_tx = True

    def commit(self) -> None:
        if self.in_tx:
            self.conn.execute("COMMIT")
            self.in_tx = False
        effects, self.after_commit = self.after_commit, []
        for effect in effects:
            try:
                effect()
            except Exception:  # an effect failing must not stop the others
                traceback.print_exc()

    def save(self, job: Job) -> None:
        self.write()
        store.update_job(self.conn, job.rec, **job.columns())

    def insert(self, job: Job) -> None:
        self.write()
        store.insert_job(self.conn, job.rec, **job.columns())

    def load(self) -> None:
        marks = ",".join("?" * len(store.ACTIVE_STATES))
        rows = store.read_internal(self.conn, f"state IN ({marks})", store.ACTIVE_STATES, COLUMN_NAMES)
        for rec, *values in rows:
            job = Job.from_row(rec, dict(zip(COLUMN_NAMES, values)))
            self.jobs[rec.job_id] = job
        for job in self.jobs.values():
            if job.rec.state == "PENDING":
                self.check_never(job)

    def request_of(self, job: Job):
        if job.request is None:
            from sflow.slurm.model import JobRequest

            owner = None
            if job.request_json is None and job.rec.array_job_id is not None:
                owner = self.jobs.get(job.rec.array_job_id)
                if owner is not None and owner.request is not None:
                    job.request = owner.request
            if job.request is None:
                text = job.request_json
                if text is None and owner is not None:
                    text = owner.request_json
                if text is None:
                    row = self.conn.execute("SELECT request FROM jobs WHERE job_id = ?",
                                            (job.rec.array_job_id,)).fetchone()
                    text = row[0] if row else None
                job.request = JobRequest.model_validate_json(text)
        if job.need is None:
            job.need = Need.of(job.request)
        return job.request

    def check_never(self, job: Job) -> None:
        """Why a queued job can never start with the cluster as configured (or None)."""
        from sflow.errors import SflowError

        self.request_of(job)
        try:
            job.never_reason = self.backend.check_need(job.need, self.cluster.partition(job.rec.partition))
        except SflowError:
            job.never_reason = "PartitionConfig"

    def record_of(self, job_id: int) -> JobRecord | None:
        job = self.jobs.get(job_id)
        if job is not None:
            return job.rec
        found = store.read_jobs(self.conn, "job_id = ?", (job_id,))
        return found[0] if found else None

    # ------------------------------------------------------------------ job life

    def job_dir(self, job_id: int) -> str:
        return paths.job_dir(self.home, job_id)

    def start_jobs(self, plan) -> None:
        """Turn the plan's starts into committed intents (resources taken, state RUNNING)."""
        from sflow.slurm.values import format_array

        now = time.time()
        for job, index, alloc in plan.starts:
            task = job
            if index is not None:
                rest = [i for i in job.pending_indices or [] if i != index]
                if rest:
                    self.write()
                    task_id = store.next_job_id(self.conn, self.cluster.first_job_id)
                    rec = JobRecord(**{**job.rec.__dict__, "job_id": task_id, "array_task_id": index,
                                       "array_task_str": None})
                    task = Job(rec=rec, seq=job.seq, nice=job.nice, request=job.request, need=job.need)
                    job.pending_indices = rest
                    job.rec.array_task_str = format_array(rest, job.rec.array_max_tasks)
                    self.save(job)
                else:
                    job.rec.array_task_id = index
                    job.rec.array_task_str = None
                    job.pending_indices = None
                self._task_paths(task)
            alloc.job_id = task.job_id
            rec = task.rec
            rec.state, rec.reason = "RUNNING", "None"
            rec.start_time, rec.end_time = now, None
            rec.eligible_time = rec.eligible_time or now
            rec.nodelist = alloc.nodelist
            rec.num_nodes = len(alloc.nodes)
            rec.num_cpus = alloc.num_cpus
            task.alloc = alloc
            task.launch, task.launch_time = "intent", now
            task.pid = task.pgid = task.pid_start = task.status_path = None
            task.end_state, task.kill_at, task.signal_done = None, None, False
            task.expected_start = None
            self.backend.restore(alloc)
            if task is not job:
                self.insert(task)
                self.jobs[task.job_id] = task
            else:
                self.save(task)
            self.to_launch.append(task)

    def _task_paths(self, task: Job) -> None:
        from sflow.queue.submit import display_path

        request = self.request_of(task)
        rec = task.rec
        rec.stdout = display_path(request, request.stdout_pattern, rec.job_id, rec.array_job_id, rec.array_task_id)
        rec.stderr = display_path(request, request.stderr_pattern, rec.job_id, rec.array_job_id, rec.array_task_id)

    def launch_started(self) -> None:
        """Start the processes of the intents just committed; commit each pid."""
        todo, self.to_launch = self.to_launch, []
        for job in todo:
            if self.jobs.get(job.job_id) is not job or job.launch != "intent":
                continue
            try:
                started = launch.start(job.rec, self.request_of(job), job.alloc, self.cluster, self.home)
            except Exception as err:  # the executor refused: SLURM holds the job after a launch failure
                print(f"job {job.job_id}: launch failed: {type(err).__name__}: {err}", file=sys.stderr)
                traceback.print_exc()
                self.end_run(job)
                self.requeue(job, hold=True, reason="launch failed requeued held", count=False)
                continue
            job.pid, job.pgid, job.pid_start = started.pid, started.pgid, started.pid_start
            job.status_path, job.popen = started.status_path, started.popen
            job.launch = "launched"
            self.save(job)
            self.commit()
            self.watch(job)
        self.commit()

    def watch(self, job: Job) -> None:
        try:
            fd = os.pidfd_open(job.pid)
        except (OSError, AttributeError):
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
        wrapper_signal = 0
        if job.popen is not None and job.popen.returncode is not None and job.popen.returncode < 0:
            wrapper_signal = -job.popen.returncode
        pgid = job.pgid
        if pgid:
            launch.signal_job(pgid, _signal.SIGKILL)  # nothing of a job outlives its batch step
        end_state = job.end_state or ""
        if status is None:
            exit_code, sig = 0, wrapper_signal or _signal.SIGKILL
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
        elif status is None and not wrapper_signal:
            self.node_fail(job)
        else:
            self.finish(job, "COMPLETED" if exit_code == 0 and sig == 0 else "FAILED", exit_code, sig)

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
            self.backend.release(job.alloc)
            job.alloc = None
        job.launch = None
        job.pid = job.pgid = job.pid_start = None
        job.popen = None
        job.kill_at = None
        job.end_state = None
        self.schedule_wanted = True

    def record_steps(self, job: Job, exit_code: int, sig: int, end_state: str | None, now: float) -> None:
        from sflow.exec import steplog

        rec = job.rec
        if sig:
            state = "CANCELLED"
        else:
            state = "COMPLETED" if exit_code == 0 else "FAILED"
        first = job.alloc.nodes[0] if job.alloc and job.alloc.nodes else None
        self.write()
        store.save_step(self.conn, StepRecord(
            rec.job_id, "batch", "batch", state, rec.start_time, now, first.name if first else rec.nodelist,
            1, 1, first.cpus if first else rec.num_cpus, exit_code, sig))
        derived = 0
        for step in steplog.read_steps(self.home, rec.job_id):
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
        rec.state = state
        rec.end_time = now
        if rec.start_time is None:
            rec.start_time = now  # SLURM's start time of a job ended while pending
        rec.exit_code, rec.exit_signal = exit_code, sig
        if reason is not None:
            rec.reason = reason
        elif state == "FAILED":
            rec.reason = "NonZeroExitCode"
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

        def signal() -> None:
            launch.signal_job(pgid, _signal.SIGCONT)
            launch.signal_job(pgid, _signal.SIGTERM)

        if pgid:
            self.after_commit.append(signal)

    def note_in_output(self, job: Job, why: str) -> None:
        """slurmstepd's line in the job's error file: ``*** JOB 12 ON node1 CANCELLED AT ... ***``."""
        from sflow.exec import batch
        from sflow.exec.env import JobContext
        from sflow.slurm.values import InvalidValue, expand_hostlist

        rec = job.rec
        try:
            node = expand_hostlist(rec.nodelist)[0]
        except (InvalidValue, IndexError):
            node = rec.nodelist
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        line = f"slurmstepd: error: *** JOB {rec.job_id} ON {node} CANCELLED AT {when}{why} ***\n"
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

    # ------------------------------------------------------------------ timers

    def check_running(self, now: float) -> float:
        """Time limits, ``--signal`` and KillWait; the next time one is due."""
        wake = FOREVER
        for job in list(self.jobs.values()):
            if job.rec.state not in RUNNING_STATES or job.launch != "launched":
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

    # ------------------------------------------------------------------ scheduling

    def schedule(self, now: float) -> None:
        from sflow.queue.lookup import JobLookup

        pending = [j for j in self.jobs.values() if j.rec.state == "PENDING"]
        if not pending:
            self.plan_wake = FOREVER
            return
        for job in pending:
            self.request_of(job)
        running = [j for j in self.jobs.values() if j.rec.state in RUNNING_STATES]
        plan = self.scheduler.plan(now, pending, running, JobLookup(self))
        self.plan_wake = plan.wake_at
        for job in plan.cancels:
            job.rec.cancelled_by = job.rec.uid
            self.finish(job, "CANCELLED", reason="DependencyNeverSatisfied")
        cancelled = {j.job_id for j in plan.cancels}
        for job in pending:
            if job.job_id in cancelled:
                continue
            rec = job.rec
            changed = False
            reason = plan.reasons.get(rec.job_id)
            if reason is not None and reason != rec.reason:
                rec.reason, changed = reason, True
            text = plan.dependency_text.get(rec.job_id)
            if text is not None and text != rec.dependency:
                rec.dependency, changed = text, True
            eligible = plan.eligible.get(rec.job_id)
            if eligible is not None and rec.eligible_time is None:
                rec.eligible_time, changed = eligible, True
            expected = plan.expected.get(rec.job_id)
            if expected != job.expected_start and reason is not None:
                job.expected_start, changed = expected, True
            if changed:
                self.save(job)
        self.start_jobs(plan)

    # ------------------------------------------------------------------ requests

    def answer(self, conn: Conn, reply: dict) -> None:
        self.replies.append((conn, reply))

    def handle_line(self, conn: Conn, line: bytes) -> None:
        from sflow.queue import ops

        try:
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ValueError("a request is a JSON object")
        except ValueError as err:
            self.answer(conn, {"ok": False, "stderr": f"sflow: error: bad request: {err}\n", "exit_code": 1})
            return
        self.last_activity = time.time()
        self.write()
        self.conn.execute("SAVEPOINT request")
        try:
            reply = ops.dispatch(self, conn, message)
        except ops.Refused as refused:
            self.conn.execute("ROLLBACK TO request")
            self.conn.execute("RELEASE request")
            self.resync()
            self.answer(conn, refused.reply)
            return
        except Exception as err:
            self.conn.execute("ROLLBACK TO request")
            self.conn.execute("RELEASE request")
            traceback.print_exc()
            self.resync()
            self.answer(conn, {"ok": False, "stderr": f"sflow: error: internal error: {type(err).__name__}: {err}\n",
                               "exit_code": 1})
            return
        self.conn.execute("RELEASE request")
        if reply is not None:
            self.answer(conn, reply)

    def resync(self) -> None:
        """Make the jobs in memory what the database says, after a request failed halfway."""
        marks = ",".join("?" * len(store.ACTIVE_STATES))
        rows = store.read_internal(self.conn, f"state IN ({marks})", store.ACTIVE_STATES, COLUMN_NAMES)
        fresh: dict[int, Job] = {}
        for rec, *values in rows:
            job = Job.from_row(rec, dict(zip(COLUMN_NAMES, values)))
            old = self.jobs.get(rec.job_id)
            if old is not None:
                job.pidfd, job.popen, job.never_reason = old.pidfd, old.popen, old.never_reason
            fresh[rec.job_id] = job
        for job_id, old in self.jobs.items():
            if job_id not in fresh:
                self.unwatch(old)
        self.jobs = fresh
        self.backend = LocalBackend(self.cluster, self.home)
        for job in fresh.values():
            if job.alloc is not None:
                self.backend.restore(job.alloc)
        self.scheduler.backend = self.backend
        self.schedule_wanted = True

    def answer_waiters(self) -> None:
        from sflow.queue.ops import wait_summary

        still = []
        for conn, job_ids in self.waiters:
            summary = wait_summary(self, job_ids)
            if summary is None:
                still.append((conn, job_ids))
                continue
            conn.deferred -= 1
            self.send(conn, summary)
        self.waiters = still

    def send(self, conn: Conn, reply: dict) -> None:
        if conn.sock.fileno() < 0:
            return
        conn.outbuf += json.dumps(reply).encode() + b"\n"
        self.flush(conn)

    def flush(self, conn: Conn) -> None:
        try:
            while conn.outbuf:
                sent = conn.sock.send(conn.outbuf)
                conn.outbuf = conn.outbuf[sent:]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.drop(conn)
            return
        self._interest(conn)

    def _interest(self, conn: Conn) -> None:
        if conn.eof and not conn.outbuf and conn.deferred <= 0:
            self.drop(conn)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
        try:
            self.sel.modify(conn.sock, events, ("conn", conn))
        except (KeyError, ValueError):
            pass

    def drop(self, conn: Conn) -> None:
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        self.conns.pop(id(conn), None)
        self.waiters = [(c, ids) for c, ids in self.waiters if c is not conn]
        try:
            conn.sock.close()
        except OSError:
            pass

    # ------------------------------------------------------------------ the loop

    def listen(self) -> None:
        path = paths.socket_path(self.home)
        try:
            os.unlink(path)  # left by a controller that died: we hold the lock now
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.socket_inode = os.stat(path).st_ino
        sock.listen(128)
        sock.setblocking(False)
        self.listener = sock
        self.sel.register(sock, selectors.EVENT_READ, ("listen", None))

    def unlisten(self) -> None:
        if self.listener is None:
            return
        try:
            self.sel.unregister(self.listener)
        except (KeyError, ValueError):
            pass
        path = paths.socket_path(self.home)
        try:
            if os.stat(path).st_ino == self.socket_inode:  # never remove a successor's socket
                os.unlink(path)
        except OSError:
            pass
        self.listener.close()
        self.listener = None

    def accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                if err.errno in (errno.EMFILE, errno.ENFILE):
                    return
                raise
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
            if uid not in (self.uid, 0):
                sock.close()
                continue
            sock.setblocking(False)
            conn = Conn(sock)
            self.conns[id(conn)] = conn
            self.sel.register(sock, selectors.EVENT_READ, ("conn", conn))

    def read(self, conn: Conn) -> list[bytes]:
        try:
            data = conn.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            data = b""
        if not data:
            conn.eof = True
            lines = [conn.inbuf] if conn.inbuf.strip() else []
            conn.inbuf = b""
            return lines
        conn.inbuf += data
        *lines, conn.inbuf = conn.inbuf.split(b"\n")
        return [line for line in lines if line.strip()]

    def busy(self) -> bool:
        return bool(self.jobs) or bool(self.conns)

    def turn(self, timeout: float) -> None:
        events = self.sel.select(max(0.0, timeout))
        lines: list[tuple[Conn, bytes]] = []
        ended: list[Job] = []
        touched: list[Conn] = []
        for key, mask in events:
            kind, data = key.data
            if kind == "listen":
                self.accept()
            elif kind == "wakeup":
                try:
                    while os.read(key.fd, 512):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
            elif kind == "pidfd":
                job = self.jobs.get(data)
                if job is None:
                    try:
                        self.sel.unregister(key.fd)
                    except (KeyError, ValueError):
                        pass
                    continue
                if self.process_gone(job):
                    ended.append(job)
            elif kind == "conn":
                conn = data
                if mask & selectors.EVENT_WRITE:
                    self.flush(conn)
                if mask & selectors.EVENT_READ:
                    lines += [(conn, line) for line in self.read(conn)]
                    touched.append(conn)
        now = time.time()
        for job in ended:
            if self.jobs.get(job.job_id) is job and job.launch == "launched":
                self.reap(job)
        for conn, line in lines:
            self.handle_line(conn, line)
        self.poll_processes(now)
        running_wake = self.check_running(now)
        if self.schedule_wanted or now >= self.plan_wake:
            self.schedule_wanted = False
            self.schedule(now)
        self.next_wake = min(running_wake, self.plan_wake)
        self.commit()
        replies, self.replies = self.replies, []
        for conn, reply in replies:
            self.send(conn, reply)
        for conn in touched:
            if conn.eof:
                self._interest(conn)
        if self.to_launch:
            self.launch_started()

    def run(self) -> None:
        from sflow.queue.recovery import recover

        self.load()
        recover(self)
        self.commit()
        self.launch_started()
        self.listen()
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        _signal.set_wakeup_fd(wake_w)
        self.sel.register(wake_r, selectors.EVENT_READ, ("wakeup", None))
        for signum in (_signal.SIGTERM, _signal.SIGINT):
            _signal.signal(signum, self._stop)
        _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)
        _signal.signal(_signal.SIGCHLD, lambda *_: None)  # wakes the loop when a batch step ends
        self.next_wake = 0.0
        while not self.stopping:
            now = time.time()
            timeout = min(self.next_wake - now, POLL_SECONDS if self.polled else 5.0)
            self.turn(timeout)
            if self.busy():
                self.last_activity = time.time()
            elif time.time() - self.last_activity > self.idle_seconds:
                if self.exit_idle():
                    break
        self.unlisten()
        self.commit()
        for conn in list(self.conns.values()):
            self.flush(conn)
            self.drop(conn)

    def exit_idle(self) -> bool:
        """Idle long enough: stop listening and leave. A client caught connecting
        meanwhile sees the connection drop, starts a new controller and asks again."""
        self.unlisten()
        return True

    def _stop(self, signum, frame) -> None:
        self.stopping = True


def acquire_lock(home: str):
    """The exclusive lock that makes one controller per home; None if another holds it."""
    import fcntl

    fd = os.open(paths.lock_path(home), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def main() -> int:
    home = paths.home()
    lock = acquire_lock(home)
    if lock is None:
        return 0  # another controller owns this home
    with open(paths.pid_path(home), "w") as handle:
        handle.write(f"{os.getpid()}\n")
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} controller {os.getpid()} starting in {home}", file=sys.stderr)
    controller = Controller(home)
    try:
        controller.run()
    finally:
        try:
            os.unlink(paths.pid_path(home))
        except OSError:
            pass
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} controller {os.getpid()} stopping", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
