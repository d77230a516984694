"""The controller's requests: one function per ``op``, each answering a dict.

Every reply has ``ok``; a failing one has ``stderr`` (SLURM's wording, ready
to print) and ``exit_code``. Handlers run inside the turn's transaction and
may only change jobs through the controller (``save``/``finish``/...); their
replies are sent after COMMIT. See docs/controller.md for the shapes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal as _signal
import time
import traceback
from datetime import datetime

from sflow.backends.base import Allocation, Deferred
from sflow.conf import make_partition, runtime_partitions_path
from sflow.errors import SlurmError
from sflow.queue import launch, store
from sflow.queue.jobs import COLUMN_NAMES, Job, base_priority
from sflow.queue.select import parse_target, passes
from sflow.queue.submit import submit as do_submit
from sflow.records import FINISHED_STATES, INFINITE, StepRecord
from sflow.slurm import values
from sflow.slurm.display import format_dependency
from sflow.slurm.indexset import IndexSet
from sflow.slurm.model import DependencyRequest
from sflow.slurm.request import NICE_LIMIT, PRIORITY_NONE
from sflow.slurm.values import compress_counts, compress_hostlist, format_array, format_timelimit_scontrol

INVALID_JOB = "Invalid job id specified"
ALREADY_DONE = "Job/step already completing or completed"
FINISHED = "Job has already finished"
NOT_NOW = "Job can not be altered now, try again later"
NOT_NOW_EXIT = 228  # scancel exits with SLURM's error number (2020) modulo 256 here
INVALID_JOB_EXIT = 225  # the same for ESLURM_INVALID_JOB_ID (2017)
MAX_SQL_INT = (1 << 63) - 1


def dispatch(ctl, conn, msg: dict) -> dict | None:
    op = msg.get("op")
    handler = HANDLERS.get(op)
    if handler is None:
        return {"ok": False, "stderr": f"sflow: error: unknown request {op!r}\n", "exit_code": 1}
    # "run" (the drop-in commands, for the native client) is added by the process that hosts them: sflow.cli.served.
    if op in ("wait", "run"):  # these need the connection: a reply owed later, the peer's credentials
        return handler(ctl, conn, msg)
    return handler(ctl, msg)


def dispatch_within(ctl, conn, msg: dict) -> dict:
    """A request made by a command the controller runs itself, inside the request running it:
    refused, it undoes its own changes alone, as a request of its own would. ``Deferred``
    (the market is not there yet) is raised on, its changes undone too."""
    ctl.conn.execute("SAVEPOINT within")
    try:
        reply = dispatch(ctl, conn, msg)
    except Refused as refused:
        _undo_within(ctl, resync=True)
        return refused.reply
    except Deferred:
        _undo_within(ctl, resync=False)
        raise
    except Exception as err:
        if not ctl.conn.in_transaction:
            raise  # SQLite undid the whole turn (a full disk): the controller answers for all of it
        _undo_within(ctl, resync=True)
        traceback.print_exc()
        return {"ok": False, "stderr": f"sflow: error: internal error: {type(err).__name__}: {err}\n", "exit_code": 1}
    ctl.conn.execute("RELEASE within")
    return reply


def _undo_within(ctl, resync: bool) -> None:
    ctl.conn.execute("ROLLBACK TO within")
    ctl.conn.execute("RELEASE within")
    if resync:
        ctl.resync()


# ------------------------------------------------------------------ simple ops


def ping(ctl, msg: dict) -> dict:
    return {"ok": True, "pid": os.getpid(), "home": ctl.home, "active_jobs": len(ctl.jobs)}


def shutdown(ctl, msg: dict) -> dict:
    """Stop the controller; running jobs keep running and are adopted by the next one."""
    ctl.stopping = True
    return {"ok": True}


def reconfigure(ctl, msg: dict) -> dict:
    """``scontrol reconfigure``: slurm.conf read again now; running jobs keep running."""
    err = ctl.maybe_reload(force=True)
    if err is not None:
        return {"ok": False, "stdout": "", "stderr": f"slurm_reconfigure error: {err}\n", "exit_code": 1}
    return {"ok": True, "stdout": "", "stderr": "", "exit_code": 0}


def submit(ctl, msg: dict) -> dict:

    return do_submit(ctl, msg)


def usage(ctl, msg: dict) -> dict:
    return {"ok": True, "nodes": {name: {"cpus": u.cpus, "mem_mb": u.mem_mb, "gpus": sorted(u.gpus),
                                         "jobs": u.jobs, "exclusive": u.exclusive}
                                  for name, u in ctl.backend.usage.nodes.items()}}


def jobs(ctl, msg: dict) -> dict:
    ids = msg.get("job_ids")
    records = store.read_jobs(ctl.conn, job_ids=[int(i) for i in ids] if ids else None)
    return {"ok": True, "jobs": [dataclasses.asdict(r) for r in records]}


# ------------------------------------------------------------------ wait


def wait_summary(ctl, job_ids: list[int]) -> dict | None:
    """None while any job named (any task, for an array) has not ended; else sbatch -W's answer."""
    records = store.read_jobs(ctl.conn, job_ids=[int(i) for i in job_ids])
    if any(r.state not in FINISHED_STATES for r in records):
        return None
    worst = max(records, key=lambda r: (r.exit_code, r.exit_signal, r.state != "COMPLETED"), default=None)
    if worst is None:
        code = 0
    elif worst.exit_code:
        code = worst.exit_code
    else:
        code = 0 if worst.state == "COMPLETED" else 1
    return {"ok": True, "exit_code": code, "stdout": "", "stderr": "",
            "states": {str(r.job_id): r.state for r in records}}


