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

A backend with news of its own (Mithril's, whose worker thread makes every
API call and takes commands after COMMIT) wakes the loop through a pipe, and
its events are applied in the next turn (``sflow.queue.backends_life``), so
the loop never waits on the network.
"""

from __future__ import annotations

import fcntl
import json
import os
import selectors
import signal as _signal
import sqlite3
import sys
import time
import traceback

from sflow.backends.base import Deferred
from sflow.backends.local import LocalBackend, Need
from sflow.conf import conf_stamp, load_cluster_watched, with_runtime_partitions
from sflow.errors import SflowError
from sflow.exec import node_names
from sflow.queue import accounting, health, ops, paths, store, watchdog
from sflow.queue.backends_life import BackendLife
from sflow.queue.jobs import COLUMN_NAMES, Job
from sflow.queue.lifecycle import POLL_SECONDS, RUNNING_STATES, JobLife
from sflow.queue.lookup import JobLookup
from sflow.queue.ops import wait_summary
from sflow.queue.recovery import recover
from sflow.queue.scheduler import FOREVER, Scheduler
from sflow.queue.server import Conn, SocketServer
from sflow.records import JobRecord
from sflow.slurm.model import JobRequest

# How many times a turn looks again for requests arrived meanwhile before its COMMIT: more
# submissions share one fsync; a bound keeps the first one's answer from waiting long.
DRAIN_ROUNDS = 4

# Pending reasons a controller must stay up for: the job may start without any new command.
WAITING_TO_START = ("None", "Resources", "Priority", "JobArrayTaskLimit", "BeginTime")


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class Controller(JobLife, BackendLife, SocketServer):
    def __init__(self, home: str, cluster=None):
        self.home = home
        # A cluster given is kept; one read from the configuration follows every change to it.
        self.conf_env = None if cluster else {**os.environ, "SFLOW_HOME": home}
        if cluster is None:
            cluster, self.conf_stamp = load_cluster_watched(self.conf_env)
        else:
            self.conf_stamp = None
        self.cluster = cluster
        self.conn = store.open_db(home)
        self.backend = LocalBackend(self.cluster, home)
        self.node_names = node_names.prepare(self.cluster, paths.hosts_path(home))  # how local jobs' processes start
        self.backends = {self.backend.name: self.backend}  # the others are made when a job first needs them
        self.deferred: list = []  # submissions waiting for a backend's market
        self.scheduler = Scheduler(self.cluster, self.backend, self._kill_invalid_default(), self.backend_named)
        self.jobs: dict[int, Job] = {}
        # The jobs whose process was started, as far as it is known (see launched_jobs): what each turn
        # watches, without a look at every job queued.
        self.launched: dict[int, Job] = {}
        self.in_tx = False
        self.after_commit: list = []
        self.replies: list[tuple[Conn, dict]] = []
        self.to_launch: list[Job] = []
        self.awaiting_dirs: set[int] = set()  # started jobs whose directories are not there yet
        self.schedule_wanted = True
        self.plan_wake = FOREVER
        self.schedule_not_before = 0.0  # see turn()
        # Replies owed when jobs end: (connection, job ids, how the summary is answered, or None: as it is).
        self.waiters: list[tuple[Conn, list[int], object]] = []
        self.sel = selectors.DefaultSelector()
        self.conns: dict[int, Conn] = {}
        self.listener = None  # the listening socket, while taking connections
        self.stopping = False
        self.polled: set[int] = set()  # jobs watched by polling (no pidfd)
        self.gauges: dict[int, list] = {}  # batch steps' usage being gathered (sflow.queue.accounting)
        self.last_poll = 0.0
        self.idle_seconds = _env_float("SFLOW_CONTROLLER_IDLE", 600.0)
        self.requeue_delay = _env_float("SFLOW_REQUEUE_DELAY", 120.0)
        self.last_activity = time.time()
        self.uid = os.getuid()
        self.backup_every = _env_float("SFLOW_BACKUP_SECONDS", 300.0)
        self.backed_up = time.time()  # main() takes one at start
        self.unsaved_backup = False  # committed since the last backup
        self.wrapper_exits: dict[int, int] = {}  # see JobLife.wrapper_exit
        self.session_snapshot: dict[int, list[int]] | None = None  # /proc's sessions, taken once a turn
        self._config_read: dict | None = None  # the slurm.conf keys config_value has lowered
        self._config_lowered: dict[str, str] = {}

    def _kill_invalid_default(self) -> bool:
        for key, value in self.cluster.config.items():
            if key.lower() == "dependencyparameters":
                return "kill_invalid_depend" in value.lower()
        return False

    def config_value(self, name: str, default: str | None = None) -> str | None:
        """A slurm.conf key, compared case-insensitively as SLURM does (a submission asks several)."""
        config = self.cluster.config
        if self._config_read is not config:
            lowered: dict[str, str] = {}
            for key, value in config.items():
                lowered.setdefault(key.lower(), value)  # the first spelling of a key wins
            self._config_read, self._config_lowered = config, lowered
        return self._config_lowered.get(name.lower(), default)

    def maybe_reload(self, force: bool = False) -> SflowError | None:
        """Schedule on slurm.conf as it is now: made, edited or removed since it was read, it is
        read again (each turn, before any request, so a command never sees an older cluster
        than sinfo does). A file that does not parse leaves the cluster as it was: the error."""
        if self.conf_env is None:
            return None
        if not force and conf_stamp(self.conf_env, self.conf_files()) == self.conf_stamp:
            return None
        try:
            cluster, stamp = load_cluster_watched(self.conf_env)
        except SflowError as err:
            print(f"keeping the previous configuration: {err}", file=sys.stderr)
            self.conf_stamp = conf_stamp(self.conf_env, self.conf_files())  # said once, not every turn
            return err
        self.conf_stamp = stamp
        self.use_cluster(cluster)
        return None

    def conf_files(self) -> list[str]:
        """The files the configuration in force was read from."""
        return [entry[0] for entry in self.conf_stamp[1]] if self.conf_stamp else []

    def cluster_with_runtime_partitions(self, cluster=None):
        """slurm.conf's cluster with the partitions scontrol created or deleted since."""
        return with_runtime_partitions(cluster or self.cluster, {"SFLOW_HOME": self.home})

    def use_cluster(self, cluster) -> None:
        """Schedule on a changed cluster from now on (pending jobs are checked against it again)."""
        self.cluster = cluster
        self._rebuild_backend()
        self.node_names = node_names.prepare(cluster, paths.hosts_path(self.home))
        for job in self.jobs.values():
            job.never_reason = None
        self.scheduler = Scheduler(cluster, self.backend, self._kill_invalid_default(), self.backend_named)
        for job in self.jobs.values():
            if job.rec.state == "PENDING":
                self.check_never(job)
        self.schedule_wanted = True

    def _rebuild_backend(self) -> None:
        """A fresh local backend holding what the running local jobs hold (a job placed elsewhere
        is held by its own backend)."""
        self.backend = LocalBackend(self.cluster, self.home)
        self.backends[self.backend.name] = self.backend
        for job in self.jobs.values():
            if job.alloc is not None and self.on_this_machine(job):
                self.backend.restore(job.alloc)

    # ------------------------------------------------------------------ store

    def write(self) -> None:
        if not self.in_tx:
            self.conn.execute("BEGIN IMMEDIATE")
            self.in_tx = True

    def commit(self) -> None:
        if self.in_tx:
            self.conn.execute("COMMIT")
            self.in_tx = False
            self.unsaved_backup = True
            self.wrapper_exits.clear()
        effects, self.after_commit = self.after_commit, []
        for effect in effects:
            try:
                effect()
            except Exception:  # an effect failing must not stop the others
                traceback.print_exc()
        if self.unsaved_backup and time.time() - self.backed_up >= self.backup_every:
            self.save_backup()

    def rollback(self) -> None:
        """End the open transaction, if SQLite has not ended it already (it may, on a full disk)."""
        self.in_tx = False
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error as err:
                print(f"rollback failed: {err}", file=sys.stderr)

    def save_backup(self) -> None:
        """Refresh sflow.db.bak, from which ``flow doctor --repair`` restores a damaged store."""
        self.backed_up = time.time()  # a failed attempt waits a full period too
        try:
            store.backup(self.conn, self.home)
            self.unsaved_backup = False
        except (OSError, sqlite3.Error) as err:
            print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} backup of the store failed: {err}", file=sys.stderr)

    def save(self, job: Job) -> None:
        self.write()
        store.update_job(self.conn, job.rec, **job.columns())
        if job.launch == "launched":  # every launch is saved: here the index learns of it
            self.launched[job.job_id] = job

    def launched_jobs(self) -> list[Job]:
        """The jobs of ``jobs`` whose process was started and not yet reaped."""
        found = []
        for job_id, job in list(self.launched.items()):
            if self.jobs.get(job_id) is not job or job.launch != "launched":
                del self.launched[job_id]  # ended, or replaced by a fresh copy (resync)
            else:
                found.append(job)
        return found

    def index_launched(self) -> None:
        self.launched = {job.job_id: job for job in self.jobs.values() if job.launch == "launched"}

    def insert(self, job: Job) -> None:
        self.write()
        store.insert_job(self.conn, job.rec, **job.columns())
        if job.request_json is not None:
            store.save_request(self.conn, job.job_id, job.request_json)

    def load(self) -> None:
        marks = ",".join("?" * len(store.ACTIVE_STATES))
        rows = store.read_internal(self.conn, f"state IN ({marks})", store.ACTIVE_STATES, COLUMN_NAMES)
        for rec, *values in rows:
            job = Job.from_row(rec, dict(zip(COLUMN_NAMES, values)))
            self.jobs[rec.job_id] = job
        self.index_launched()
        for job in self.jobs.values():
            if job.rec.state == "PENDING":
                self.check_never(job)

    def request_of(self, job: Job):
        """The job's JobRequest (an array's tasks share their array's), parsed once."""
        if job.request is None:

            owner_id = job.rec.array_job_id if job.rec.array_job_id is not None else job.job_id
            owner = self.jobs.get(owner_id)
            if owner is not None and owner is not job and owner.request is not None:
                job.request = owner.request
            else:
                text = job.request_json or store.load_request(self.conn, owner_id)
                job.request = JobRequest.from_json(text)
        if job.need is None:
            job.need = Need.of(job.request)
        return job.request

    def check_never(self, job: Job) -> None:
        """Why a queued job can never start with the cluster as configured (or None)."""
        self.request_of(job)
        if not self.on_this_machine(job):
            job.never_reason = None  # the translator decided at submission; the market decides now
            return
        try:
            reasons = [self.backend.check_need(job.need, partition)
                       for partition in self.cluster.partitions_for(job.rec.partition)]
            job.never_reason = None if None in reasons else reasons[0]  # one partition that can is enough
        except SflowError:
            job.never_reason = "PartitionConfig"

    def record_of(self, job_id: int) -> JobRecord | None:
        job = self.jobs.get(job_id)
        if job is not None:
            return job.rec
        found = store.read_jobs(self.conn, "job_id = ?", (job_id,))
        return found[0] if found else None

    # ------------------------------------------------------------------ scheduling

    def schedule(self, now: float) -> None:

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
            job.rec.cancelled_by = None  # the controller cancels it, no user: sacct says plain CANCELLED
            self.finish(job, "CANCELLED", reason="DependencyNeverSatisfied")
        for job in plan.too_late:
            self.finish(job, "DEADLINE", exit_code=1, reason="DeadLine")  # sacct: DEADLINE 1:0
        cancelled = {j.job_id for j in plan.cancels + plan.too_late}
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

    def handle_line(self, conn: Conn, line: bytes) -> None:
        try:
            message = json.loads(line)
            if not isinstance(message, dict):
                raise ValueError("a request is a JSON object")
        except ValueError as err:
            self.answer(conn, {"ok": False, "stderr": f"sflow: error: bad request: {err}\n", "exit_code": 1})
            return
        self.handle_message(conn, message)

    def handle_message(self, conn: Conn, message: dict) -> None:

        self.last_activity = time.time()
        conn.op = message.get("op")
        self.write()
        self.conn.execute("SAVEPOINT request")
        try:
            reply = ops.dispatch(self, conn, message)
        except Deferred:  # needs the Mithril market: asked again when it arrives
            self.conn.execute("ROLLBACK TO request")
            self.conn.execute("RELEASE request")
            self.defer(conn, message)
            return
        except ops.Refused as refused:
            self.conn.execute("ROLLBACK TO request")
            self.conn.execute("RELEASE request")
            self.resync()
            self.answer(conn, refused.reply)
            return
        except Exception as err:
            if not self.conn.in_transaction:
                # SQLite rolled the whole turn back (a full disk does that): undo all of it.
                self.answer(conn, health.disk_full_reply(conn.op, self.home))
                raise
            self.conn.execute("ROLLBACK TO request")
            self.conn.execute("RELEASE request")
            self.resync()
            if health.is_disk_full(err):
                print(f"{conn.op}: {err}", file=sys.stderr)
                self.answer(conn, health.disk_full_reply(conn.op, self.home))
                return
            traceback.print_exc()
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
        relaunched = []
        for rec, *values in rows:
            job = Job.from_row(rec, dict(zip(COLUMN_NAMES, values)))
            old = self.jobs.get(rec.job_id)
            if old is not None:
                job.pidfd, job.popen, job.never_reason = old.pidfd, old.popen, old.never_reason
                if job.launch == "intent" and old.launch == "launched" and old.pid:
                    # Started, but the commit of its pid was undone: the process is real, keep it.
                    job.pid, job.pgid, job.pid_start = old.pid, old.pgid, old.pid_start
                    job.status_path, job.launch = old.status_path, "launched"
                    relaunched.append(job)
            fresh[rec.job_id] = job
        for job_id, old in self.jobs.items():
            if job_id not in fresh:
                self.unwatch(old)
        self.jobs = fresh
        self.index_launched()
        self._rebuild_backend()
        self.scheduler.backend = self.backend
        self.backends_resync()
        for job in fresh.values():
            if job.rec.state in RUNNING_STATES and job.launch == "launched" and job.pidfd is None:
                self.watch(job)  # its end may have been seen by what was undone: look again
        for job in relaunched:
            self.save(job)  # written again with the next commit
        self.schedule_wanted = True

    def answer_waiters(self) -> None:

        still = []
        for conn, job_ids, answer in self.waiters:
            summary = wait_summary(self, job_ids)
            if summary is None:
                still.append((conn, job_ids, answer))
                continue
            conn.deferred -= 1
            self.send(conn, answer(summary) if answer else summary)
        self.waiters = still

    # ------------------------------------------------------------------ the loop

    def busy(self) -> bool:
        """Anything that can move without a new command: a client, a running job, a timer,
        a pending job that may start. Jobs held, or waiting on what only a command can
        change, do not keep the controller up (the next command starts one again)."""
        if self.conns or self.plan_wake < FOREVER or self.backends_busy():
            return True
        for job in self.jobs.values():
            if job.rec.state != "PENDING" or job.rec.reason in WAITING_TO_START:
                return True
        return False

    def turn(self, timeout: float) -> None:
        events = self.sel.select(max(0.0, timeout))
        self.session_snapshot = None  # taken after the wait: the batch steps that just ended are in it
        lines: list[tuple[Conn, bytes]] = []
        ended: list[Job] = []
        touched: list[Conn] = []
        for key, mask in events:
            kind, data = key.data
            if kind == "listen":
                # A client writes its request as soon as it is connected: read it in this turn, to be
                # answered with this turn's COMMIT rather than wait for another.
                for conn in self.accept():
                    lines += [(conn, line) for line in self.read(conn)]
                    touched.append(conn)
            elif kind in ("wakeup", "backend"):
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
        self.maybe_reload()
        for conn, line in lines:
            self.handle_line(conn, line)
        # Requests that came while these were handled join them: one COMMIT (one fsync) for all.
        for _ in range(DRAIN_ROUNDS):
            lines = self._arrived(touched)
            if not lines:
                break
            for conn, line in lines:
                self.handle_line(conn, line)
        self.backends_turn(now)
        self.poll_processes(now)
        running_wake = min(self.check_running(now), self.market_verdicts(now), accounting.gather(self, now))
        if (self.schedule_wanted or now >= self.plan_wake) and now >= self.schedule_not_before:
            self.schedule_wanted = False
            self.schedule(now)
            # A pass over a long queue costs milliseconds: space passes so that scheduling takes
            # at most a fifth of the loop and a burst of submissions is not quadratic.
            self.schedule_not_before = now + 4 * (time.time() - now)
        self.next_wake = min(running_wake, self.plan_wake)
        if self.schedule_wanted:
            self.next_wake = min(self.next_wake, self.schedule_not_before)
        self.commit()
        replies, self.replies = self.replies, []
        for conn, reply in replies:
            self.send(conn, reply)
        for conn in touched:
            if conn.eof:
                self._interest(conn)
        if self.to_launch or self.awaiting_dirs:
            self.launch_started()

    def _arrived(self, touched: list[Conn]) -> list[tuple[Conn, bytes]]:
        """The requests readable right now, without waiting (the rest of what is ready waits for the next turn)."""
        lines: list[tuple[Conn, bytes]] = []
        for key, mask in self.sel.select(0):
            kind, data = key.data
            if kind == "listen":
                for conn in self.accept():
                    lines += [(conn, line) for line in self.read(conn)]
                    touched.append(conn)
            elif kind == "conn" and mask & selectors.EVENT_READ and not data.eof:
                lines += [(data, line) for line in self.read(data)]
                touched.append(data)
        return lines

    def run(self) -> None:

        self.load()
        recover(self)
        self.backends_recover()
        try:
            self.commit()
        except (OSError, sqlite3.Error) as err:
            if not health.is_disk_full(err):
                raise
            self.undo_turn()  # up without space: jobs are watched, their ends written once it returns
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
            if not self.busy():
                timeout = min(timeout, self.last_activity + self.idle_seconds - now + 0.01)
            try:
                self.turn(timeout)
            except Exception:
                traceback.print_exc()
                self.undo_turn()
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
        self.backends_close()  # Mithril's: deletes already asked for get one more try; the store keeps the rest

    def undo_turn(self) -> None:
        """A turn failed halfway: forget all of it (nothing was answered or signalled yet)."""
        disk_full = health.is_disk_full(sys.exc_info()[1])
        self.rollback()
        self.after_commit = []
        self.to_launch = []
        replies, self.replies = self.replies, []
        for conn, _ in replies:
            if disk_full:
                self.send(conn, health.disk_full_reply(conn.op, self.home))
            else:
                self.send(conn, {"ok": False, "stderr": "sflow: error: internal error in the controller "
                                                        f"(see {paths.log_path(self.home)})\n", "exit_code": 1})
        self.resync()
        # A fault that repeats must not spin; a full disk is retried until space returns.
        time.sleep(0.5 if disk_full else 0.1)

    def exit_idle(self) -> bool:
        """Idle long enough: stop listening and leave. A client caught connecting
        meanwhile sees the connection drop, starts a new controller and asks again."""
        self.unlisten()
        return True

    def _stop(self, signum, frame) -> None:
        self.stopping = True


