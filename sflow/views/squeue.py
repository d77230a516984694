"""``squeue`` from JobRecords: filters, formats and SLURM's column rules."""

from __future__ import annotations

import time
from itertools import groupby

from sflow.errors import SlurmError
from sflow.queue.select import parse_job_spec, split_ids
from sflow.records import FINISHED_STATES, INFINITE, JOB_STATES, JobRecord
from sflow.slurm.display import format_memory_mb
from sflow.slurm.getopt import getopt, with_environment
from sflow.slurm.help import VERSION_LINE, recorded
from sflow.users import uid_of
from sflow.views.fmt import (Field, array_text, group_name, iso_time, job_id_display, load_table, parse_name_format,
                             parse_percent_format, partial_template, render_rows, squeue_id_whole, squeue_job_id,
                             squeue_task_id)

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


# -o's times (%l, %L, %M) right-justified are padded to their width but never cut, as squeue
# 22.05 prints them (a 9-wide TIME_LIMIT shows 365-00:00:00 whole; left-justified ones are cut).
WHOLE_TIMES = frozenset({"l", "L", "M"})


def _elapsed(seconds) -> str:
    # deferred: values costs ~8 ms at squeue's start; held and pending jobs need none of it
    from sflow.slurm.values import format_time_squeue

    return format_time_squeue(seconds)


def _time_left(job: JobRecord, now: float) -> str:
    if job.time_limit in (None, INFINITE):
        return "UNLIMITED"
    return _elapsed(max(0, job.time_limit * 60 - _used(job, now)))


def _end(job: JobRecord) -> str:
    """When the job ended, or is expected to: its start plus its limit ("NONE" without one)."""
    if job.end_time is not None or job.start_time is None:
        return _time(job.end_time)
    if job.time_limit in (None, INFINITE):
        return "NONE"
    return _time(job.start_time + job.time_limit * 60)


def _memory(job: JobRecord, now: float) -> str:
    return format_memory_mb(job.min_memory_mb) if job.min_memory_mb else "0"


def _limit(job: JobRecord, now: float) -> str:
    # deferred: values, as in _elapsed
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
    "end_time": lambda job, now: _end(job),
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


# The cells that differ between the tasks of one pending array, as (record, index) -> text; the
# other getters read nothing a task's row does not share with its array's record.
TASK_GETTERS = {
    "job_id_display": lambda job, index: squeue_task_id(job.array_job_id, index),
    "array_task": lambda job, index: str(index),
}


def _getter(source: str):
    if source in GETTERS:
        return GETTERS[source]

    def attribute(job, now):
        value = getattr(job, source, None)
        return "" if value is None else str(value)

    return attribute


def _first_node(nodelist: str) -> str:
    # deferred: values, as in _elapsed
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
                   running_steps, step_ids=()) -> tuple[str, str]:
    """``squeue -s``: the steps running now, by job then step (the batch step after numbered ones),
    and SLURM's complaint about each unknown specifier (printed as literal text)."""
    running = [j for j in jobs if j.state in ("RUNNING", "COMPLETING")]
    by_id = {j.job_id: j for j in running}
    found = [s for s in (running_steps(running) if running_steps else []) if s.job_id in by_id]
    if step_ids:
        found = [s for s in found if (s.job_id, s.step_id) in step_ids]
    found.sort(key=lambda s: (by_id[s.job_id].partition, s.job_id,
                              int(s.step_id) if s.step_id.isdecimal() else 0xFFFFFFFB))
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


VALID_STATES = ("PENDING,RUNNING,SUSPENDED,COMPLETED,CANCELLED,FAILED,TIMEOUT,NODE_FAIL,PREEMPTED,BOOT_FAIL,"
                "DEADLINE,OUT_OF_MEMORY,COMPLETING,CONFIGURING,RESIZING,RESV_DEL_HOLD,REQUEUED,REQUEUE_FED,"
                "REQUEUE_HOLD,REVOKED,SIGNALING,SPECIAL_EXIT,STAGE_OUT,STOPPED")


def _parse_states(text: str) -> set[str]:
    states = set()
    for item in text.split(","):
        word = item.strip().upper()
        if word == "ALL":
            return set(JOB_STATES)
        full = SHORT_STATES.get(word, word)
        if full not in JOB_STATES:
            raise SlurmError(f"Invalid job state specified: {item}\n"
                             f"squeue: error: Valid job states include: {VALID_STATES}\n")
        states.add(full)
    return states