def wait(ctl, conn, msg: dict) -> dict | None:
    ids = [int(i) for i in msg.get("job_ids") or []]
    summary = wait_summary(ctl, ids)
    if summary is not None:
        return summary
    ctl.waiters.append((conn, ids, None))
    conn.deferred += 1
    return None


# ------------------------------------------------------------------ finding jobs


def _active_matches(ctl, job_id: int, indices: IndexSet | None) -> list[tuple[Job, IndexSet | None]]:
    """Live jobs a target names: (job, None) or (array remainder, those of its indices still pending)."""
    found: list[tuple[Job, IndexSet | None]] = []
    for job in sorted(ctl.jobs.values(), key=lambda j: j.job_id):
        rec = job.rec
        if indices is None:
            if rec.job_id == job_id or rec.array_job_id == job_id:
                found.append((job, None))
            continue
        if rec.array_job_id != job_id:
            continue
        if job.is_array_remainder:
            chosen = job.pending_indices.intersection(indices) if job.pending_indices else None
            if chosen:
                found.append((job, chosen))
        elif rec.array_task_id in indices:
            found.append((job, None))
    return found


def _known(ctl, job_id: int, indices: IndexSet | None) -> bool:
    return bool(_stored_ids(ctl, job_id, indices, limit=1))


def _stored_ids(ctl, job_id: int, indices: IndexSet | None, limit: int = -1) -> list[int]:
    """Job ids in the store a target names (ended jobs too); no SQL variable per index."""
    if job_id > MAX_SQL_INT:
        return []  # beyond any id sflow hands out (and beyond SQLite's integers)
    if indices is None:
        return [row[0] for row in ctl.conn.execute(
            "SELECT job_id FROM jobs WHERE job_id = ? OR array_job_id = ? LIMIT ?", (job_id, job_id, limit))]
    found = []
    for row in ctl.conn.execute("SELECT job_id, array_task_id FROM jobs WHERE array_job_id = ?", (job_id,)):
        if row[1] is not None and row[1] in indices:
            found.append(row[0])
            if len(found) == limit:
                break
    return found


def _load(ctl, job_id: int) -> Job | None:
    """A job that has ended, back from the store (requeue brings it back to life)."""
    rows = store.read_internal(ctl.conn, "job_id = ?", (job_id,), COLUMN_NAMES)
    if not rows:
        return None
    rec, *columns = rows[0]
    return Job.from_row(rec, dict(zip(COLUMN_NAMES, columns)))


# ------------------------------------------------------------------ cancel


def split_element(ctl, job: Job, index: int, save_array: bool = True, write_task: bool = True) -> Job:
    """Take one pending task out of an array's pending record: a record of its own, as in SLURM
    (the last one left is the pending record itself, which keeps the array's id). Without
    ``save_array`` the caller saves the array's record, once for many tasks; without
    ``write_task`` it writes the task (a new one with ``ctl.insert``), once it is changed."""
    rest = job.pending_indices.without(IndexSet.of((index,)))
    if not rest:
        job.rec.array_task_id, job.rec.array_task_str, job.pending_indices = index, None, None
        ctl._task_paths(job)
        if write_task:
            ctl.save(job)
        return job
    ctl.write()
    task_id = store.next_job_id(ctl.conn, ctl.cluster.first_job_id)
    rec = dataclasses.replace(job.rec, job_id=task_id, array_task_id=index, array_task_str=None)
    task = Job(rec=rec, seq=job.seq, nice=job.nice, begin_time=job.begin_time, plan=job.plan,
               request=job.request, need=job.need, never_reason=job.never_reason)
    ctl._task_paths(task)
    if write_task:
        ctl.insert(task)
    ctl.jobs[task_id] = task
    job.pending_indices = rest
    job.rec.array_task_str = format_array(rest, job.rec.array_max_tasks)
    if save_array:
        ctl.save(job)
    return task


