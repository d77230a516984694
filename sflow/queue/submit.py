"""``submit``: from sbatch's raw ingredients to a queued job, or sbatch's refusal.

The controller parses (its grammars and models are warm), checks the request
against the cluster as slurmctld does at submission, allocates the job id in
the same transaction that stores the job, and answers only after COMMIT.

The job's backend (its ``#SFLOW --backend``, else its partition's ``Backend=``)
checks it too: the local backend against the nodes, Mithril's translator against
the market, whose plan is kept with the job and is what will be bid. A check
that needs what the backend is still fetching (the market) raises ``Deferred``:
the submission is answered once it is there.

The answer is data (the job id, the warnings, a typed error); the commands say it in
SLURM's words (``sflow.cli.render``).
"""

from __future__ import annotations

import os
import time

from sflow.backends import chosen_name
from sflow.backends.local import Need, Usage, estimate_nodes
from sflow.errors import SflowError, SlurmError, to_wire
from sflow.fileio import write_all
from sflow.queue import paths, store
from sflow.queue.jobs import Job, base_priority
from sflow.queue.scheduler import FOREVER, Timeline
from sflow.records import INFINITE, JobRecord
from sflow.slurm.display import format_dependency, requested_gpus, tres_per
from sflow.slurm.getopt import getopt
from sflow.slurm.request import parse_sbatch
from sflow.slurm.values import expand_output_pattern, format_array

NO_TASK = 4294967294  # the task id SLURM shows in an array's pending record (NO_VAL - 1)


def display_path(request, pattern: str | None, job_id: int, array_job_id: int | None = None,
                 task: int | None = None) -> str:
    """An output file as scontrol shows it: the pattern expanded with what is known before start."""
    if not pattern:
        return ""
    ctx = {"job_id": job_id, "job_name": request.job_name, "user": request.user}
    if request.array is not None:
        ctx.update(array_job_id=array_job_id or job_id, array_task_id=NO_TASK if task is None else task)
    try:
        path = expand_output_pattern(pattern, ctx)
    except (KeyError, ValueError):
        path = pattern
    return path if os.path.isabs(path) else os.path.join(request.work_dir, path)


def _error(err: SflowError) -> dict:
    return {"ok": False, "error": to_wire(err)}


def _enforce_part_limits(ctl, request, partitions, limit: int, need, nodes: bool = True) -> None:
    """EnforcePartLimits=YES/ANY/ALL rejects at submission what would otherwise wait forever:
    with ALL, what any of the job's partitions refuses; else what all of them refuse."""
    mode = (ctl.config_value("EnforcePartLimits", "NO") or "NO").upper()
    if mode in ("NO", "0"):
        return
    refusals = []
    for partition in partitions:
        try:
            _enforce_one(partition, limit, need, nodes)
        except SlurmError as err:
            refusals.append(err)
    if refusals and (mode == "ALL" or len(refusals) == len(partitions)):
        raise refusals[0]


def _enforce_one(partition, limit: int, need, nodes: bool) -> None:
    if partition.max_time not in (None, INFINITE) and limit > partition.max_time:
        raise SlurmError("Batch job submission failed: Requested time limit is invalid (missing or exceeds some limit)")
    if nodes and need.nodes_given and (need.min_nodes > len(partition.nodes)
                             or (partition.max_nodes and need.min_nodes > partition.max_nodes)):
        raise SlurmError("Batch job submission failed: Node count specification invalid")


def _test_only_plan(ctl, plan: dict, said: dict) -> dict:
    """``--test-only`` for a job its backend plans (Mithril's): the plan, nothing placed (the id is spent,
    as sbatch does)."""
    ctl.write()
    store.next_job_id(ctl.conn, ctl.cluster.first_job_id)
    return {"ok": True, "job_id": None, **said, "plan": plan}