class Query:
    """One squeue command line, read once (an --iterate loop renders it again and again)."""

    def __init__(self) -> None:
        self.fmt: str | None = None
        self.name_fmt: str | None = None
        self.header = True
        self.long = False
        self.expand = False
        self.start = False
        self.steps = False
        self.show_all = False
        self.priority = False
        self.iterate = 0
        self.verbose = 0
        self.sort: str | None = None
        self.sort_error: str | None = None
        self.jobs_text: str | None = None
        self.steps_text: str | None = None
        self.ids: list[tuple[int, object]] = []
        self.step_ids: list[tuple[int, str]] = []
        self.states: set[str] | None = None
        self.states_text: str | None = None
        self.users: set[str] = set()
        self.users_text: str | None = None
        self.names: set[str] = set()
        self.names_text: str | None = None
        self.partitions: set[str] = set()
        self.partitions_text: str | None = None
        self.accounts: set[str] = set()
        self.licenses: str | None = None
        self.reservation: str | None = None
        self.nodes: set[str] | None = None
        self.nodes_text = ""
        self.warnings = ""


def dump_options(q: Query) -> str:
    """-v: the options as squeue read them, before the listing."""
    def flag(value) -> str:
        return "true" if value else "false"

    def text(value) -> str:
        return "(null)" if value is None else value

    fmt = q.name_fmt if q.name_fmt is not None and q.fmt is None else q.fmt
    rows = [("all", flag(q.show_all)), ("array", flag(q.expand)), ("federation", "false"), ("format", text(fmt)),
            ("iterate", str(q.iterate)), ("job_flag", "1" if q.jobs_text is not None else "0"),
            ("jobs", text(q.jobs_text)), ("licenses", text(q.licenses)), ("local", "false"),
            ("names", text(q.names_text)), ("nodes", q.nodes_text), ("partitions", text(q.partitions_text)),
            ("priority", flag(q.priority)), ("reservation", text(q.reservation))]
    lines = [f"{key:<11} = {value}" for key, value in rows]
    lines.append("sibling      = false")  # squeue's own alignment
    rows = [("sort", text(q.sort)), ("start_flag", "1" if q.start else "0"), ("states", text(q.states_text)),
            ("step_flag", "1" if q.steps else "0"), ("steps", text(q.steps_text)), ("users", text(q.users_text)),
            ("verbose", str(q.verbose))]
    lines += [f"{key:<11} = {value}" for key, value in rows]
    rule = "-" * 29
    return "\n".join([rule, *lines, rule, "", "", ""])


def _usage_error(message: str) -> tuple[str, str, int]:
    return recorded("squeue", "usage") or "", f"squeue: error: {message}\n", 1