def cancel_elements(ctl, job: Job, indices: IndexSet, uid: int) -> None:
    """Cancel pending tasks of an array: SLURM drops the indices and keeps no record of them
    (when none is left the pending record itself ends)."""
    rest = job.pending_indices.without(indices)
    if not rest:
        job.rec.cancelled_by = uid
        job.rec.array_task_str = ""  # no index left: SLURM shows the bare job id
        ctl.finish(job, "CANCELLED")
        return
    job.pending_indices = rest
    job.rec.array_task_str = format_array(rest, job.rec.array_max_tasks)
    ctl.save(job)


def _cancel_one(ctl, job: Job, index: IndexSet | None, uid: int) -> str | None:
    state = job.rec.state
    if state == "PENDING":
        if index is not None:
            cancel_elements(ctl, job, index, uid)
        else:
            job.rec.cancelled_by = uid
            ctl.finish(job, "CANCELLED")
        return None
    if state == "RUNNING":
        job.rec.cancelled_by = uid
        if job.launch == "launched":
            ctl.start_kill(job, "CANCELLED", "")
        else:  # not started yet (no process): nothing to signal
            ctl.end_run(job)
            ctl.finish(job, "CANCELLED")
        return None
    return ALREADY_DONE


def _signal_one(ctl, job: Job, signum: int, batch: bool, full: bool) -> tuple[str | None, int]:
    state = job.rec.state
    if state == "PENDING":
        return NOT_NOW, NOT_NOW_EXIT
    if state != "RUNNING" or job.launch != "launched":
        return (ALREADY_DONE if state == "COMPLETING" else INVALID_JOB), 1

    if full:
        mode = "full"
    elif signum == _signal.SIGKILL and not batch:
        mode = "all"
    elif batch:
        mode = "batch"
    else:
        mode = "steps"
    pgid = job.pgid
    ctl.after_commit.append(lambda: launch.signal_job(pgid, signum, mode))
    return None, 0


def _cancel_step(ctl, job_id: int, step: int, signum: int | None, uid: int) -> tuple[str | None, int, bool]:
    """(error, exit code, whether scancel names the job alone) of cancelling or signalling a step."""
    job = ctl.jobs.get(job_id)
    if job is None or job.rec.state != "RUNNING" or job.launch != "launched":
        return INVALID_JOB, 1, False
    from sflow.exec import steplog  # deferred: loaded with the first job

    pids = launch.step_pids(job.pgid, step)
    if not pids:
        # SLURM 22.05: a signal to a step that is not there passes silently; a cancel fails
        # naming the job only, and scancel exits with the error number (2017) modulo 256.
        return (None, 0, False) if signum is not None else (INVALID_JOB, INVALID_JOB_EXIT, True)
    if signum is None:  # a cancelled step is killed outright; its srun tells the job's output
        steplog.mark_cancelled(ctl.home, job_id, step, uid)
    signals = [signum] if signum is not None else [_signal.SIGKILL]

    def deliver() -> None:
        for number in signals:
            for pid in pids:
                try:
                    os.kill(pid, number)
                except ProcessLookupError:
                    pass

    ctl.after_commit.append(deliver)
    return None, 0, False


def cancel(ctl, msg: dict) -> dict:
    """scancel: ``targets`` (``12``, ``12_3``, ``12_[1-3]``, ``12.0``) and/or ``filters``."""
    targets = list(msg.get("targets") or [])
    filters = msg.get("filters") or {}
    signum = msg.get("signal")
    batch, full = bool(msg.get("batch")), bool(msg.get("full"))
    uid = int(msg.get("uid", ctl.uid))
    signalling = signum is not None or batch
    if signalling and signum is None:
        signum = int(_signal.SIGKILL)
    results = []

    def act(job: Job, index: int | None) -> tuple[str | None, int]:
        if signalling:
            return _signal_one(ctl, job, signum, batch, full)
        error = _cancel_one(ctl, job, index, uid)
        return error, 0

    if targets:
        for text in targets:
            parsed = parse_target(text)
            if parsed is None:
                results.append({"target": text, "error": INVALID_JOB, "exit_code": 1, "step": False})
                continue
            job_id, indices, step = parsed
            if step is not None:
                error, code, job_only = _cancel_step(ctl, job_id, step, signum, uid)
                results.append({"target": str(job_id) if job_only else text, "error": error, "exit_code": code,
                                "step": True})
                continue
            matches = [(j, i) for j, i in _active_matches(ctl, job_id, indices) if passes(j.rec, filters)]
            if not matches and any(filters.values()):
                continue  # scancel keeps only the jobs that pass its filters, and names no others
            if not matches:
                known = _known(ctl, job_id, indices)
                # scancel checks a job it signals is active first: one that ended is no job to it.
                error = ALREADY_DONE if known and not signalling else INVALID_JOB
                results.append({"target": text, "error": error, "exit_code": 1, "step": False,
                                "unknown": not known})
                continue
            error, code = None, 0
            for job, index in matches:
                if job.job_id not in ctl.jobs:
                    continue  # ended by an earlier action of this request (a remainder's last task)
                one, one_code = act(job, index)
                if one is not None and error is None:
                    error, code = one, one_code
            results.append({"target": text, "error": error, "exit_code": code, "step": False})
    else:
        for job in sorted(list(ctl.jobs.values()), key=lambda j: j.job_id):
            if not passes(job.rec, filters) or job.job_id not in ctl.jobs:
                continue
            shown = job.display_id
            error, code = act(job, None)
            results.append({"target": shown, "error": error, "exit_code": code, "step": False})
    return {"ok": True, "results": results, "signal": signum, "stdout": "", "stderr": ""}


