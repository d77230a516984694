"""The per-user controller: owns the queue, schedules jobs and watches them run.

One process per SFLOW_HOME, started on demand by the commands (``rpc.connect``)
and gone after a while with nothing to do. Every change of a job is committed
to SQLite before anyone is told of it, and a job's start is recorded before its
process exists, so a controller killed at any moment restarts into a state
where no acknowledged job is lost and none runs twice (see ``recover``).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal as _signal
import sys
import time
import traceback

from sflow.backends.base import Allocation
from sflow.backends.local import LocalCluster, Need
from sflow.conf import load_cluster, sflow_home
from sflow.errors import SflowError, SlurmError, render
from sflow.exec import batch, steplog
from sflow.exec.env import JobContext
from sflow.exec.layout import NodeSlot
from sflow.queue import db
from sflow.queue.deps import dependency_state
from sflow.queue.rpc import socket_path
from sflow.records import FINISHED_STATES, INFINITE, JobRecord, StepRecord
from sflow.slurm.display import format_dependency, tres_per
from sflow.slurm.model import JobRequest

IDLE_EXIT_SECONDS = float(os.environ.get("SFLOW_CONTROLLER_IDLE", "600"))
TICK_SECONDS = 0.5


def _now() -> float:
    return time.time()


class Controller:
    def __init__(self, home: str):
        self.home = home
        self.cluster = load_cluster()
        self.conn = db.connect(home)
        self.local = LocalCluster(self.cluster, home)
        self.watched: dict[int, tuple[int, object]] = {}  # job_id -> (pid, popen or None)
        self.requests: dict[int, JobRequest] = {}
        self.last_activity = _now()
        self.wake = asyncio.Event()
        self.stopping = False

    # ------------------------------------------------------------------ helpers

    def request_of(self, job_id: int, text: str | None = None) -> JobRequest:
        cached = self.requests.get(job_id)
        if cached is None:
            if text is None:
                text = self.conn.execute("SELECT request FROM jobs WHERE job_id = ?", (job_id,)).fetchone()[0]
            cached = JobRequest.model_validate_json(text)
            self.requests[job_id] = cached
        return cached

    def job(self, job_id: int) -> JobRecord | None:
        rows = db.read_jobs(self.conn, "job_id = ?", (job_id,))
        return rows[0] if rows else None

    def extra(self, job_id: int, *names: str):
        return self.conn.execute(f"SELECT {', '.join(names)} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()

    def transaction(self):
        conn = self.conn

        class _Tx:
            def __enter__(self_inner):
                conn.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, kind, value, tb):
                conn.execute("COMMIT" if kind is None else "ROLLBACK")

        return _Tx()

    def poke(self) -> None:
        self.last_activity = _now()
        self.wake.set()

    # ------------------------------------------------------------------ submit

    def submit(self, msg: dict) -> dict:
        from sflow.slurm.request import parse_sbatch

        try:
            sub = parse_sbatch(msg["argv"], env=msg.get("env", {}), cwd=msg["cwd"], stdin_text=msg.get("stdin"),
                               user=msg["user"], uid=msg["uid"], gid=msg["gid"], host=msg["host"],
                               cluster=self.cluster)
        except SflowError as err:
            return {"ok": False, "stderr": render("sbatch", err) + "\n", "exit_code": err.exit_code}
        req, flags = sub.request, sub.flags
        warnings = "".join(f"sbatch: warning: {w}\n" for w in sub.warnings)
        partition = self.cluster.partition(req.partition)
        if flags.test_only:
            return self.test_only(req, partition, warnings)
        with self.transaction():
            job_id = db.next_job_id(self.conn, self.cluster.first_job_id)
            record = self.record_for(job_id, req, partition)
            extra = {"request": req.model_dump_json(), "job_dir": batch.job_dir(self.home, job_id)}
            if req.array is not None:
                record.array_job_id = job_id
                record.array_task_str = req.array.text
                record.array_max_tasks = req.array.throttle
                extra["pending_indices"] = json.dumps(req.array.indices)
            db.insert_job(self.conn, record, **extra)
        self.requests[job_id] = req
        self.poke()
        if flags.parsable:
            out = f"{job_id}\n"
        elif flags.quiet:
            out = ""
        else:
            out = f"Submitted batch job {job_id}\n"
        return {"ok": True, "job_id": job_id, "stdout": out, "stderr": warnings, "wait": flags.wait}

    def test_only(self, req: JobRequest, partition, warnings: str) -> dict:
        need = Need.of(req)
        probe = LocalCluster(self.cluster, self.home)
        probe.use = {k: v for k, v in self.local.use.items()}
        alloc = probe.allocate(0, need, partition)
        job_id = db.next_job_id(self.conn, self.cluster.first_job_id)
        # --test-only must not consume an id: undo the counter.
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_job_id', ?)", (str(job_id),))
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        nodes = alloc.nodelist if isinstance(alloc, Allocation) else "(null)"
        cpus = req.ntasks * req.cpus_per_task
        text = (f"sbatch: Job {job_id} to start at {when} using {cpus} processors on nodes {nodes} "
                f"in partition {partition.name}\n")
        return {"ok": True, "job_id": None, "stdout": "", "stderr": warnings + text}

    def record_for(self, job_id: int, req: JobRequest, partition) -> JobRecord:
        limit = req.time_limit
        if limit is None:
            limit = partition.default_time or partition.max_time or INFINITE
        gres = tres_per(req).get("TresPerNode", "")
        mem = req.mem_per_node_mb if req.mem_per_node_mb is not None else req.mem_per_cpu_mb
        return JobRecord(
            job_id=job_id, name=req.job_name, user=req.user, uid=req.uid, gid=req.gid,
            partition=partition.name, state="PENDING", reason="JobHeldUser" if req.hold else "None",
            submit_time=_now(), work_dir=req.work_dir, command=req.script_path or "(null)",
            time_limit=limit, priority=max(1, 4294901760 - job_id) if not req.hold else 0,
            num_nodes=req.min_nodes, num_cpus=req.ntasks * req.cpus_per_task, num_tasks=req.ntasks,
            cpus_per_task=req.cpus_per_task, min_memory_mb=mem,
            dependency=format_dependency(req.dependency) if req.dependency else "",
            account=req.account or req.user, qos=req.qos or "normal",
            stdout=self.display_path(req, req.stdout_pattern, job_id),
            stderr=self.display_path(req, req.stderr_pattern, job_id),
            stdin=self.display_path(req, req.input, job_id) if req.input else "/dev/null",
            requeue=req.requeue if req.requeue is not None else True, held=req.hold,
            comment=req.comment or "", gres=gres, backend=req.cloud.backend or partition.backend,
            limit_price=req.cloud.limit_price,
        )

    @staticmethod
    def display_path(req: JobRequest, pattern: str, job_id: int, task: int | None = None) -> str:
        from sflow.slurm.values import expand_output_pattern

        ctx = {"job_id": job_id, "job_name": req.job_name, "user": req.user}
        if req.array is not None:
            ctx.update(array_job_id=job_id, array_task_id=4294967294 if task is None else task)
        path = expand_output_pattern(pattern, ctx)
        return path if os.path.isabs(path) else os.path.join(req.work_dir, path)

    # ------------------------------------------------------------------ scheduling

    def schedule(self) -> None:
        now = _now()
        pending = db.read_jobs(self.conn, "state = 'PENDING'")
        if not pending:
            return
        everyone = None
        blocked_first = None
        pending.sort(key=lambda j: (-j.priority, j.job_id))
        for job in pending:
            req = self.request_of(job.job_id)
            reason = self.waiting_reason(job, req, now, everyone_cache := (everyone or self.all_jobs()))
            everyone = everyone_cache
            if reason == "cancel":
                self.finish(job.job_id, "CANCELLED", 0, 0, reason="DependencyNeverSatisfied", started=False)
                continue
            if reason is None:
                partition = self.cluster.partition(job.partition)
                need = Need.of(req)
                never = self.local.fits_ever(need, partition)
                if never is not None:
                    reason = never
                elif blocked_first is not None and not self.backfill_ok(job, blocked_first, now):
                    reason = "Priority"
                else:
                    alloc = self.local.allocate(job.job_id, need, partition)
                    if isinstance(alloc, Allocation):
                        self.start(job, req, alloc)
                        everyone = None
                        continue
                    reason = "Resources" if blocked_first is None else "Priority"
                    if blocked_first is None:
                        blocked_first = job
            if reason != job.reason:
                with self.transaction():
                    db.update_job(self.conn, job.job_id, reason=reason)

    def all_jobs(self) -> dict[int, JobRecord]:
        return {j.job_id: j for j in db.read_jobs(self.conn)}

    def waiting_reason(self, job: JobRecord, req: JobRequest, now: float, everyone) -> str | None:
        if job.held:
            return "JobHeldUser"
        if req.begin and req.begin > now:
            return "BeginTime"
        if req.dependency is not None:
            state = dependency_state(job, req.dependency, everyone, now)
            if state == "never":
                return "cancel" if req.kill_on_invalid_dep else "DependencyNeverSatisfied"
            if state == "wait":
                return "Dependency"
        if job.array_max_tasks:
            running = sum(1 for j in everyone.values() if j.array_job_id == job.array_job_id
                          and j.state in ("RUNNING", "COMPLETING"))
            if running >= job.array_max_tasks:
                return "JobArrayTaskLimit"
        partition = self.cluster.partition(job.partition)
        limit = partition.max_time
        if limit not in (None, INFINITE) and job.time_limit is not None and job.time_limit != INFINITE \
                and job.time_limit > limit:
            return "PartitionTimeLimit"
        return None

    def backfill_ok(self, job: JobRecord, blocked: JobRecord, now: float) -> bool:
        """A later job may start now if it ends before the first blocked job could start."""
        if job.time_limit in (None, INFINITE):
            return False
        shadow = self.shadow_time(blocked, now)
        return shadow is None or now + job.time_limit * 60 <= shadow

    def shadow_time(self, blocked: JobRecord, now: float) -> float | None:
        """The earliest time the blocked job fits, releasing running jobs by their end times."""
        probe = LocalCluster(self.cluster, self.home)
        probe.use = {k: type(v)(v.cpus, v.mem_mb, set(v.gpus), v.exclusive, v.jobs) for k, v in self.local.use.items()}
        need = Need.of(self.request_of(blocked.job_id))
        partition = self.cluster.partition(blocked.partition)
        running = db.read_jobs(self.conn, "state IN ('RUNNING', 'COMPLETING')")
        ends = []
        for job in running:
            if job.time_limit in (None, INFINITE):
                continue
            ends.append((job.start_time + job.time_limit * 60, job.job_id))
        for end, job_id in sorted(ends):
            alloc_text = self.extra(job_id, "alloc")[0]
            if alloc_text:
                probe.give_back(Allocation.from_json(json.loads(alloc_text)))
            if probe._place(need, probe._candidates(need, partition), probe.use) is not None:
                return end
        return None

    # ------------------------------------------------------------------ start / finish

    def materialise_array_task(self, job: JobRecord) -> JobRecord:
        """Split the next array task off the pending record; the last one keeps the array's id."""
        indices = json.loads(self.extra(job.job_id, "pending_indices")[0] or "[]")
        index, rest = indices[0], indices[1:]
        req = self.request_of(job.job_id)
        if not rest:
            with self.transaction():
                db.update_job(self.conn, job.job_id, array_task_id=index, array_task_str=None,
                              pending_indices="[]",
                              stdout=self.display_path(req, req.stdout_pattern, job.job_id, index),
                              stderr=self.display_path(req, req.stderr_pattern, job.job_id, index))
            return self.job(job.job_id)
        from sflow.slurm.values import format_array

        with self.transaction():
            task_id = db.next_job_id(self.conn, self.cluster.first_job_id)
            task = JobRecord(**{**job.__dict__, "job_id": task_id, "array_task_id": index,
                                "array_task_str": None})
            task.stdout = self.display_path(req, req.stdout_pattern, job.job_id, index)
            task.stderr = self.display_path(req, req.stderr_pattern, job.job_id, index)
            row = self.extra(job.job_id, "request", "job_dir")
            db.insert_job(self.conn, task, request=row[0], job_dir=batch.job_dir(self.home, task_id))
            db.update_job(self.conn, job.job_id, pending_indices=json.dumps(rest),
                          array_task_str=format_array(rest, job.array_max_tasks))
        self.requests[task_id] = req
        return self.job(task_id)

    def context_for(self, job: JobRecord, req: JobRequest, alloc: Allocation) -> JobContext:
        array = req.array
        return JobContext(
            job_id=job.job_id, job_name=job.name, user=job.user, uid=job.uid, gid=job.gid,
            partition=job.partition, account=job.account, qos=job.qos, cluster_name=self.cluster.name,
            submit_dir=req.submit_dir, submit_host=req.submit_host, work_dir=req.work_dir,
            nodes=[NodeSlot(n.name, n.cpus, n.gpu_indices, n.mem_mb, n.root_dir, n.address) for n in alloc.nodes],
            tasks_per_node=[n.tasks for n in alloc.nodes], ntasks=req.ntasks, ntasks_given=req.ntasks_given,
            ntasks_per_node=req.ntasks_per_node, cpus_per_task=req.cpus_per_task,
            cpus_per_task_given=req.cpus_per_task_given, mem_per_node_mb=req.mem_per_node_mb,
            mem_per_cpu_mb=req.mem_per_cpu_mb, gpus=req.gpus, gpus_per_node=req.gpus_per_node,
            gpus_per_task=req.gpus_per_task, gpu_type=req.gpu_type,
            array_job_id=job.array_job_id, array_task_id=job.array_task_id,
            array_task_count=len(array.indices) if array else None,
            array_task_min=min(array.indices) if array else None,
            array_task_max=max(array.indices) if array else None,
            array_task_step=_step_of(array.indices) if array else None,
            restart_count=job.restart_count, dependency=job.dependency,
            export=None if req.export.mode == "ALL" and not req.export.names and not req.export.assignments
            else _export_text(req),
            time_limit_minutes=job.time_limit, start_time=_now(),
            conf_path=self.cluster.source or "",
        )

    def start(self, job: JobRecord, req: JobRequest, alloc: Allocation) -> None:
        if job.array_job_id is not None and job.array_task_id is None:
            task = self.materialise_array_task(job)
            alloc.job_id = task.job_id
            job = task
        now = _now()
        with self.transaction():
            db.update_job(self.conn, job.job_id, state="RUNNING", reason="None", start_time=now,
                          eligible_time=job.eligible_time or now, nodelist=alloc.nodelist,
                          num_nodes=len(alloc.nodes), num_cpus=sum(n.cpus for n in alloc.nodes),
                          alloc=json.dumps(alloc.to_json()), pid=None, pid_start=None, end_state=None,
                          kill_at=None, signal_sent=0)
        ctx = self.context_for(job, req, alloc)
        try:
            proc = batch.launch_batch(
                ctx, req.script, req.script_args, req.environment, home=self.home,
                stdout_pattern=req.stdout_pattern, stderr_pattern=req.error,
                input_pattern=req.input, append=req.open_mode == "append" or job.restart_count > 0,
            )
        except OSError as exc:
            print(f"job {job.job_id}: cannot start: {exc}", file=sys.stderr)
            self.finish(job.job_id, "FAILED", 1, 0)
            return
        with self.transaction():
            db.update_job(self.conn, job.job_id, pid=proc.pid, pid_start=batch.process_start_time(proc.pid))
        self.watch(job.job_id, proc.pid, proc.popen)

    def watch(self, job_id: int, pid: int, popen) -> None:
        self.watched[job_id] = (pid, popen)
        try:
            fd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            return  # the periodic tick polls instead
        loop = asyncio.get_running_loop()

        def ready() -> None:
            loop.remove_reader(fd)
            os.close(fd)
            self.reap(job_id)
            self.poke()

        loop.add_reader(fd, ready)

    def reap(self, job_id: int) -> bool:
        """Finish the job if its batch step is over; True if it was."""
        pid, popen = self.watched.get(job_id, (None, None))
        wrapper_signal = 0
        if popen is not None:
            code = popen.poll()
            if code is None:
                return False
            wrapper_signal = -code if code < 0 else 0
        else:
            row = self.extra(job_id, "pid", "pid_start")
            if row and row[0] and batch.alive(row[0], row[1]):
                return False
        self.watched.pop(job_id, None)
        row = self.extra(job_id, "job_dir", "end_state")
        status = batch.read_status(os.path.join(row[0], "status"))
        end_state = row[1]
        if status is None:
            exit_code, sig = 0, wrapper_signal or _signal.SIGKILL
        else:
            exit_code, sig = status
        if end_state == "REQUEUE":
            self.requeue_now(job_id)
            return True
        if end_state and end_state.startswith("EXIT:"):
            exit_code, sig = int(end_state[5:]), 0  # an allocation its owner released
            state = "COMPLETED" if exit_code == 0 else "FAILED"
        elif end_state in ("CANCELLED", "TIMEOUT", "PREEMPTED"):
            state = end_state
        elif status is None and not wrapper_signal:
            state = "NODE_FAIL"
        else:
            state = "COMPLETED" if exit_code == 0 and sig == 0 else "FAILED"
        self.finish(job_id, state, exit_code, sig)
        return True

    def finish(self, job_id: int, state: str, exit_code: int, sig: int, reason: str | None = None,
               started: bool = True) -> None:
        row = self.extra(job_id, "alloc", "job_dir", "start_time")
        alloc = Allocation.from_json(json.loads(row[0])) if row and row[0] else None
        now = _now()
        steps = steplog.read_steps(self.home, job_id) if started else []
        with self.transaction():
            db.update_job(self.conn, job_id, state=state, end_time=now, exit_code=exit_code, exit_signal=sig,
                          reason=reason or "None", pid=None, alloc=None,
                          derived_exit_code=max([exit_code] + [s.exit_code for s in steps]),
                          **({"start_time": now} if not started and row and row[2] is None else {}))
            if started and alloc is not None:
                job = self.job(job_id)
                db.upsert_step(self.conn, StepRecord(job_id, "batch", "batch", state if state != "TIMEOUT" else "CANCELLED",
                                                     job.start_time, now, alloc.nodes[0].name, 1, 1,
                                                     alloc.nodes[0].cpus, exit_code, sig))
                for step in steps:
                    if step.end_time is None:
                        step.state, step.end_time = ("CANCELLED" if state in ("CANCELLED", "TIMEOUT") else "FAILED"), now
                    db.upsert_step(self.conn, step)
        if alloc is not None:
            req = self.request_of(job_id)
            self.local.give_back(alloc, req.exclusive)

    def requeue_now(self, job_id: int, state_note: str = "None") -> None:
        row = self.extra(job_id, "alloc")
        alloc = Allocation.from_json(json.loads(row[0])) if row and row[0] else None
        job = self.job(job_id)
        with self.transaction():
            db.update_job(self.conn, job_id, state="PENDING", reason="BeginTime" if state_note == "None" else state_note,
                          start_time=None, end_time=None, nodelist="", pid=None, alloc=None, end_state=None,
                          kill_at=None, signal_sent=0, restart_count=job.restart_count + 1,
                          exit_code=0, exit_signal=0)
        if alloc is not None:
            self.local.give_back(alloc, self.request_of(job_id).exclusive)

    # ------------------------------------------------------------------ time limits and signals

    def enforce_limits(self) -> None:
        now = _now()
        for job in db.read_jobs(self.conn, "state = 'RUNNING'"):
            pid, kill_at, end_state, signal_sent = self.extra(job.job_id, "pid", "kill_at", "end_state", "signal_sent")
            if not pid:
                continue
            if kill_at is not None:
                if now >= kill_at:
                    batch.signal_job(pid, _signal.SIGKILL)
                continue
            if job.time_limit in (None, INFINITE):
                continue
            req = self.request_of(job.job_id)
            deadline = job.start_time + job.time_limit * 60
            if req.signal and not signal_sent and now >= deadline - req.signal.seconds:
                batch.signal_job(pid, req.signal.number, batch_only=req.signal.batch_only)
                with self.transaction():
                    db.update_job(self.conn, job.job_id, signal_sent=1)
            if now >= deadline:
                self.terminate(job.job_id, pid, "TIMEOUT")

    def terminate(self, job_id: int, pid: int, end_state: str) -> None:
        """SIGCONT and SIGTERM now, SIGKILL after KillWait, as slurmstepd does."""
        if end_state == "TIMEOUT":
            self.note_in_output(job_id, "DUE TO TIME LIMIT")
        elif end_state == "CANCELLED":
            self.note_in_output(job_id, None)
        with self.transaction():
            db.update_job(self.conn, job_id, end_state=end_state, kill_at=_now() + self.cluster.kill_wait)
        batch.signal_job(pid, _signal.SIGCONT)
        batch.signal_job(pid, _signal.SIGTERM)

    def note_in_output(self, job_id: int, why: str | None) -> None:
        """slurmstepd's line in the job's error file: ``*** JOB 12 ON node1 CANCELLED AT ... ***``."""
        job = self.job(job_id)
        if job is None or not job.stderr:
            return
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())
        node = job.nodelist.split(",")[0].split("[")[0] if "[" not in job.nodelist else None
        if node is None:
            from sflow.slurm.values import expand_hostlist

            node = expand_hostlist(job.nodelist)[0]
        tail = f" {why}" if why else ""
        line = f"slurmstepd: error: *** JOB {job_id} ON {node} CANCELLED AT {when}{tail} ***\n"
        req = self.request_of(job_id)
        ctx_path = os.path.join(self.extra(job_id, "job_dir")[0], "context.json")
        try:
            with open(ctx_path) as handle:
                ctx = JobContext.from_json(json.load(handle))
            _, err_path, _ = batch.output_paths(ctx, req.stdout_pattern, req.error, None)
            with open(err_path, "a") as handle:
                handle.write(line)
        except (OSError, ValueError, KeyError):
            pass

    # ------------------------------------------------------------------ control ops

    def cancel(self, msg: dict) -> dict:
        from sflow.queue.select import select_for_cancel

        sig = msg.get("signal")
        uid = msg.get("uid", os.getuid())
        chosen, errors = select_for_cancel(db.read_jobs(self.conn), msg)
        for job, index in chosen:
            if job.state in FINISHED_STATES:
                continue
            if index is not None and job.array_task_id is None:
                self.cancel_array_element(job, index, uid)
                continue
            if job.state == "PENDING":
                if sig is not None:
                    continue
                if job.array_job_id is not None and job.array_task_id is None:
                    self.cancel_array_remainder(job, uid)
                else:
                    with self.transaction():
                        db.update_job(self.conn, job.job_id, cancelled_by=uid)
                    self.finish(job.job_id, "CANCELLED", 0, 0, started=False)
                continue
            pid = self.extra(job.job_id, "pid")[0]
            if not pid:
                continue
            if sig is not None:
                batch.signal_job(pid, sig, batch_only=msg.get("batch", False))
            else:
                with self.transaction():
                    db.update_job(self.conn, job.job_id, cancelled_by=uid)
                self.terminate(job.job_id, pid, "CANCELLED")
        self.poke()
        return {"ok": True, "stderr": "".join(errors)}

    def cancel_array_element(self, job: JobRecord, index: int, uid: int) -> None:
        indices = json.loads(self.extra(job.job_id, "pending_indices")[0] or "[]")
        if index not in indices:
            return
        rest = [i for i in indices if i != index]
        from sflow.slurm.values import format_array

        now = _now()
        with self.transaction():
            if rest:
                task_id = db.next_job_id(self.conn, self.cluster.first_job_id)
                task = JobRecord(**{**job.__dict__, "job_id": task_id, "array_task_id": index, "array_task_str": None,
                                    "state": "CANCELLED", "end_time": now, "start_time": now, "cancelled_by": uid})
                db.insert_job(self.conn, task, request=self.extra(job.job_id, "request")[0])
                db.update_job(self.conn, job.job_id, pending_indices=json.dumps(rest),
                              array_task_str=format_array(rest, job.array_max_tasks))
            else:
                db.update_job(self.conn, job.job_id, array_task_id=index, array_task_str=None, pending_indices="[]",
                              state="CANCELLED", end_time=now, start_time=now, cancelled_by=uid)

    def cancel_array_remainder(self, job: JobRecord, uid: int) -> None:
        for index in json.loads(self.extra(job.job_id, "pending_indices")[0] or "[]"):
            self.cancel_array_element(self.job(job.job_id), index, uid)

    def finish_allocation(self, job_id: int, exit_code: int) -> dict:
        pid = self.extra(job_id, "pid")
        if pid and pid[0]:
            with self.transaction():
                db.update_job(self.conn, job_id, end_state=f"EXIT:{exit_code}", kill_at=_now() + self.cluster.kill_wait)
            batch.signal_job(pid[0], _signal.SIGTERM)
        self.poke()
        return {"ok": True}

    def hold(self, msg: dict, held: bool) -> dict:
        errors = []
        for job_id in msg["job_ids"]:
            job = self.job(int(job_id)) if str(job_id).isdigit() else None
            if job is None:
                errors.append(f"Invalid job id specified for job {job_id}\n")
                continue
            if job.state != "PENDING":
                errors.append(f"Job is no longer pending execution for job {job_id}\n")
                continue
            with self.transaction():
                db.update_job(self.conn, job.job_id, held=held, priority=0 if held else max(1, 4294901760 - job.job_id),
                              reason="JobHeldUser" if held else "None")
        self.poke()
        return {"ok": not errors, "stderr": "".join(errors), "exit_code": 1 if errors else 0}

    def requeue(self, msg: dict) -> dict:
        errors = []
        for job_id in msg["job_ids"]:
            job = self.job(int(job_id)) if str(job_id).isdigit() else None
            if job is None:
                errors.append(f"Invalid job id specified for job {job_id}\n")
                continue
            if job.state == "PENDING":
                errors.append(f"Job is pending execution for job {job_id}\n")
                continue
            if job.state == "RUNNING":
                pid = self.extra(job.job_id, "pid")[0]
                with self.transaction():
                    db.update_job(self.conn, job.job_id, end_state="REQUEUE", kill_at=_now() + self.cluster.kill_wait)
                batch.signal_job(pid, _signal.SIGCONT)
                batch.signal_job(pid, _signal.SIGTERM)
            else:
                self.requeue_now(job.job_id)
        self.poke()
        return {"ok": not errors, "stderr": "".join(errors), "exit_code": 1 if errors else 0}

    def update(self, msg: dict) -> dict:
        job = self.job(int(msg["job_id"])) if str(msg["job_id"]).isdigit() else None
        if job is None:
            return {"ok": False, "stderr": f"Invalid job id specified\n", "exit_code": 1}
        changes = {}
        for key, value in msg["changes"].items():
            if key == "TimeLimit":
                from sflow.slurm.values import InvalidValue, parse_time_limit

                try:
                    changes["time_limit"] = parse_time_limit(value)
                except InvalidValue:
                    return {"ok": False, "stderr": "Invalid TimeLimit value\n", "exit_code": 1}
            elif key == "JobName":
                changes["name"] = value
            elif key == "Comment":
                changes["comment"] = value
            elif key == "Nice":
                changes["priority"] = max(1, job.priority - int(value))
            else:
                return {"ok": False, "stderr": f"Update of this parameter is not supported: {key}={value}\n",
                        "exit_code": 1}
        with self.transaction():
            db.update_job(self.conn, job.job_id, **changes)
        self.poke()
        return {"ok": True, "stderr": ""}

    # ------------------------------------------------------------------ recovery

    def recover(self) -> None:
        """Pick up where a previous controller stopped, whatever stopped it."""
        for job in db.read_jobs(self.conn, "state IN ('RUNNING', 'COMPLETING')"):
            alloc_text, pid, pid_start, job_dir = self.extra(job.job_id, "alloc", "pid", "pid_start", "job_dir")
            alloc = Allocation.from_json(json.loads(alloc_text)) if alloc_text else None
            if alloc is not None:
                self.local.take(alloc, self.request_of(job.job_id).exclusive)
            if not pid:
                # Recorded as starting, but its process may have been launched
                # before the pid was written: the pid file in the job dir says.
                try:
                    with open(os.path.join(job_dir, "pid")) as handle:
                        pid_text, pid_start = handle.read().split()
                    pid = int(pid_text)
                    if batch.read_status(os.path.join(job_dir, "status")) is None and not batch.alive(pid, pid_start):
                        pid = None
                except (OSError, ValueError):
                    pid = None
                if pid:
                    with self.transaction():
                        db.update_job(self.conn, job.job_id, pid=pid, pid_start=pid_start)
            status = batch.read_status(os.path.join(job_dir, "status")) if job_dir else None
            if pid and status is None and batch.alive(pid, pid_start):
                self.watched[job.job_id] = (pid, None)
                try:
                    self.watch(job.job_id, pid, None)
                except RuntimeError:
                    pass
                continue
            if status is not None:
                end_state = self.extra(job.job_id, "end_state")[0]
                state = end_state if end_state in ("CANCELLED", "TIMEOUT") else (
                    "COMPLETED" if status == (0, 0) else "FAILED")
                self.finish(job.job_id, state, *status)
            else:
                self.finish(job.job_id, "NODE_FAIL", 0, 0)
                if job.requeue:
                    self.requeue_now(job.job_id)

    # ------------------------------------------------------------------ loop

    def tick(self) -> None:
        for job_id in list(self.watched):
            self.reap(job_id)
        self.enforce_limits()
        self.schedule()

    def busy(self) -> bool:
        row = self.conn.execute("SELECT COUNT(*) FROM jobs WHERE state IN ('PENDING', 'RUNNING', 'COMPLETING')").fetchone()
        return bool(row[0]) or bool(self.watched)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if not line:
                return
            msg = json.loads(line)
            reply = self.dispatch(msg)
        except Exception as exc:  # a bad request must not take the controller down
            traceback.print_exc()
            reply = {"ok": False, "stderr": f"internal error: {type(exc).__name__}: {exc}\n", "exit_code": 1}
        try:
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def dispatch(self, msg: dict) -> dict:
        self.last_activity = _now()
        op = msg.get("op")
        if op == "submit":
            return self.submit(msg)
        if op == "cancel":
            return self.cancel(msg)
        if op == "hold":
            return self.hold(msg, True)
        if op == "release":
            return self.hold(msg, False)
        if op == "requeue":
            return self.requeue(msg)
        if op == "update":
            return self.update(msg)
        if op == "finish_allocation":
            return self.finish_allocation(int(msg["job_id"]), int(msg.get("exit_code", 0)))
        if op == "ping":
            self.poke()
            return {"ok": True, "pid": os.getpid()}
        if op == "usage":
            return {"ok": True, "nodes": {name: {"cpus": u.cpus, "mem_mb": u.mem_mb, "gpus": len(u.gpus),
                                                 "jobs": u.jobs} for name, u in self.local.use.items()}}
        if op == "shutdown":
            self.stopping = True
            self.wake.set()
            return {"ok": True}
        return {"ok": False, "stderr": f"unknown request {op!r}\n", "exit_code": 1}

    async def run(self) -> None:
        path = socket_path(self.home)
        if os.path.exists(path):
            os.unlink(path)
        old_umask = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self.handle, path=path)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        self.recover()
        self.schedule()
        async with server:
            while not self.stopping:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), TICK_SECONDS)
                except asyncio.TimeoutError:
                    pass
                self.tick()
                if self.busy():
                    self.last_activity = _now()
                elif _now() - self.last_activity > IDLE_EXIT_SECONDS:
                    break
        if os.path.exists(path):
            os.unlink(path)


def _step_of(indices: list[int]) -> int:
    steps = {b - a for a, b in zip(indices, indices[1:])}
    return steps.pop() if len(steps) == 1 else 1


def _export_text(req: JobRequest) -> str:
    parts = [] if req.export.mode is None else [req.export.mode]
    parts += list(req.export.names) + [f"{k}={v}" for k, v in req.export.assignments.items()]
    return ",".join(parts)


def main() -> None:
    home = sflow_home()
    lock = open(os.path.join(home, "ctl.lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another controller owns this home
    lock.write(str(os.getpid()))
    lock.flush()
    _signal.signal(_signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(0)))
    _signal.signal(_signal.SIGHUP, _signal.SIG_IGN)
    try:
        asyncio.run(Controller(home).run())
    except SystemExit:
        pass


if __name__ == "__main__":
    main()
