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


def _job_elapsed(job: JobRecord, now: float) -> int:
    return _elapsed(job.start_time if job.state != "PENDING" else None, job.end_time, now)


def _job_state(job: JobRecord) -> str:
    if job.state == "CANCELLED" and job.cancelled_by is not None:
        return f"CANCELLED by {job.cancelled_by}"
    if job.state == "PENDING" and job.restart_count:
        return "REQUEUED"  # accounting still holds the run that was requeued
    return job.state


def _job_cpu(which: str):
    def value(job, now, steps):
        from sflow.exec.usage import format_cpu  # deferred: ~0.45 ms at sacct's start; usage fields only

        user, system = job_cpu(list(steps))
        return format_cpu({"TotalCPU": user + system, "UserCPU": user, "SystemCPU": system}[which])

    return value


def _tres(job: JobRecord) -> str:
    return f"billing={job.num_cpus},cpu={job.num_cpus},node={job.num_nodes}"


def _limit(job: JobRecord) -> str:
    return "UNLIMITED" if job.time_limit in (None, INFINITE) else format_elapsed_sacct(job.time_limit * 60)


# One function per field of a job's line, (job, now, its steps) -> text: looked up once per
# column, so a listing of 9,000 jobs runs no chain of comparisons per cell.
JOB_VALUES = {
    "JobID": lambda job, now, steps: job_id_display(job),
    "JobIDRaw": lambda job, now, steps: str(job.job_id),
    "JobName": lambda job, now, steps: job.name,
    "State": lambda job, now, steps: _job_state(job),
    # A cancelled job's accounting closed when it was cancelled, before its shell died.
    "ExitCode": lambda job, now, steps: "0:0" if job.state == "CANCELLED" else f"{job.exit_code}:{job.exit_signal}",
    "DerivedExitCode": lambda job, now, steps: f"{job.derived_exit_code}:0",
    "AllocCPUS": lambda job, now, steps: str(job.num_cpus) if job.state != "PENDING" or not job.restart_count else "0",
    "ReqCPUS": lambda job, now, steps: str(job.num_cpus),
    "NNodes": lambda job, now, steps: str(job.num_nodes),
    "Elapsed": lambda job, now, steps: format_elapsed_sacct(_job_elapsed(job, now)),
    "ElapsedRaw": lambda job, now, steps: str(_job_elapsed(job, now)),
    "CPUTime": lambda job, now, steps: format_elapsed_sacct(_job_elapsed(job, now) * job.num_cpus),
    "CPUTimeRAW": lambda job, now, steps: str(_job_elapsed(job, now) * job.num_cpus),
    "Start": lambda job, now, steps: iso_time(job.start_time if job.state != "PENDING" else None),
    "End": lambda job, now, steps: iso_time(job.end_time),
    # Unknown while held or waiting on a dependency
    "Eligible": lambda job, now, steps: iso_time(job.eligible_time if job.state == "PENDING" else job.submit_time),
    "Submit": lambda job, now, steps: iso_time(job.submit_time),
    "NodeList": lambda job, now, steps: job.nodelist or "None assigned",
    "User": lambda job, now, steps: job.user,
    "UID": lambda job, now, steps: str(job.uid),
    "Group": lambda job, now, steps: group_name(job.gid),
    "GID": lambda job, now, steps: str(job.gid),
    "WorkDir": lambda job, now, steps: job.work_dir,
    "Timelimit": lambda job, now, steps: _limit(job),
    "TimelimitRaw": lambda job, now, steps: ("UNLIMITED" if job.time_limit in (None, INFINITE)
                                             else str(job.time_limit)),
    "ReqMem": lambda job, now, steps: format_memory_mb(job.min_memory_mb) if job.min_memory_mb else "0",
    "Partition": lambda job, now, steps: job.partition,
    "Account": lambda job, now, steps: job.account,
    "Comment": lambda job, now, steps: job.comment,
    "Reason": lambda job, now, steps: job.reason,
    "Priority": lambda job, now, steps: str(job.priority),
    "QOS": lambda job, now, steps: job.qos,
    "AllocTRES": lambda job, now, steps: _tres(job) if job.state != "PENDING" else "",
    "ReqTRES": lambda job, now, steps: _tres(job),
    "NTasks": lambda job, now, steps: "",
    "Cost": lambda job, now, steps: billed(job.cost_cents) if job.cost_cents is not None else "",
    "LimitPrice": lambda job, now, steps: job.limit_price or "",
    "Suspended": lambda job, now, steps: "00:00:00",
    "TotalCPU": _job_cpu("TotalCPU"),
    "UserCPU": _job_cpu("UserCPU"),
    "SystemCPU": _job_cpu("SystemCPU"),
}
JOB_VALUES.update(NCPUS=JOB_VALUES["AllocCPUS"], AllocNodes=JOB_VALUES["NNodes"], ReqNodes=JOB_VALUES["NNodes"])


def _nothing(job, now, steps) -> str:
    return ""