# ------------------------------------------------------------------ hold, release, requeue


def _named(ctl, text: str) -> tuple[list[tuple[Job, int | None]] | None, bool]:
    parsed = parse_target(str(text))
    if parsed is None:
        return None, False
    job_id, indices, _ = parsed
    return _active_matches(ctl, job_id, indices), _known(ctl, job_id, indices)


def hold(ctl, msg: dict, held: bool = True) -> dict:
    admin = bool(msg.get("admin"))
    errors = []
    for text in msg.get("job_ids") or []:
        matches, known = _named(ctl, text)
        if not matches:
            error = FINISHED if known else INVALID_JOB
            errors.append(f"{error} for job {text}\nslurm_suspend error: {error}\n")
            continue
        for job, chosen in matches:
            if job.rec.state != "PENDING" or job.job_id not in ctl.jobs:
                continue  # SLURM says nothing for a job already running or done
            if chosen is None:
                _hold_one(ctl, job, held, admin)
                continue
            for index in chosen:  # each task held or released becomes a record of its own, as in SLURM
                _hold_one(ctl, split_element(ctl, job, index), held, admin)
    ctl.schedule_wanted = True
    return {"ok": not errors, "stdout": "", "stderr": "".join(errors), "exit_code": 1 if errors else 0}


def _hold_one(ctl, job: Job, held: bool, admin: bool) -> None:
    rec = job.rec
    if held:
        rec.held, rec.priority = True, 0
        rec.reason = "JobHeldAdmin" if admin else "JobHeldUser"
    elif rec.held:
        rec.held = False
        job.seq = store.next_seq(ctl.conn)
        rec.priority = base_priority(job.seq, job.nice)
        rec.reason = "None"
    ctl.save(job)


def release(ctl, msg: dict) -> dict:
    return hold(ctl, msg, held=False)


def requeue(ctl, msg: dict) -> dict:
    keep_held = bool(msg.get("hold"))
    errors = []
    for text in msg.get("job_ids") or []:
        parsed = parse_target(str(text))
        if parsed is None:
            errors.append(f"Invalid job id specified for job {text}\n")
            continue
        job_id, indices, _ = parsed
        matches = [j for j, i in _active_matches(ctl, job_id, indices) if i is None]
        if not matches:
            ids = _stored_ids(ctl, job_id, indices)
            matches = [job for job in (_load(ctl, i) for i in ids) if job is not None]
            if not matches:
                pending = [j for j, i in _active_matches(ctl, job_id, indices)]
                errors.append(f"Job is pending execution for job {text}\n" if pending
                              else f"Invalid job id specified for job {text}\n")
                continue
        if msg.get("incomplete"):  # only jobs still running; ended ones are left as they are
            matches = [job for job in matches if job.rec.state not in FINISHED_STATES]
        for job in matches:
            rec = job.rec
            if rec.state == "PENDING":
                errors.append(f"Job is pending execution for job {text}\n")
            elif not rec.requeue:
                errors.append(f"Requested operation is presently disabled for job {text}\n")
            elif rec.state == "RUNNING" and job.launch == "launched":
                ctl.start_kill(job, "REQUEUE_HOLD" if keep_held else "REQUEUE", " DUE TO JOB REQUEUE")
            elif rec.state == "RUNNING":
                ctl.end_run(job)
                ctl.requeue(job, hold=keep_held)
            elif rec.state in FINISHED_STATES:
                ctl.request_of(job)
                ctl.check_never(job)
                ctl.requeue(job, hold=keep_held)
    ctl.schedule_wanted = True
    return {"ok": not errors, "stdout": "", "stderr": "".join(dict.fromkeys(errors)),
            "exit_code": 1 if errors else 0}


