"""``squeue`` from JobRecords: filters, formats and SLURM's column rules."""

from __future__ import annotations

import time

from sflow.errors import SlurmError
from sflow.records import FINISHED_STATES, INFINITE, JOB_STATES, JobRecord
from sflow.views.fmt import (Field, array_text, group_name, iso_time, job_id_display, load_table, parse_name_format,
                             parse_percent_format, render_rows, squeue_job_id)

DEFAULT_FORMAT = "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R"
LONG_FORMAT = "%.18i %.9P %.8j %.8u %.8T %.10M %.9l %.6D %R"
START_FORMAT = "%.18i %.9P %.8j %.8u %.2t %.19S %.6D %20Y %R"
STEPS_FORMAT = "%.15i %.8j %.9P %.8u %.9M %N"
SHORT_STATES = {v: k for k, v in JOB_STATES.items()}
ACTIVE = {"PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "RESIZING", "SIGNALING", "STAGE_OUT"}


def _time(value: float | None) -> str:
    return iso_time(value, "N/A")


def _used(job: JobRecord, now: float) -> int:
    if job.start_time is None or job.state == "PENDING":
        return 0
    return int((job.end_time or now) - job.start_time)


def _elapsed(seconds) -> str:
    from sflow.slurm.values import format_elapsed

    return format_elapsed(seconds)


def _time_left(job: JobRecord, now: float) -> str:
    if job.time_limit in (None, INFINITE):
        return "UNLIMITED"
    return _elapsed(max(0, job.time_limit * 60 - _used(job, now)))


def _memory(job: JobRecord, now: float) -> str:
    from sflow.slurm.display import format_memory_mb

    return format_memory_mb(job.min_memory_mb) if job.min_memory_mb else "0"


def _limit(job: JobRecord, now: float) -> str:
    from sflow.slurm.values import format_timelimit_squeue

    return format_timelimit_squeue(job.time_limit)


def _exec_host(job: JobRecord, now: float) -> str:
    if not job.nodelist:
        return "n/a"
    return job.nodelist.split(",")[0] if "[" not in job.nodelist else _first_node(job.nodelist)


def _const(text: str):
    return lambda job, now: text


# One getter per source named in compat/squeue_format.toml: (job, now) -> the cell's text.
# Built as a table so a 10,000-row listing does one dict lookup per column, not per cell.
GETTERS = {
    "job_id_display": lambda job, now: squeue_job_id(job),
    "array_or_job_id": lambda job, now: str(job.job_id),
    "array_job_id": lambda job, now: str(job.array_job_id if job.array_job_id is not None else job.job_id),
    "array_task": lambda job, now: ("N/A" if job.array_job_id is None else
                                    array_text(job.array_task_str) if job.array_task_id is None
                                    else str(job.array_task_id)),
    "state_compact": lambda job, now: JOB_STATES.get(job.state, job.state),
    "time_used": lambda job, now: "0:00" if job.start_time is None else _elapsed(_used(job, now)),
    "time_limit": _limit,
    "time_left": _time_left,
    "nodelist_reason": lambda job, now: f"({job.reason})" if job.state == "PENDING" else job.nodelist,
    "start_time": lambda job, now: _time(job.start_time),
    "end_time": lambda job, now: _time(job.end_time),
    "submit_time": lambda job, now: _time(job.submit_time),
    "min_memory": _memory,
    "priority_float": lambda job, now: f"{job.priority / 4294967296:.14f}",
    "dependency": lambda job, now: job.dependency or "(null)",
    "comment": lambda job, now: job.comment or "(null)",
    "exec_host": _exec_host,
    "group": lambda job, now: group_name(job.gid),
    "oversubscribe": _const("OK"),
    "star": _const("*"),
    "sct": _const("*:*:*"),
    "zero": _const("0"),
    "na": _const("N/A"),
    "null": _const("(null)"),
    "features": _const("(null)"),
    "req_nodes": _const(""),
    "exc_nodes": _const(""),
    "nice": _const("0"),
}


def _getter(source: str):
    if source in GETTERS:
        return GETTERS[source]

    def attribute(job, now):
        value = getattr(job, source, None)
        return "" if value is None else str(value)

    return attribute


def _first_node(nodelist: str) -> str:
    from sflow.slurm.values import expand_hostlist

    return expand_hostlist(nodelist)[0]


def _expand_arrays(jobs: list[JobRecord], pending_indices) -> list[JobRecord]:
    """``-r``: one row per pending array element instead of ``123_[4-9]``."""
    out = []
    for job in jobs:
        if job.array_job_id is not None and job.array_task_id is None and job.array_task_str:
            for index in pending_indices(job):
                task = object.__new__(JobRecord)  # a plain copy; __init__'s checks already ran once
                task.__dict__ = {**job.__dict__, "array_task_id": index, "array_task_str": None}
                out.append(task)
        else:
            out.append(job)
    return out


# squeue --steps: its own fields, letter -> (header, value of (step, job, now)).
STEP_FIELDS = {
    "i": ("STEPID", lambda s, j, now: f"{job_id_display(j)}.{s.step_id}"),
    "j": ("NAME", lambda s, j, now: s.name),
    "P": ("PARTITION", lambda s, j, now: j.partition),
    "u": ("USER", lambda s, j, now: j.user),
    "M": ("TIME", lambda s, j, now: _elapsed(int(now - s.start_time)) if s.start_time else "0:00"),
    "N": ("NODELIST", lambda s, j, now: s.nodelist),
    "l": ("TIME_LIMIT", lambda s, j, now: "UNLIMITED"),
    "S": ("START_TIME", lambda s, j, now: _time(s.start_time)),
    "b": ("TRES_PER_NODE", lambda s, j, now: "N/A"),
}


def _steps_listing(jobs: list[JobRecord], fmt: str | None, header: bool, now: float,
                   running_steps) -> tuple[str, str]:
    """``squeue -s``: the steps running now, by job then step (the batch step after numbered ones),
    and SLURM's complaint about each unknown specifier (printed as literal text)."""
    running = [j for j in jobs if j.state in ("RUNNING", "COMPLETING")]
    by_id = {j.job_id: j for j in running}
    found = [s for s in (running_steps(running) if running_steps else []) if s.job_id in by_id]
    found.sort(key=lambda s: (by_id[s.job_id].partition, s.job_id,
                              int(s.step_id) if s.step_id.isdigit() else 0xFFFFFFFB))
    prefix, fields, bad = parse_percent_format(fmt or STEPS_FORMAT, STEP_FIELDS)
    getters = [STEP_FIELDS[f.key][1] for f in fields]
    rows = [[get(s, by_id[s.job_id], now) for get in getters] for s in found]
    warnings = "".join(f"squeue: error: Invalid job step format specification: {key}\n" for key in bad)
    return render_rows(prefix, fields, rows, [STEP_FIELDS[f.key][0] for f in fields] if header else None), warnings


def _default_order(job: JobRecord) -> tuple:
    """squeue's default sort "P,t,-p": the compact state's text ("CD" < "PD" < "R"), then priority,
    highest first; jobs alike in both come newest first, as slurmctld lists them."""
    return JOB_STATES.get(job.state, job.state), -job.priority, -job.job_id


def _elements(job: JobRecord, indices, pending_indices) -> list[JobRecord]:
    """What ``123_[indices]`` names of ``job``: itself if it is one of them, or its pending ones."""
    if job.array_job_id is None:
        return []
    if job.array_task_id is not None:
        return [job] if job.array_task_id in indices else []
    if pending_indices is None:
        return [job]
    chosen = pending_indices(job).intersection(indices)
    return _expand_arrays([job], lambda _: chosen)


def _parse_states(text: str) -> set[str]:
    states = set()
    for item in text.split(","):
        word = item.strip().upper()
        if word == "ALL":
            return set(JOB_STATES)
        full = SHORT_STATES.get(word, word)
        if full not in JOB_STATES:
            raise SlurmError(f"Invalid job state specified: {item}")
        states.add(full)
    return states


def squeue_main(argv: list[str], jobs, *, now: float | None = None, user: str = "",
                min_job_age: int = 300, pending_indices=None, running_steps=None) -> tuple[str, str, int]:
    """squeue over ``jobs``: a list of JobRecords, or a loader ``jobs(job_ids=..., states=...)``;
    ``running_steps(jobs)``: the steps running in those jobs, for ``--steps``."""
    from sflow.queue.select import parse_job_spec, split_ids
    from sflow.slurm.getopt import getopt

    now = time.time() if now is None else now
    parsed = getopt("squeue", argv)
    fmt = None
    name_fmt = None
    header = True
    long = False
    expand = False
    start = False
    steps = False
    ids: list[tuple[int, list[int] | None]] = []
    states: set[str] | None = None
    users: set[str] = set()
    names: set[str] = set()
    partitions: set[str] = set()
    accounts: set[str] = set()
    for option, raw in parsed.options:
        name = option.long
        if name == "format":
            fmt = raw
        elif name == "Format":
            name_fmt = raw
        elif name == "noheader":
            header = False
        elif name == "long":
            long = True
        elif name == "array":
            expand = True
        elif name == "start":
            start = True
        elif name == "steps":
            steps = True
        elif name == "jobs":
            for spec in split_ids(raw):
                parsed_spec = parse_job_spec(spec)
                if parsed_spec is None:
                    return "", f"squeue: error: Invalid job id: {spec}\n", 1
                ids.append(parsed_spec)
        elif name == "states":
            states = _parse_states(raw)
        elif name == "user":
            users |= set(raw.split(","))
        elif name == "me":
            users.add(user)
        elif name == "name":
            names |= set(raw.split(","))
        elif name == "partition":
            partitions |= set(raw.split(","))
        elif name == "account":
            accounts |= set(raw.split(","))
        elif name in ("help", "usage"):
            from sflow.slurm.help import render_help

            return render_help("squeue") + "\n", "", 0
        elif name == "version":
            from sflow.slurm.help import VERSION_LINE

            return VERSION_LINE + "\n", "", 0
    for spec in parsed.positionals:
        return "", f"squeue: error: Unrecognized option: {spec}\n", 1

    def recent(job: JobRecord) -> bool:
        return job.state not in FINISHED_STATES or (job.end_time or 0) >= now - min_job_age

    if start:
        states = {"PENDING"}  # --start: when the pending jobs are expected to start
    elif states is None:
        states = ACTIVE  # naming jobs does not widen the states shown
    if callable(jobs):  # a loader: let the database do the coarse filtering (10,000 jobs queued...)
        # Named jobs are loaded in every state: one that exists but is filtered out is no error.
        jobs = jobs(job_ids=[job_id for job_id, _ in ids] or None, states=None if ids else states)
    visible = [j for j in jobs if recent(j)]
    if ids:
        wanted = []
        for job_id, indices in ids:
            matches = [j for j in visible if j.job_id == job_id or j.array_job_id == job_id]
            if indices is not None:
                # A pending remainder named by index shows as just those elements.
                matches = [task for j in matches for task in _elements(j, indices, pending_indices)]
            wanted += [j for j in matches if j not in wanted]
        if not wanted:
            return "", "slurm_load_jobs error: Invalid job id specified\n", 1
        visible = wanted
    if steps:
        return (*_steps_listing(visible, fmt, header, now, running_steps), 0)
    rows = [j for j in visible if j.state in states
            and (not users or j.user in users) and (not names or j.name in names)
            and (not partitions or j.partition in partitions) and (not accounts or j.account in accounts)]
    if expand and pending_indices is not None:
        rows = _expand_arrays(rows, pending_indices)
    rows.sort(key=_default_order)
    table = {row["letter"]: row for row in load_table("squeue_format.toml")}
    by_name = {row["name"].lower(): row for row in table.values()}
    warnings = ""
    if name_fmt:
        fields = parse_name_format(name_fmt)
        prefix = ""
        unknown = [f for f in fields if f.key.lower() not in by_name]
        # SLURM names each unknown field and lists the rest (an empty line if none is left).
        warnings = "".join(f"squeue: error: Invalid job format specification: {f.key}\n" for f in unknown)
        fields = [f for f in fields if f not in unknown]
        specs = [by_name[f.key.lower()] for f in fields]
    else:
        default = START_FORMAT if start else LONG_FORMAT if long else DEFAULT_FORMAT
        prefix, fields, bad = parse_percent_format(fmt or default, table)
        warnings = "".join(f"squeue: error: Invalid job format specification: {key}\n" for key in bad)
        specs = [table[field.key] for field in fields]
    getters = [_getter(spec["source"]) for spec in specs]
    out = render_rows(prefix, fields, [[get(job, now) for get in getters] for job in rows],
                      [spec["header"] for spec in specs] if header else None)
    if long and header:
        out = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(now)) + "\n" + out
    return out, warnings, 0


__all__ = ["squeue_main", "job_id_display", "DEFAULT_FORMAT", "Field"]