def parse_squeue(argv: list[str], *, user: str = "", env=None, node_names=None, hostname: str = ""):
    """The command line (and SQUEUE_* variables) as a Query, or (stdout, stderr, exit code) when
    squeue answers without listing (help, version, a bad option)."""
    command_line = getopt("squeue", argv)
    given = {option.long for option, _ in command_line.options}
    parsed = with_environment("squeue", command_line, env or {})
    q = Query()
    for option, raw in parsed.options:
        name = option.long
        if name == "format":
            q.fmt = raw
        elif name == "Format":
            q.name_fmt = raw
        elif name == "noheader":
            q.header = False
        elif name == "long":
            q.long = True
        elif name == "array":
            q.expand = True
        elif name == "all":
            q.show_all = True
        elif name == "hide":
            q.show_all = False
        elif name == "priority":
            q.priority = True
        elif name == "start":
            q.start = True
        elif name == "sort":
            q.sort = raw
        elif name == "verbose":
            q.verbose += 1
        elif name == "iterate":
            digits = (raw or "").strip()
            digits = digits[:len(digits) - len(digits.lstrip("0123456789"))] if not digits.startswith("-") else ""
            if not digits or int(digits) <= 0:
                return "", f"squeue: error: --iterate={raw}\n\n", 1
            q.iterate = int(digits)
        elif name == "steps":
            q.steps = True
            if raw is not None:
                q.steps_text = raw
        elif name == "jobs":
            if raw is not None:
                q.jobs_text = raw
            elif q.jobs_text is None:
                q.jobs_text = ""
        elif name == "states":
            q.states_text = raw
            try:
                q.states = _parse_states(raw)
            except SlurmError as err:
                return "", f"squeue: error: {err}\n", 1  # SLURM ends this one with a blank line
        elif name == "user":
            q.users_text = raw
            q.users |= set(filter(None, raw.split(",")))
        elif name == "me":
            q.users.add(user)
            q.users_text = user
        elif name == "name":
            q.names_text = raw
            q.names |= set(raw.split(","))
        elif name == "partition":
            q.partitions_text = raw
            q.partitions |= set(raw.split(","))
        elif name == "account":
            q.accounts |= set(raw.split(","))
        elif name == "licenses":
            q.licenses = raw
        elif name == "reservation":
            q.reservation = raw
        elif name == "nodelist":
            q.nodes_text = raw
            bad = _nodes(q, raw, node_names, hostname)
            if bad is not None:
                return "", f"squeue: error: Invalid node name {bad}\n", 1
        elif name in ("help", "usage"):
            return recorded("squeue", name) or "", "", 0
        elif name == "version":
            return VERSION_LINE + "\n", "", 0
    positionals = list(parsed.positionals)
    # An optional argument given apart ("-j 12", "--steps 12.0") arrives as the first word left over.
    if positionals and q.jobs_text == "":
        q.jobs_text = positionals.pop(0)
    elif positionals and q.steps and q.steps_text is None:
        q.steps_text = positionals.pop(0)
    if positionals:
        return _usage_error(f"Unrecognized option: {positionals[0]}")
    if q.jobs_text == "":
        q.jobs_text = None
    if "format" in given and "long" in given:
        return "", ("squeue: fatal: Options -o(--format) and -l(--long) are mutually exclusive. "
                    "Please remove one and retry.\n"), 1
    if q.long:
        q.fmt = q.name_fmt = None  # -l beats SQUEUE_FORMAT
    elif q.fmt is not None:
        q.name_fmt = None  # -o (or SQUEUE_FORMAT) beats SQUEUE_FORMAT2
    for spec in split_ids(q.jobs_text) if q.jobs_text else []:
        parsed_spec = parse_job_spec(spec)
        if parsed_spec is None:
            return "", f"squeue: error: Invalid job id: {spec}\n", 1
        q.ids.append(parsed_spec)
    for spec in filter(None, (q.steps_text or "").split(",")):
        job_text, dot, step = spec.partition(".")
        parsed_spec = parse_job_spec(job_text)
        if parsed_spec is None or not dot or not step:
            return "", f"squeue: error: Invalid job_step id: {spec}{'' if dot else '.??'}\n", 1
        q.step_ids.append((parsed_spec[0], step))
    if q.sort:
        # squeue lists nothing then, but still prints the header, and fails.
        known = _sort_letters()
        bad = next((char for char in q.sort if char not in ",+-" and char not in known), None)
        if bad is not None:
            q.sort_error = f"squeue: error: Invalid sort specification: {bad}\n"
    unknown = [u for u in q.users if uid_of(u) is None]
    for name in unknown:
        q.warnings += f"squeue: error: Invalid user: {name}\n\n"
    return q


def _nodes(q: Query, raw: str, node_names, hostname: str) -> str | None:
    """-w: the named nodes (``localhost`` is this host); the first unknown one, if any."""
    # deferred: values, as in _elapsed
    from sflow.slurm.values import InvalidValue, expand_hostlist

    try:
        names = expand_hostlist(raw)
    except InvalidValue:
        names = [name for name in raw.replace("[", ",").replace("]", ",").split(",") if name]
        return names[-1] if names else raw
    known = set(node_names) if node_names is not None else None
    wanted = set()
    for name in names:
        name = hostname if name == "localhost" and hostname else name
        if known is not None and name not in known:
            return name
        wanted.add(name)
    q.nodes = wanted
    return None


# Format letters -S refuses (squeue cannot sort by them), and those it takes but does not sort by.
UNSORTABLE = frozenset("akoqrswxyAEFKRWXYZ")
SORT_IGNORED = frozenset("b")


def _sort_letters() -> set[str]:
    return {row["letter"] for row in load_table("squeue_format.toml")} - UNSORTABLE | SORT_IGNORED


def _sort_keys(spec: str) -> list[tuple[str, bool]]:
    """-S's keys in order, each (letter, descending): every letter is a key; a "-" before
    letters of an item sorts them in descending order."""
    keys = []
    for item in spec.split(","):
        descending = False
        for char in item:
            if char in "+-":
                descending = char == "-"
            else:
                keys.append((char, descending))
    return keys


# -S keys compared as numbers; the others as the text squeue shows.
NUMERIC_SORT = set("ACDHIJQUcdmp")