def submit(ctl, msg: dict) -> dict:

    token = msg.get("token")
    if token:
        row = ctl.conn.execute("SELECT job_id FROM jobs WHERE token = ?", (token,)).fetchone()
        if row is not None:  # a resend after a controller died before answering
            return _accepted(row[0], _flags_from_argv(msg.get("argv") or []), {"listing": "", "warnings": []})
    ctl.maybe_reload()
    try:
        submission = parse_sbatch(
            list(msg.get("argv") or []), env=msg.get("env") or {}, cwd=msg.get("cwd") or "/",
            script_text=msg.get("script"), user=msg.get("user", ""), uid=int(msg.get("uid", os.getuid())),
            gid=int(msg.get("gid", os.getgid())), host=msg.get("host", ""), cluster=ctl.cluster,
        )
        request, flags = submission.request, submission.flags
        partitions = ctl.cluster.partitions_for(request.partition)
        partition = partitions[0]
        need = Need.of(request)
        limit = request.time_limit
        if limit is None:
            limit = partition.default_time or partition.max_time or INFINITE
        backend = ctl.backend_named(chosen_name(request, ctl.cluster, ctl.default_backend))
        checked = backend.check(request, partitions, limit, msg.get("env") or {}, time.time())
        _enforce_part_limits(ctl, request, partitions, limit, need, nodes=checked.partition_node_limits)
        if request.min_nodes == 0 and not request.hold:  # SLURM holds such a job, and refuses it to run
            raise SlurmError("Batch job submission failed: Node count specification invalid")
        if request.deadline is not None and request.deadline <= time.time():
            raise SlurmError("Batch job submission failed: Requested time limit is invalid (missing or exceeds some limit)")
    except SflowError as err:
        return _error(err)
    # What sbatch says while it works, before its answer: the -v listing, then the warnings.
    said = {"listing": submission.listing, "warnings": list(submission.warnings)}
    if flags.test_only and checked.plan is not None:
        return _test_only_plan(ctl, checked.plan, said)
    if flags.test_only:
        return test_only(ctl, request, partition, need, checked.never, limit, said)

    ctl.write()
    job_id, seq = store.next_job_id_and_seq(ctl.conn, ctl.cluster.first_job_id)
    now = time.time()
    rec = _record(ctl, request, partition, need, job_id, seq, limit, now)
    rec.backend, rec.limit_price = backend.name, checked.limit_price
    if checked.num_nodes is not None:
        rec.num_nodes = checked.num_nodes
    job = Job(rec=rec, request_json=request.to_json(), seq=seq, token=token, nice=request.nice,
              begin_time=request.begin, plan=checked.plan, request=request, need=need,
              never_reason=checked.never)
    if request.array is not None:
        job.pending_indices = request.array.indices
    _write_script(ctl, job_id, request.script)
    ctl.insert(job)
    ctl.jobs[job_id] = job
    if not request.hold:  # a held job waits for a release: a scheduling pass would change nothing
        ctl.schedule_wanted = True
    flags_echo = {"parsable": flags.parsable, "quiet": flags.quiet, "wait": flags.wait}
    return _accepted(job_id, flags_echo, said)


def _flags_from_argv(argv: list[str]) -> dict:

    try:
        fields = {option.field for option, _ in getopt("sbatch", argv).options}
    except SflowError:
        fields = set()
    return {name: name in fields for name in ("parsable", "quiet", "wait")}


def _accepted(job_id: int, flags: dict, said: dict) -> dict:
    return {"ok": True, "job_id": job_id, **said, "parsable": bool(flags.get("parsable")),
            "quiet": bool(flags.get("quiet")), "wait": bool(flags.get("wait"))}


def _write_script(ctl, job_id: int, script: str) -> None:
    """The script as submitted, beside the job (SLURM keeps it for ``scontrol write batch_script``).

    One file, not a directory holding it: a job that never starts (held, cancelled) costs one
    file made, not two; its directory is made when it starts."""
    data = memoryview(script.encode("utf-8", "surrogateescape"))
    path = paths.kept_script_path(ctl.home, job_id)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:  # the first job: jobs/ is made once
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, flags, 0o600)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def _first_reason(request, now: float) -> str:
    """Why a job waits from the moment it is queued, before any scheduling pass, as slurmctld says."""
    if request.hold:
        return "JobHeldUser"
    if request.dependency:
        return "Dependency"
    if request.begin and request.begin > now:
        return "BeginTime"
    return "None"


