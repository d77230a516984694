"""``sacct`` from JobRecords and StepRecords: rows, fields, widths and parsable forms."""

from __future__ import annotations

import time
from datetime import datetime

from sflow.errors import UsageError
from sflow.queue.select import parse_job_spec, split_ids
from sflow.records import INFINITE, JOB_STATES, JobRecord, StepRecord
from sflow.slurm.display import format_memory_mb
from sflow.slurm.getopt import getopt
from sflow.slurm.help import VERSION_LINE, recorded
from sflow.slurm.values import InvalidTime, format_elapsed_sacct, parse_time
from sflow.views.costs import billed
from sflow.views.fmt import field_columns, group_name, iso_time, job_id_display, load_table, render_columns, step_order
from sflow.views.step_usage import STEP_USAGE, job_cpu, usage_value

DEFAULT_FIELDS = "JobID,JobName,Partition,Account,AllocCPUS,State,ExitCode"
SHORT_STATES = {v: k for k, v in JOB_STATES.items()}


def _elapsed(start: float | None, end: float | None, now: float) -> int:
    if start is None:
        return 0
    return int((end or now) - start)


def _job_value(name: str, job: JobRecord, now: float, steps: list[StepRecord] = ()) -> str:
    elapsed = _elapsed(job.start_time if job.state != "PENDING" else None, job.end_time, now)
    if name == "JobID":
        return job_id_display(job)
    if name == "JobIDRaw":
        return str(job.job_id)
    if name == "JobName":
        return job.name
    if name == "State":
        if job.state == "CANCELLED" and job.cancelled_by is not None:
            return f"CANCELLED by {job.cancelled_by}"
        if job.state == "PENDING" and job.restart_count:
            return "REQUEUED"  # accounting still holds the run that was requeued
        return job.state
    if name == "ExitCode":
        if job.state == "CANCELLED":
            return "0:0"  # accounting closed the job when it was cancelled, before its shell died
        return f"{job.exit_code}:{job.exit_signal}"
    if name == "DerivedExitCode":
        return f"{job.derived_exit_code}:0"
    if name in ("AllocCPUS", "NCPUS"):
        return str(job.num_cpus) if job.state != "PENDING" or not job.restart_count else "0"
    if name == "ReqCPUS":
        return str(job.num_cpus)
    if name in ("NNodes", "AllocNodes", "ReqNodes"):
        return str(job.num_nodes)
    if name == "Elapsed":
        return format_elapsed_sacct(elapsed)
    if name == "ElapsedRaw":
        return str(elapsed)
    if name == "CPUTime":
        return format_elapsed_sacct(elapsed * job.num_cpus)
    if name == "CPUTimeRAW":
        return str(elapsed * job.num_cpus)
    if name == "Start":
        return iso_time(job.start_time if job.state != "PENDING" else None)
    if name == "End":
        return iso_time(job.end_time)
    if name == "Eligible" and job.state == "PENDING":
        return iso_time(job.eligible_time)  # Unknown while held or waiting on a dependency
    if name in ("Submit", "Eligible"):
        return iso_time(job.submit_time)
    if name == "NodeList":
        return job.nodelist or "None assigned"
    if name == "User":
        return job.user
    if name == "UID":
        return str(job.uid)
    if name == "Group":
        return group_name(job.gid)
    if name == "GID":
        return str(job.gid)
    if name == "WorkDir":
        return job.work_dir
    if name == "Timelimit":
        return "UNLIMITED" if job.time_limit in (None, INFINITE) else format_elapsed_sacct(job.time_limit * 60)
    if name == "TimelimitRaw":
        return "UNLIMITED" if job.time_limit in (None, INFINITE) else str(job.time_limit)
    if name == "ReqMem":
        return format_memory_mb(job.min_memory_mb) if job.min_memory_mb else "0"
    if name == "Partition":
        return job.partition
    if name == "Account":
        return job.account
    if name == "Comment":
        return job.comment
    if name == "Reason":
        return job.reason
    if name == "Priority":
        return str(job.priority)
    if name == "QOS":
        return job.qos
    if name in ("AllocTRES", "ReqTRES"):
        tres = f"billing={job.num_cpus},cpu={job.num_cpus},node={job.num_nodes}"
        return tres if name == "ReqTRES" or job.state != "PENDING" else ""
    if name == "NTasks":
        return ""
    if name == "Cost":
        return billed(job.cost_cents) if job.cost_cents is not None else ""
    if name == "LimitPrice":
        return job.limit_price or ""
    if name == "Suspended":
        return "00:00:00"
    if name in ("TotalCPU", "UserCPU", "SystemCPU"):
        from sflow.exec.usage import format_cpu  # deferred: ~0.45 ms at sacct's start; usage fields only

        user, system = job_cpu(list(steps))
        return format_cpu({"TotalCPU": user + system, "UserCPU": user, "SystemCPU": system}[name])
    return ""