def _sorted(rows: list[JobRecord], spec: str, now: float, tiers: dict[str, int] | None = None) -> list[JobRecord]:
    """``tiers``: with -P, each partition's priority tier, which ranks before the job's priority."""
    table = {row["letter"]: row for row in load_table("squeue_format.toml")}
    for letter, descending in reversed(_sort_keys(spec)):
        if letter in SORT_IGNORED:
            continue
        if letter == "i":
            def key(job):
                return (job.array_job_id if job.array_job_id is not None else job.job_id,
                        -1 if job.array_task_id is None else job.array_task_id)
        elif letter in ("p", "Q") and tiers is not None:
            def key(job):
                return tiers.get(job.partition, 0), job.priority
        elif letter in ("p", "Q"):
            def key(job):
                return job.priority
        else:
            get = _getter(table[letter]["source"])
            numeric = letter in NUMERIC_SORT

            def key(job, get=get, numeric=numeric):
                value = get(job, now)
                if numeric:
                    try:
                        return (0, float(value), value)
                    except ValueError:
                        return (1, 0.0, value)
                return value
        rows = sorted(rows, key=key, reverse=descending)
    return rows


def squeue_main(argv: list[str], jobs, *, now: float | None = None, user: str = "",
                min_job_age: int = 300, pending_indices=None, running_steps=None, env=None,
                node_names=None, hostname: str = "", partition_tiers=None) -> tuple[str, str, int]:
    """squeue over ``jobs``: a list of JobRecords, or a loader ``jobs(job_ids=..., states=...)``;
    ``running_steps(jobs)``: the steps running in those jobs, for ``--steps``."""
    q = parse_squeue(argv, user=user, env=env, node_names=node_names, hostname=hostname)
    if isinstance(q, tuple):
        return q
    out, err, code = render_squeue(q, jobs, now=now, min_job_age=min_job_age, pending_indices=pending_indices,
                                   running_steps=running_steps, partition_tiers=partition_tiers)
    return (dump_options(q) if q.verbose else "") + out, q.warnings + err, code


def render_squeue(q: Query, jobs, *, now: float | None = None, min_job_age: int = 300, pending_indices=None,
                  running_steps=None, partition_tiers=None) -> tuple[str, str, int]:
    """One listing of a parsed command line: what each --iterate round prints; ``partition_tiers``:
    each partition's priority tier, for -P's sort by priority."""
    now = time.time() if now is None else now

    def recent(job: JobRecord) -> bool:
        return job.state not in FINISHED_STATES or (job.end_time or 0) >= now - min_job_age

    states = q.states
    if q.start:
        states = {"PENDING"}  # --start: when the pending jobs are expected to start
    elif states is None:
        states = ACTIVE  # naming jobs does not widen the states shown
    ids = q.ids
    if callable(jobs):  # a loader: let the database do the coarse filtering (10,000 jobs queued...)
        # Named jobs are loaded in every state: one that exists but is filtered out is no error.
        jobs = jobs(job_ids=[job_id for job_id, _ in ids] or None, states=None if ids else states)
    visible = [j for j in jobs if recent(j)]
    head = ""
    if q.header and (q.long or q.iterate or q.verbose):
        head = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(now)) + "\n"
    if q.verbose:
        loaded = [j for j in visible if not q.users or j.user in q.users or str(j.uid) in q.users]
        head += f"last_update_time={int(now) if loaded else 0} records={len(loaded)}\n"
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
    if q.steps:
        out, warnings = _steps_listing(visible, q.fmt, q.header, now, running_steps, q.step_ids)
        return head + out, warnings, 0
    rows = [j for j in visible if j.state in states
            and (not q.users or j.user in q.users or str(j.uid) in q.users) and (not q.names or j.name in q.names)
            and (not q.partitions or not q.partitions.isdisjoint(j.partition.split(",")))
            and (not q.accounts or j.account in q.accounts) and (q.nodes is None or _on_nodes(j, q.nodes))]
    if q.priority:
        rows = [row for row in _per_partition(rows) if not q.partitions or row.partition in q.partitions]
    # In the default order an array's tasks stay together, in index order, where their record
    # sorts: they are expanded while rendered, one short format each. Other orders sort tasks.
    expand_late = q.expand and pending_indices is not None and not q.sort
    if q.expand and pending_indices is not None and not expand_late:
        rows = _expand_arrays(rows, pending_indices)
    rows.sort(key=_default_order)
    if q.sort_error:
        rows = []
    elif q.sort:
        rows = _sorted(rows, q.sort, now, (partition_tiers or {}) if q.priority else None)
    table = {row["letter"]: row for row in load_table("squeue_format.toml")}
    by_name = {row["name"].lower(): row for row in table.values()}
    warnings = ""
    if q.name_fmt:
        fields = parse_name_format(q.name_fmt)
        prefix = ""
        unknown = [f for f in fields if f.key.lower() not in by_name]
        # SLURM names each unknown field and lists the rest (an empty line if none is left).
        warnings = "".join(f"squeue: error: Invalid job format specification: {f.key}\n" for f in unknown)
        fields = [f for f in fields if f not in unknown]
        specs = [by_name[f.key.lower()] for f in fields]
    else:
        default = START_FORMAT if q.start else LONG_FORMAT if q.long else DEFAULT_FORMAT
        prefix, fields, bad = parse_percent_format(q.fmt or default, table)
        warnings = "".join(f"squeue: error: Invalid job format specification: {key}\n" for key in bad)
        specs = [table[field.key] for field in fields]
    getters = [_getter(spec["source"]) for spec in specs]
    headers = [spec["header"] for spec in specs] if q.header else None
    whole = frozenset() if q.name_fmt else WHOLE_TIMES
    if expand_late:
        out = _render_expanding(prefix, fields, specs, rows, now, pending_indices, headers, whole)
    else:
        out = render_rows(prefix, fields, [[get(job, now) for get in getters] for job in rows], headers, whole)
    if q.sort_error:
        return head + out, warnings + q.sort_error, 1
    warnings += "".join(f"squeue: Invalid sort specification: {letter}\n"
                        for letter, _ in _sort_keys(q.sort or "") if letter in SORT_IGNORED)
    return head + out, warnings, 0