def _record(ctl, request, partition, need, job_id: int, seq: int, limit: int, now: float) -> JobRecord:

    requeue = request.requeue
    if requeue is None:
        requeue = (ctl.config_value("JobRequeue", "1") or "1") != "0"
    if request.hold:
        priority = 0
    elif request.priority is not None:
        priority = request.priority
    else:
        priority = base_priority(seq, request.nice)
    mem = request.mem_per_node_mb if request.mem_per_node_mb is not None else request.mem_per_cpu_mb
    nodes = [ctl.cluster.node(name) for name in partition.nodes] or list(ctl.cluster.nodes)
    array = request.array
    tres = tres_per(request)
    return JobRecord(
        job_id=job_id, name=request.job_name, user=request.user, uid=request.uid, gid=request.gid,
        # Several partitions are kept as given while the job waits; it starts in one of them.
        partition=request.partition if request.partition and "," in request.partition else partition.name,
        state="PENDING", reason=_first_reason(request, now),
        submit_time=now, work_dir=request.work_dir, command=request.script_path or "(null)",
        array_job_id=job_id if array else None,
        array_task_str=format_array(array.indices, array.throttle) if array else None,
        array_max_tasks=array.throttle if array else None,
        time_limit=limit, time_min=request.time_min, deadline=request.deadline, priority=priority,
        # -N 0 (held): SLURM shows NumNodes=0.
        num_nodes=estimate_nodes(need, nodes) if request.min_nodes else 0,
        num_cpus=request.ntasks * request.cpus_per_task,
        num_tasks=request.ntasks, cpus_per_task=request.cpus_per_task, min_memory_mb=mem,
        dependency=format_dependency(request.dependency) if request.dependency else "",
        account=request.account or request.user, qos=request.qos or "normal",
        stdout=display_path(request, request.stdout_pattern, job_id),
        stderr=display_path(request, request.stderr_pattern, job_id),
        stdin=display_path(request, request.input, job_id) if request.input else "/dev/null",
        requeue=bool(requeue), held=request.hold, comment=request.comment or "",
        gres=tres.get("TresPerNode", ""), backend=partition.backend,
        tres_per="\n".join(f"{key}={value}" for key, value in tres.items()),
        tres_gpus=requested_gpus(request), min_tmp_disk_mb=request.tmp_mb or 0,
        limit_price=request.cloud.limit_price,
    )


def test_only(ctl, request, partition, need, never, limit, said: dict) -> dict:
    """``--test-only``: when and where the job would start, without queueing it (the id is spent)."""
    ctl.write()
    job_id = store.next_job_id(ctl.conn, ctl.cluster.first_job_id)
    if never is not None:
        return {"ok": False, **said, "test_only": {"refused": "Requested node configuration is not available"}}
    now = time.time()
    running = [j for j in ctl.jobs.values() if j.alloc is not None]
    timeline = Timeline(ctl.backend, now, [(j.deadline() or FOREVER, j.alloc) for j in running])
    for job in sorted((j for j in ctl.jobs.values() if j.expected_start and j.rec.state == "PENDING"),
                      key=lambda j: j.expected_start):
        # Jobs already waiting keep their place ahead of this one.
        fit = timeline.earliest(job.job_id, job.need, partition, _duration(job.rec.time_limit))
        if fit is not None and job.need is not None:
            timeline.reserve(fit[0], fit[0] + _duration(job.rec.time_limit), fit[1])
    fit = timeline.earliest(job_id, need, partition, _duration(limit))
    if fit is None:
        when, alloc = FOREVER, ctl.backend.place(job_id, need, partition, _empty(ctl))
    else:
        when, alloc = fit
    cpus = alloc.num_cpus if alloc is not None else request.ntasks * request.cpus_per_task
    nodes = alloc.nodelist if alloc is not None else None
    return {"ok": True, "job_id": None, **said,
            "test_only": {"job_id": job_id, "start": None if when == FOREVER else when, "cpus": cpus,
                          "nodes": nodes, "partition": partition.name}}


def _duration(limit):

    return FOREVER if limit is None or limit >= INFINITE else limit * 60


def _empty(ctl):

    return Usage(n.name for n in ctl.cluster.nodes)