def _step_state(step: StepRecord) -> str:
    if step.state == "CANCELLED" and step.extra.get("cancelled_by") is not None:
        return f"CANCELLED by {step.extra['cancelled_by']}"
    return step.state


def _step_elapsed(step: StepRecord, now: float) -> int:
    return _elapsed(step.start_time, step.end_time, now)


def _step_usage(name: str):
    return lambda step, job, now: usage_value(name, step.extra.get("usage"), step.num_tasks)


# A step's line, as JOB_VALUES a job's: (step, its job, now) -> text.
STEP_VALUES = {
    "JobID": lambda step, job, now: f"{job_id_display(job)}.{step.step_id}",
    "JobIDRaw": lambda step, job, now: f"{job.job_id}.{step.step_id}",
    "JobName": lambda step, job, now: step.name,
    "State": lambda step, job, now: _step_state(step),
    "ExitCode": lambda step, job, now: f"{step.exit_code}:{step.exit_signal}",
    "AllocCPUS": lambda step, job, now: str(step.num_cpus),
    "NNodes": lambda step, job, now: str(step.num_nodes),
    "NTasks": lambda step, job, now: str(step.num_tasks),
    "Elapsed": lambda step, job, now: format_elapsed_sacct(_step_elapsed(step, now)),
    "ElapsedRaw": lambda step, job, now: str(_step_elapsed(step, now)),
    "Start": lambda step, job, now: iso_time(step.start_time),
    "End": lambda step, job, now: iso_time(step.end_time),
    "NodeList": lambda step, job, now: step.nodelist,
    "Account": lambda step, job, now: job.account,
    "CPUTime": lambda step, job, now: format_elapsed_sacct(_step_elapsed(step, now) * step.num_cpus),
    "CPUTimeRAW": lambda step, job, now: str(_step_elapsed(step, now) * step.num_cpus),
    "Suspended": lambda step, job, now: "00:00:00",
    **{name: _step_usage(name) for name in STEP_USAGE},
}
STEP_VALUES.update(NCPUS=STEP_VALUES["AllocCPUS"], ReqCPUS=STEP_VALUES["AllocCPUS"], AllocNodes=STEP_VALUES["NNodes"],
                   ReqNodes=STEP_VALUES["NNodes"], Submit=STEP_VALUES["Start"], Eligible=STEP_VALUES["Start"])


def _no_step_value(step, job, now) -> str:
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


def sacct_main(argv: list[str], jobs, steps, *, now: float | None = None,
               user: str = "", env: dict | None = None) -> tuple[str, str, int]:
    """sacct over ``jobs`` and ``steps``: lists of records, or loaders: ``jobs(ids=...)`` (those
    jobs and their arrays' tasks) or ``jobs(ended_since=...)`` (at least every job not ended
    before), and ``steps(jobs, usage)``: those jobs' steps, with their measured usage if ``usage``."""
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
    midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    since = start if start is not None else midnight
    if callable(jobs):  # a loader: the store picks the named jobs, or those that ended in the window
        jobs = jobs(ids=[job_id for job_id, _, _ in ids]) if ids else jobs(ended_since=since)
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
        chosen = [j for j in jobs if (j.end_time or now) >= since and (end is None or j.submit_time <= end)]
    until = now if end is None else end
    chosen = [j for j in chosen if (users is None or j.user in users) and (not names or j.name in names)
              and (not states or j.state in states) and (not partitions or j.partition in partitions)
              and _in_accounting(j, bool(ids) and not states, until)]
    chosen.sort(key=lambda j: (j.array_job_id or j.job_id, j.array_task_id if j.array_task_id is not None else -1))
    names_shown = [name for name, _, _ in columns]
    usage = any(name in STEP_USAGE for name in names_shown)
    if callable(steps):  # a loader: only the chosen jobs' steps, and only when a line needs them
        wanted = not no_steps or usage or any(only_steps.values())
        steps = steps(chosen, usage) if wanted else []
    steps_by_job: dict[int, list[StepRecord]] = {}
    for step in steps:
        steps_by_job.setdefault(step.job_id, []).append(step)
    job_getters = [JOB_VALUES.get(name, _nothing) for name in names_shown]
    step_getters = [STEP_VALUES.get(name, _no_step_value) for name in names_shown]
    rows: list[list[str]] = []
    for job in chosen:
        steps_wanted = only_steps.get(job.job_id)
        job_steps = steps_by_job.get(job.job_id, ())
        if steps_wanted is None:
            rows.append([get(job, now, job_steps) for get in job_getters])
        if job_steps and (not no_steps or steps_wanted):
            for step in sorted(job_steps, key=step_order):
                if steps_wanted is None or step.step_id in steps_wanted:
                    rows.append([get(step, job, now) for get in step_getters])
    out = render_columns(columns, rows, header=header, delimiter=delimiter, trailing=trailing)
    if not out.isascii():
        # The accounting database keeps text as UTF-8: sacct shows "?" for each byte that was not.
        rows = [[_as_stored(value) for value in row] for row in rows]
        out = render_columns(columns, rows, header=header, delimiter=delimiter, trailing=trailing)
    return out, "", 0