def _render_expanding(prefix: str, fields: list[Field], specs: list[dict], jobs: list[JobRecord], now: float,
                      pending_indices, headers: list[str] | None, whole: frozenset) -> str:
    """The rows of ``jobs`` with each pending array's record as one row per pending index, as
    render_rows would write them after ``_expand_arrays``."""
    getters = [_getter(spec["source"]) for spec in specs]
    row = partial_template(prefix, fields, [None] * len(fields), whole).format
    lines = [partial_template(prefix, fields, [None] * len(fields)).format(*headers)] if headers is not None else []
    for job in jobs:
        if job.array_job_id is None or job.array_task_id is not None or not job.array_task_str:
            lines.append(row(*[get(job, now) for get in getters]))
            continue
        varying = [TASK_GETTERS[spec["source"]] for spec in specs if spec["source"] in TASK_GETTERS]
        fixed = [None if spec["source"] in TASK_GETTERS else get(job, now) for spec, get in zip(specs, getters)]
        task_row = partial_template(prefix, fields, fixed, whole).format
        indices = pending_indices(job)
        if varying == [TASK_GETTERS["job_id_display"]]:
            rows = _task_rows(task_row, job.array_job_id, indices)
            if rows is not None:
                lines.append(rows)
                continue
        if len(varying) == 1:
            cell = varying[0]
            lines += [task_row(cell(job, index)) for index in indices]
        else:
            lines += [task_row(*[cell(job, index) for cell in varying]) for index in indices]
    return "\n".join(lines) + ("\n" if lines else "")


# A stand-in for a task's id while its row's template is probed: no cell of a job holds it.
_PROBE = "\0"


def _task_rows(task_row, array_job_id: int, indices) -> str | None:
    """The rows of an array's pending tasks that differ in their id only, without their last newline;
    None if an id would not show whole. A cell pads and cuts alike every id of one length: the ids of
    each length are joined into their rows at once, not formatted one by one."""
    prefix = f"{array_job_id}_"
    blocks = []
    for length, ids in groupby(map(str, indices), len):
        width = len(prefix) + length
        before, probe, after = task_row(_PROBE * width).partition(_PROBE * width)
        if not probe or _PROBE in before or _PROBE in after or not squeue_id_whole(width):
            return None
        head = before + prefix
        blocks.append(head + (after + "\n" + head).join(ids) + after)
    return "\n".join(blocks) if blocks else None


def _per_partition(jobs: list[JobRecord]) -> list[JobRecord]:
    """-P: a pending job submitted to several partitions, once in each of them."""
    out = []
    for job in jobs:
        if job.state == "PENDING" and "," in job.partition:
            for name in filter(None, job.partition.split(",")):
                row = object.__new__(JobRecord)  # a plain copy; __init__'s checks already ran once
                row.__dict__ = {**job.__dict__, "partition": name}
                out.append(row)
        else:
            out.append(job)
    return out


def _on_nodes(job: JobRecord, nodes: set[str]) -> bool:
    if not job.nodelist:
        return False
    # deferred: values, as in _elapsed
    from sflow.slurm.values import expand_hostlist

    return not nodes.isdisjoint(expand_hostlist(job.nodelist))


__all__ = ["squeue_main", "job_id_display", "DEFAULT_FORMAT", "Field"]