def acquire_lock(home: str):
    """The exclusive lock that makes one controller per home; None if another holds it."""
    fd = os.open(paths.lock_path(home), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


class _Log:
    """The controller's stdout/stderr (controller.log): on a full disk lines are lost, never the controller."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass
        return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _note_failure(home: str, message: str) -> None:
    """Tell the command waiting for this start why it failed (it checks free space when this cannot be written)."""
    try:
        fd = os.open(paths.failure_path(home), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, message.encode())
        finally:
            os.close(fd)
    except OSError:
        pass
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} controller cannot start: {message}", file=sys.stderr)


def main() -> int:
    sys.stdout, sys.stderr = _Log(sys.stdout), _Log(sys.stderr)
    home = paths.home()
    lock = acquire_lock(home)
    if lock is None:
        return 0  # another controller owns this home
    try:
        with open(paths.pid_path(home), "w") as handle:
            handle.write(f"{os.getpid()}\n")
    except OSError as err:  # informational only: the lock is what makes one controller
        print(f"cannot write {paths.pid_path(home)}: {err}", file=sys.stderr)
    watchdog.start(home)  # outlives this process: restarts it if it is killed with jobs or bids live
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} controller {os.getpid()} starting in {home}", file=sys.stderr)
    try:
        os.unlink(paths.failure_path(home))
    except OSError:
        pass
    try:
        health.check(home)  # a damaged store is refused, never silently replaced by an empty one
        controller = Controller(home)
    except SflowError as err:  # e.g. a bad slurm.conf: the waiting command shows the message
        _note_failure(home, err.render() if hasattr(err, "render") else str(err))
        return 1
    except (OSError, sqlite3.Error) as err:
        if health.is_disk_full(err):
            message = paths.no_space(home)
        elif isinstance(err, sqlite3.DatabaseError) and not isinstance(err, sqlite3.OperationalError):
            message = str(health.damaged(home, health.describe_error(err)))
        else:
            message = f"the controller cannot open its store: {err}"
        _note_failure(home, message)
        return 1
    controller.save_backup()
    try:
        controller.run()
        controller.save_backup()
    finally:
        try:
            os.unlink(paths.pid_path(home))
        except OSError:
            pass
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} controller {os.getpid()} stopping", file=sys.stderr)
    return 0

if __name__ == "__main__":
    sys.exit(main())