# ------------------------------------------------------------------ update


def _update_one(ctl, job: Job, key: str, value: str) -> str | None:

    rec = job.rec
    name = key.lower()
    running = rec.state != "PENDING"
    if name == "timelimit":
        try:
            if value[:1] in "+-" and value[1:]:
                delta = values.parse_time_limit(value[1:])
                base = rec.time_limit if rec.time_limit is not None and rec.time_limit < values_infinite() else 0
                rec.time_limit = max(0, base + delta if value[0] == "+" else base - delta)
            else:
                rec.time_limit = values.parse_time_limit(value)
        except (values.InvalidValue, ValueError):
            return "scontrol: error: Invalid TimeLimit value"
        rec.time_limit = min(rec.time_limit, values_infinite())  # SLURM takes any larger one as UNLIMITED
    elif name in ("jobname", "name"):
        rec.name = value
    elif name == "comment":
        rec.comment = value
    elif name == "nice":
        try:
            nice = int(value)
        except ValueError:
            return f"scontrol: error: Invalid nice value: {value}"
        if abs(nice) > NICE_LIMIT:
            return f"scontrol: error: Nice value out of range (+/- {NICE_LIMIT}). Value ignored"
        job.nice = nice
        if not rec.held and not running:
            rec.priority = base_priority(job.seq, job.nice)
    elif name == "priority":
        try:
            priority = int(value)
        except ValueError:
            priority = -1
        if not 0 <= priority < PRIORITY_NONE:
            return f"scontrol: error: Invalid Priority value: {value}"
        if rec.held:
            return _JOB_ERROR + "Job is in held state, pending scheduler release"
        rec.priority = priority
        if priority == 0 and not running:  # priority zero is a hold, as scontrol hold by an operator
            rec.held, rec.reason = True, "JobHeldAdmin"
    elif name in ("starttime", "begintime", "begin"):
        if running:
            return None
        try:

            job.begin_time = values.parse_time(value, datetime.now()).timestamp()
        except (values.InvalidValue, ValueError, OverflowError):
            return f"scontrol: error: Invalid StartTime value: {value}"
        rec.eligible_time = None
    elif name == "dependency":
        if running:
            return None
        request = ctl.request_of(job)
        if not value or value.lower() in ("none", "(null)"):
            request.dependency = None
            rec.dependency = ""
        else:
            try:
                parsed = values.parse_dependency(value)
            except values.InvalidValue:
                return "Job dependency problem"

            request.dependency = DependencyRequest.model_validate({
                "any_of": parsed.any_of, "text": value,
                "items": [{"kind": i.kind, "job_id": i.job_id, "delay_minutes": i.delay_minutes}
                          for i in parsed.items]})
            rec.dependency = format_dependency(request.dependency)
        _store_request(ctl, job)
    elif name == "arraytaskthrottle":

        try:
            throttle = int(value)
        except ValueError:
            return f"scontrol: error: Invalid ArrayTaskThrottle value: {value}"
        if not 0 <= throttle <= 0xFFFFFFFF:
            return "scontrol: error: Invalid ArrayTaskThrottle value"
        rec.array_max_tasks = throttle or None
        if job.is_array_remainder:
            rec.array_task_str = format_array(job.pending_indices or IndexSet(), rec.array_max_tasks)
    elif name == "requeue":
        rec.requeue = value not in ("0", "no", "NO")
    elif name in ("numnodes", "reqnodes") and running:
        return _shrink(ctl, job, value)
    elif name == "partition":
        if running:
            return "Job is no longer pending execution"
        try:
            partition = ctl.cluster.partition(value)
        except Exception:
            return "Invalid partition name specified"
        rec.partition = value if "," in value else partition.name  # several are kept as given
        ctl.check_never(job)
    else:
        return f"Update of this parameter is not supported: {key}={value}\nRequest aborted"
    return None


def _shrink(ctl, job: Job, value: str) -> str | None:
    """NumNodes=M on a running job: the nodes past the first M go back, as SLURM relinquishes them."""
    try:
        wanted = int(value.split("-")[0])
    except ValueError:
        return f"scontrol: error: Invalid NumNodes value: {value}"
    alloc = job.alloc
    if wanted <= 0:
        return _JOB_ERROR + "Node count specification invalid"
    # Growing a running job, or resizing cloud instances, is what SLURM cannot do here either.
    if not ctl.on_this_machine(job) or alloc is None or wanted > len(alloc.nodes):
        return _JOB_ERROR + "Requested operation not supported on this system"
    if wanted < len(alloc.nodes):
        freed = Allocation(alloc.job_id, alloc.nodes[wanted:], alloc.exclusive, alloc.withheld_env)
        ctl.backend_for(job).release(freed)
        job.alloc = Allocation(alloc.job_id, alloc.nodes[:wanted], alloc.exclusive, alloc.withheld_env)
        job.rec.nodelist, job.rec.num_nodes = job.alloc.nodelist, wanted
        job.rec.num_cpus = job.alloc.num_cpus
        _shrink_context(ctl.job_dir(job.job_id), wanted)
    return None