def _step_value(name: str, step: StepRecord, job: JobRecord, now: float) -> str:
    elapsed = _elapsed(step.start_time, step.end_time, now)
    if name == "JobID":
        return f"{job_id_display(job)}.{step.step_id}"
    if name == "JobIDRaw":
        return f"{job.job_id}.{step.step_id}"
    if name == "JobName":
        return step.name
    if name == "State":
        if step.state == "CANCELLED" and step.extra.get("cancelled_by") is not None:
            return f"CANCELLED by {step.extra['cancelled_by']}"
        return step.state
    if name == "ExitCode":
        return f"{step.exit_code}:{step.exit_signal}"
    if name in ("AllocCPUS", "NCPUS", "ReqCPUS"):
        return str(step.num_cpus)
    if name in ("NNodes", "AllocNodes", "ReqNodes"):
        return str(step.num_nodes)
    if name == "NTasks":
        return str(step.num_tasks)
    if name == "Elapsed":
        return format_elapsed_sacct(elapsed)
    if name == "ElapsedRaw":
        return str(elapsed)
    if name in ("Start", "Submit", "Eligible"):
        return iso_time(step.start_time)
    if name == "End":
        return iso_time(step.end_time)
    if name == "NodeList":
        return step.nodelist
    if name == "Account":
        return job.account
    if name == "CPUTime":
        return format_elapsed_sacct(elapsed * step.num_cpus)
    if name == "CPUTimeRAW":
        return str(elapsed * step.num_cpus)
    if name == "Suspended":
        return "00:00:00"
    if name in STEP_USAGE:
        return usage_value(name, step.extra.get("usage"), step.num_tasks)
    return ""


def _in_accounting(job: JobRecord, named: bool, until: float) -> bool:
    """Accounting has every job from its submission, but a pending one is in a time window (and
    so in a listing by state) only once it is eligible: a held job, or one waiting on a
    dependency, shows only when named with -j and no -s."""
    if job.state != "PENDING" or job.restart_count > 0:
        return True
    return named or (job.eligible_time is not None and job.eligible_time <= until)


def _parse_time(text: str, now: float | None = None) -> float:
    """-S/-E in SLURM's time forms, read as past times: today's 16:00 even when already past."""
    now = time.time() if now is None else now
    try:
        return parse_time(text, datetime.fromtimestamp(int(now)), past=True).timestamp()
    except InvalidTime as err:
        if err.pos is None:  # nothing to read: SLURM takes it as the epoch
            return 0.0
        # sacct prints the parser's line bare (no "sacct: error:") and nothing more.
        raise UsageError([err.position_line()], 1) from None


def _as_stored(value: str) -> str:
    return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")