def _shrink_context(directory: str, wanted: int) -> None:
    """srun inside the job reads its nodes from the job's context: it keeps only the first ``wanted``."""
    path = os.path.join(directory, "context.json")
    try:
        with open(path) as handle:
            context = json.load(handle)
    except (OSError, ValueError):
        return
    context["nodes"] = context.get("nodes", [])[:wanted]
    context["tasks_per_node"] = context.get("tasks_per_node", [])[:wanted]
    with open(path + ".tmp", "w") as handle:
        json.dump(context, handle)
    os.replace(path + ".tmp", path)


def _resized(job: Job) -> dict:
    """What scontrol writes into slurm_job_<id>_resize.sh and .csh."""
    return {"job_id": job.job_id, "nodelist": job.rec.nodelist, "num_nodes": job.rec.num_nodes,
            "cpus_per_node": compress_counts([n.cpus for n in job.alloc.nodes])}


def values_infinite() -> int:

    return INFINITE


def _store_request(ctl, job: Job) -> None:
    owner_id = job.rec.array_job_id if job.rec.array_job_id is not None else job.job_id
    ctl.write()
    store.save_request(ctl.conn, owner_id, job.request.to_json())


def _by_name(ctl, name: str, uid: int | None) -> list[tuple[Job, None]]:
    return [(job, None) for job in sorted(ctl.jobs.values(), key=lambda j: j.job_id)
            if job.rec.name == name and (uid is None or job.rec.uid == uid)]


def update(ctl, msg: dict) -> dict:
    """``scontrol update``: the jobs of ``job_id`` (an array task splits off as a record of its own),
    or those named ``job_name`` (of ``user_id``); ``changes`` are (key, value) pairs in order."""
    changes = msg.get("changes") or {}
    pairs = list(changes.items()) if isinstance(changes, dict) else [tuple(c) for c in changes]
    if msg.get("job_name") is not None:
        name, uid = str(msg["job_name"]), msg.get("user_id")
        matches = _by_name(ctl, name, None if uid is None else int(uid))
        text = None
        if not matches:
            who = f"user ID {uid} and name" if uid is not None else "name"
            return {"ok": False, "stdout": "", "stderr": f"scontrol: error: No jobs with {who} '{name}'\n",
                    "exit_code": 1}
    else:
        text = str(msg.get("job_id", ""))
        matches, known = _named(ctl, text)
        if matches is None or not matches:
            error = FINISHED if matches is not None and known else INVALID_JOB
            return {"ok": False, "stdout": "", "stderr": f"{error} for job {text}\n", "exit_code": 1}
    errors, resized = [], []
    for job, chosen in matches:
        if job.job_id not in ctl.jobs:
            continue
        targets = [job] if chosen is None else [split_element(ctl, job, index) for index in chosen]
        for target in targets:
            for key, value in pairs:
                error = _update_one(ctl, target, key, str(value))
                if error is None:
                    continue
                if error.startswith(_JOB_ERROR):  # the job refuses it; others named still change
                    errors.append(f"{error[len(_JOB_ERROR):]} for job {text or target.display_id}\n")
                    break
                raise Refused(error + "\n")
            else:
                if target.rec.state == "RUNNING" and target.alloc is not None and \
                        any(key.lower() in ("numnodes", "reqnodes") for key, _ in pairs):
                    resized.append(_resized(target))
                if any(key.lower() in PLANNED_FROM for key, _ in pairs):
                    refused = ctl.replan(target)
                    if refused is not None:
                        errors.append(f"{refused} for job {text or target.display_id}\n")
            ctl.save(target)
    ctl.schedule_wanted = True
    return {"ok": not errors, "stdout": "", "stderr": "".join(errors), "exit_code": 1 if errors else 0,
            "resized": resized}


PLANNED_FROM = ("timelimit", "partition")  # what a backend's kept plan is made from, of what update changes
_JOB_ERROR = "\0job:"  # an error of one job's state, reported per job, not a bad request