def sacct_main(argv: list[str], jobs: list[JobRecord], steps: list[StepRecord], *, now: float | None = None,
               user: str = "", env: dict | None = None) -> tuple[str, str, int]:
    now = time.time() if now is None else now
    parsed = getopt("sacct", argv)
    if parsed.positionals:  # sacct takes no operands: each is named, and nothing is listed
        return "", "sacct: error: Unknown arguments:\n" + "".join(
            f"sacct: error:  {word}\n" for word in parsed.positionals), 1
    fields_text = (env or {}).get("SACCT_FORMAT") or DEFAULT_FIELDS
    header = True
    delimiter = None
    trailing = False
    no_steps = False
    ids: list[tuple[int, list[int] | None, str | None]] = []
    states: set[str] = set()
    names: set[str] = set()
    partitions: set[str] = set()
    users: set[str] | None = {user}
    start: float | None = None
    end: float | None = None
    for option, raw in parsed.options:
        name = option.long
        if name == "format":
            fields_text = raw
        elif name == "noheader":
            header = False
        elif name == "parsable":
            delimiter, trailing = "|", True
        elif name == "parsable2":
            delimiter, trailing = "|", False
        elif name == "delimiter":
            delimiter = raw
        elif name == "allocations":
            no_steps = True
        elif name == "jobs":
            for spec in split_ids(raw):
                job_text, dot, step = spec.partition(".")
                parsed_spec = parse_job_spec(job_text, max_id=None)
                if parsed_spec is None:
                    return "", f"sacct: fatal: Bad job/step specified: {spec}\n", 1
                if dot and step not in ("batch", "extern"):
                    # SLURM reads a step number's leading digits ("1x" is step 1) and names
                    # only the job part when there are none.
                    digits = step[:len(step) - len(step.lstrip("0123456789"))]
                    if not digits:
                        return "", f"sacct: fatal: Bad step specified: {job_text}\n", 1
                    step = str(int(digits))
                ids.append((*parsed_spec, step if dot else None))
        elif name == "state":
            for item in raw.split(","):
                states.add(SHORT_STATES.get(item.upper(), item.upper()))
        elif name == "name":
            names |= set(raw.split(","))
        elif name == "partition":
            # Each name is compared with the job's whole partition: a pending job given
            # several keeps the list ("a,b"), which no single name matches.
            partitions |= set(raw.split(","))
        elif name == "user":
            users = set(raw.split(","))
        elif name == "allusers":
            users = None
        elif name == "starttime":
            start = _parse_time(raw, now)
        elif name == "endtime":
            end = _parse_time(raw, now)
        elif name in ("help", "usage", "helpformat"):
            return recorded("sacct", name), "", 0
        elif name == "version":
            return VERSION_LINE + "\n", "", 0
    if start is not None and start > (now if end is None else end):
        return "", (f"sacct: error: Start time ({iso_time(start)}) requested is after end time "
                    f"({iso_time(now if end is None else end)}).\n"), 1
    table = {row["name"].lower(): row for row in load_table("sacct_fields.toml")}
    columns, unknown = field_columns(fields_text, table)
    if unknown is not None:
        return "", f"sacct: error: Invalid field requested: \"{unknown}\"\n", 1
    # Named steps: job id -> the steps asked for, or None for the whole job.
    only_steps: dict[int, set[str] | None] = {}
    if ids:
        chosen = []
        for job_id, indices, step in ids:
            for job in jobs:
                if (job.job_id == job_id or job.array_job_id == job_id) and (
                        indices is None or job.array_task_id in indices):
                    if job not in chosen:
                        chosen.append(job)
                        only_steps[job.job_id] = set()
                    if step is None or only_steps[job.job_id] is None:
                        only_steps[job.job_id] = None
                    else:
                        only_steps[job.job_id].add(step)
        users = None if users == {user} else users
    else:
        midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        since = start if start is not None else midnight
        chosen = [j for j in jobs if (j.end_time or now) >= since and (end is None or j.submit_time <= end)]
    until = now if end is None else end
    chosen = [j for j in chosen if (users is None or j.user in users) and (not names or j.name in names)
              and (not states or j.state in states) and (not partitions or j.partition in partitions)
              and _in_accounting(j, bool(ids) and not states, until)]
    chosen.sort(key=lambda j: (j.array_job_id or j.job_id, j.array_task_id if j.array_task_id is not None else -1))
    steps_by_job: dict[int, list[StepRecord]] = {}
    for step in steps:
        steps_by_job.setdefault(step.job_id, []).append(step)
    rows: list[list[str]] = []
    for job in chosen:
        steps_wanted = only_steps.get(job.job_id)
        if steps_wanted is None:
            rows.append([_job_value(name, job, now, steps_by_job.get(job.job_id, [])) for name, _, _ in columns])
        if not no_steps or steps_wanted:
            ordered = sorted(steps_by_job.get(job.job_id, []), key=step_order)
            for step in ordered:
                if steps_wanted is None or step.step_id in steps_wanted:
                    rows.append([_step_value(name, step, job, now) for name, _, _ in columns])
    # The accounting database keeps text as UTF-8: sacct shows "?" for each byte that was not.
    rows = [[_as_stored(value) for value in row] for row in rows]
    return render_columns(columns, rows, header=header, delimiter=delimiter, trailing=trailing), "", 0