def top(ctl, msg: dict) -> dict:
    """``scontrol top``: the jobs named, in order, take the highest priorities among the pending jobs of
    the same user, partition, account and QOS as the first; the others keep their order below. Their
    nice values change by as much, so the group's share is the same."""
    if not msg.get("operator") and "enable_user_top" not in (ctl.config_value("SchedulerParameters") or "").lower():
        return {"ok": False, "stdout": "", "stderr": "".join(
            f"Access/permission denied for job {t}\n" for t in msg.get("job_ids") or []), "exit_code": 1}
    listed: list[Job] = []
    for text in msg.get("job_ids") or []:
        parsed = parse_target(str(text))
        if parsed is None or parsed[2] is not None:
            return {"ok": False, "stdout": "", "stderr": f"{INVALID_JOB} for job {','.join(msg['job_ids'])}\n",
                    "exit_code": 1}
        found = [j for j, chosen in _active_matches(ctl, parsed[0], parsed[1]) if chosen is None]
        if not found and not _known(ctl, parsed[0], parsed[1]):
            return {"ok": False, "stdout": "", "stderr": f"{INVALID_JOB} for job {text}\n", "exit_code": 1}
        listed += [j for j in found if j.rec.state == "PENDING" and not j.rec.held and j not in listed]
    if not listed:
        return {"ok": True, "stdout": "", "stderr": "", "exit_code": 0}

    def group_key(job: Job) -> tuple:
        return job.rec.uid, job.rec.partition, job.rec.account, job.rec.qos

    key = group_key(listed[0])
    listed = [j for j in listed if group_key(j) == key]
    group = [j for j in ctl.jobs.values() if j.rec.state == "PENDING" and not j.rec.held and group_key(j) == key]
    slots = sorted((j.rec.priority for j in group), reverse=True)
    rest = sorted((j for j in group if j not in listed), key=lambda j: (-j.rec.priority, j.seq, j.job_id))
    for job, priority in zip(listed + rest, slots):
        if job.rec.priority != priority:
            job.nice += job.rec.priority - priority
            job.rec.priority = priority
            ctl.save(job)
    ctl.schedule_wanted = True
    return {"ok": True, "stdout": "", "stderr": "", "exit_code": 0}


def partition(ctl, msg: dict) -> dict:
    """``scontrol create|delete PartitionName=...``: partitions the controller holds until it is
    reconfigured, kept in the runtime partitions file every command reads beside slurm.conf."""
    action, name = msg.get("action"), str(msg.get("name") or "")
    settings = [tuple(pair) for pair in msg.get("settings") or []]
    exists = any(p.name == name for p in ctl.cluster.partitions)

    def refuse(text: str) -> dict:
        return {"ok": False, "stdout": "", "stderr": text + "\n", "exit_code": 1}

    if action == "delete":
        if not exists:
            return refuse(f"delete_partition {msg.get('given') or name}: {INVALID_PARTITION}")
        if any(j.rec.partition == name for j in ctl.jobs.values()):
            return refuse(f"delete_partition {msg.get('given') or name}: Partition is in use")
        line = f"-{name}"
    else:
        if action == "create" and exists:
            return refuse("Error creating the partition: Invalid partition name specified")
        for key, value in settings:
            if key.lower() not in PARTITION_SETTINGS:
                return refuse(f"scontrol: error: Update of this parameter is not supported: {key}={value}\n\n"
                              "scontrol: error: Request aborted")
        if any(" " in v or not v for _, v in settings) or " " in name:
            return refuse("Error creating the partition: Invalid partition name specified")
        if action == "update":
            if not exists:
                return refuse(f"{INVALID_PARTITION}")
            settings = _partition_settings(ctl.cluster.partition(name)) + settings
        pairs = [("PartitionName", name)] + settings
        try:
            make_partition(ctl.cluster, pairs)
        except SlurmError as err:
            text = str(err)
            reason = "Invalid node name specified" if "node" in text.lower() else text
            return refuse(f"Error creating the partition: {reason}" if action == "create" else reason)
        line = " ".join(f"{k}={v}" for k, v in pairs)
    path = runtime_partitions_path({"SFLOW_HOME": ctl.home})
    try:
        with open(path, "a") as handle:
            handle.write(line + "\n")
    except OSError as err:
        return refuse(f"scontrol: error: {err.strerror}")
    ctl.use_cluster(ctl.cluster_with_runtime_partitions())
    return {"ok": True, "stdout": "", "stderr": "", "exit_code": 0}


INVALID_PARTITION = "Invalid partition name specified"
# What a partition line may set here: slurm.conf's keys less the partition's name.
PARTITION_SETTINGS = {
    "allocnodes", "allowaccounts", "allowgroups", "allowqos", "default", "defaulttime", "defmempercpu",
    "defmempernode", "disablerootjobs", "exclusiveuser", "gracetime", "hidden", "lln", "maxcpuspernode",
    "maxmempercpu", "maxmempernode", "maxnodes", "maxtime", "minnodes", "nodes", "oversubscribe",
    "overtimelimit", "preemptmode", "priority", "priorityjobfactor", "prioritytier", "qos", "reqresv",
    "rootonly", "shared", "state",
}


def _partition_settings(part) -> list[tuple[str, str]]:
    """An existing partition's settings as a line would give them (what an update keeps)."""
    pairs = [("Nodes", compress_hostlist(list(part.nodes)))] if part.nodes else []
    pairs += [("Default", "YES" if part.default else "NO"), ("State", part.state)]
    if part.max_time is not None:
        pairs.append(("MaxTime", "UNLIMITED" if part.max_time >= values_infinite()
                      else format_timelimit_scontrol(part.max_time)))
    if part.default_time is not None:
        pairs.append(("DefaultTime", format_timelimit_scontrol(part.default_time)))
    if part.max_nodes is not None:
        pairs.append(("MaxNodes", str(part.max_nodes)))
    return pairs


class Refused(Exception):
    """A request refused after it changed something: the controller undoes its changes."""

    def __init__(self, stderr: str, exit_code: int = 1):
        super().__init__(stderr)
        self.reply = {"ok": False, "stdout": "", "stderr": stderr, "exit_code": exit_code}


# ------------------------------------------------------------------ steps and allocations


def step_start(ctl, msg: dict) -> dict:
    job = ctl.jobs.get(int(msg["job_id"]))
    if job is None or job.rec.state not in ("RUNNING", "COMPLETING"):
        return {"ok": False, "stderr": f"Unable to create step for job {msg['job_id']}: {INVALID_JOB}\n",
                "exit_code": 1}
    ctl.write()
    store.save_step(ctl.conn, StepRecord(
        job.job_id, str(msg["step_id"]), msg.get("name", ""), "RUNNING", msg.get("start_time") or time.time(),
        None, msg.get("nodelist", job.rec.nodelist), int(msg.get("num_nodes", 1)), int(msg.get("num_tasks", 1)),
        int(msg.get("num_cpus", 1)), 0, 0, dict(msg.get("extra") or {})))
    return {"ok": True}


def step_end(ctl, msg: dict) -> dict:
    job_id, step_id = int(msg["job_id"]), str(msg["step_id"])
    steps = [s for s in store.read_steps(ctl.conn, [job_id]) if s.step_id == step_id]
    if not steps:
        return {"ok": False, "stderr": f"Invalid job step id specified: {job_id}.{step_id}\n", "exit_code": 1}
    step = steps[0]
    step.state = msg.get("state") or ("COMPLETED" if not msg.get("exit_code") else "FAILED")
    step.end_time = msg.get("end_time") or time.time()
    step.exit_code = int(msg.get("exit_code", 0))
    step.exit_signal = int(msg.get("exit_signal", 0))
    ctl.write()
    store.save_step(ctl.conn, step)
    return {"ok": True}


def job_env_info(ctl, msg: dict) -> dict:
    """What srun needs of a running job's allocation."""
    job = ctl.jobs.get(int(msg["job_id"]))
    if job is None or job.rec.state not in ("RUNNING", "COMPLETING") or job.alloc is None:
        return {"ok": False, "stderr": f"Unable to confirm allocation for job {msg['job_id']}: {INVALID_JOB}\n",
                "exit_code": 1}
    return {"ok": True, "job": dataclasses.asdict(job.rec), "allocation": job.alloc.to_json(),
            "context_path": os.path.join(ctl.job_dir(job.job_id), "context.json")}


def finish_allocation(ctl, msg: dict) -> dict:
    """An allocation held by salloc/srun ends with its command's exit code."""
    job = ctl.jobs.get(int(msg["job_id"]))
    code = int(msg.get("exit_code", 0))
    if job is None:
        return {"ok": True}
    if job.rec.state == "PENDING":
        job.rec.cancelled_by = ctl.uid
        ctl.finish(job, "CANCELLED")
    elif job.rec.state == "RUNNING" and job.launch == "launched":
        ctl.start_kill(job, f"EXIT:{code}")
    return {"ok": True}


HANDLERS = {
    "ping": ping, "shutdown": shutdown, "submit": submit, "wait": wait, "cancel": cancel,
    "hold": hold, "release": release, "requeue": requeue, "update": update,
    "step_start": step_start, "step_end": step_end, "job_env_info": job_env_info,
    "finish_allocation": finish_allocation, "usage": usage, "jobs": jobs, "top": top,
    "partition": partition, "reconfigure": reconfigure,
}
