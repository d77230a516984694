"""``sacct`` from JobRecords and StepRecords: rows, fields, widths and parsable forms."""

from __future__ import annotations

import time
from datetime import datetime
from operator import itemgetter

from sflow.errors import UsageError
from sflow.queue.select import parse_job_spec, split_ids
from sflow.records import INFINITE, JOB_FIELDS, JOB_STATES, JobRecord, StepRecord, job_row
from sflow.slurm.display import format_memory_mb
from sflow.slurm.getopt import getopt
from sflow.slurm.help import VERSION_LINE, recorded
from sflow.slurm.values import InvalidTime, format_elapsed_sacct, parse_time
from sflow.views.costs import billed
from sflow.views.fmt import (Memo, field_columns, group_name, iso_time, iso_times, job_id_text, load_table,
                             render_value_columns, step_order)
from sflow.views.step_usage import STEP_USAGE, job_cpu, usage_value

DEFAULT_FIELDS = "JobID,JobName,Partition,Account,AllocCPUS,State,ExitCode"
SHORT_STATES = {v: k for k, v in JOB_STATES.items()}


# Where each of a job's values stands in its row (``records.JOB_FIELDS``).
_AT = {name: index for index, name in enumerate(JOB_FIELDS)}
(JOB_ID, NAME, USER, UID, GID, PARTITION, STATE, REASON, SUBMIT, WORK_DIR, ARRAY_JOB_ID, ARRAY_TASK_ID,
 ARRAY_TASK_STR, ELIGIBLE, START, END, TIME_LIMIT, PRIORITY, NUM_NODES, NUM_CPUS, MIN_MEMORY_MB, NODELIST,
 EXIT_CODE, EXIT_SIGNAL, ACCOUNT, QOS, RESTART_COUNT, COMMENT, DERIVED_EXIT_CODE, CANCELLED_BY, COST_CENTS,
 LIMIT_PRICE) = (_AT[name] for name in (
    "job_id", "name", "user", "uid", "gid", "partition", "state", "reason", "submit_time", "work_dir",
    "array_job_id", "array_task_id", "array_task_str", "eligible_time", "start_time", "end_time", "time_limit",
    "priority", "num_nodes", "num_cpus", "min_memory_mb", "nodelist", "exit_code", "exit_signal", "account", "qos",
    "restart_count", "comment", "derived_exit_code", "cancelled_by", "cost_cents", "limit_price"))


def _elapsed(start: float | None, end: float | None, now: float) -> int:
    if start is None:
        return 0
    return int((end or now) - start)


def _job_id(job: tuple) -> str:
    return job_id_text(job[JOB_ID], job[ARRAY_JOB_ID], job[ARRAY_TASK_ID], job[ARRAY_TASK_STR])


def _job_ids(jobs, now, steps) -> list[str]:
    return [str(job[JOB_ID]) if job[ARRAY_JOB_ID] is None else _job_id(job) for job in jobs]


def _job_states(jobs, now, steps) -> list[str]:
    return [state if state != "CANCELLED" and state != "PENDING" else
            f"CANCELLED by {job[CANCELLED_BY]}" if state == "CANCELLED" and job[CANCELLED_BY] is not None else
            "REQUEUED" if state == "PENDING" and job[RESTART_COUNT] else state  # accounting holds the requeued run
            for job in jobs for state in (job[STATE],)]


def _job_seconds(jobs, now) -> list[int]:
    """Each job's elapsed seconds (none while pending)."""
    return [0 if job[START] is None or job[STATE] == "PENDING" else int((job[END] or now) - job[START]) for job in jobs]


def _durations(seconds) -> list[str]:
    return list(map(Memo(format_elapsed_sacct).__getitem__, seconds))


def _texts(values) -> list[str]:
    return list(map(Memo(str).__getitem__, values))


def _job_cpu(which: str):
    def values(jobs, now, steps):
        from sflow.exec.usage import format_cpu  # deferred: ~0.45 ms at sacct's start; usage fields only

        shown = []
        for job in jobs:
            user, system = job_cpu(list(steps.get(job[JOB_ID], ())))
            shown.append(format_cpu({"TotalCPU": user + system, "UserCPU": user, "SystemCPU": system}[which]))
        return shown

    return values


def _limit(minutes: int | None) -> str:
    return "UNLIMITED" if minutes in (None, INFINITE) else format_elapsed_sacct(minutes * 60)


def _column(index: int):
    return lambda jobs, now, steps: [job[index] for job in jobs]


def _same(text: str):
    return lambda jobs, now, steps: [text] * len(jobs)


def _tres(job: tuple) -> str:
    return f"billing={job[NUM_CPUS]},cpu={job[NUM_CPUS]},node={job[NUM_NODES]}"


# One function per field, over the jobs whose lines show (rows of JOB_FIELDS), ``now`` and their
# steps by job id -> that column's texts: a listing of 9,000 jobs makes each column in one pass,
# each repeated value (a state, a second, a duration) formatted once.
JOB_COLUMNS = {
    "JobID": _job_ids,
    "JobIDRaw": lambda jobs, now, steps: [str(job[JOB_ID]) for job in jobs],
    "JobName": _column(NAME),
    "State": _job_states,
    # A cancelled job's accounting closed when it was cancelled, before its shell died.
    "ExitCode": lambda jobs, now, steps: ["0:0" if job[STATE] == "CANCELLED" else f"{job[EXIT_CODE]}:{job[EXIT_SIGNAL]}"
                                          for job in jobs],
    "DerivedExitCode": lambda jobs, now, steps: [f"{job[DERIVED_EXIT_CODE]}:0" for job in jobs],
    "AllocCPUS": lambda jobs, now, steps: _texts(job[NUM_CPUS] if job[STATE] != "PENDING" or not job[RESTART_COUNT]
                                                 else 0 for job in jobs),
    "ReqCPUS": lambda jobs, now, steps: _texts(job[NUM_CPUS] for job in jobs),
    "NNodes": lambda jobs, now, steps: _texts(job[NUM_NODES] for job in jobs),
    "Elapsed": lambda jobs, now, steps: _durations(_job_seconds(jobs, now)),
    "ElapsedRaw": lambda jobs, now, steps: _texts(_job_seconds(jobs, now)),
    "CPUTime": lambda jobs, now, steps: _durations(seconds * job[NUM_CPUS]
                                                   for seconds, job in zip(_job_seconds(jobs, now), jobs)),
    "CPUTimeRAW": lambda jobs, now, steps: [str(seconds * job[NUM_CPUS])
                                            for seconds, job in zip(_job_seconds(jobs, now), jobs)],
    "Start": lambda jobs, now, steps: iso_times(job[START] if job[STATE] != "PENDING" else None for job in jobs),
    "End": lambda jobs, now, steps: iso_times(job[END] for job in jobs),
    # Unknown while held or waiting on a dependency
    "Eligible": lambda jobs, now, steps: iso_times(job[ELIGIBLE] if job[STATE] == "PENDING" else job[SUBMIT]
                                                   for job in jobs),
    "Submit": lambda jobs, now, steps: iso_times(job[SUBMIT] for job in jobs),
    "NodeList": lambda jobs, now, steps: [job[NODELIST] or "None assigned" for job in jobs],
    "User": _column(USER),
    "UID": lambda jobs, now, steps: _texts(job[UID] for job in jobs),
    "Group": lambda jobs, now, steps: list(map(Memo(group_name).__getitem__, (job[GID] for job in jobs))),
    "GID": lambda jobs, now, steps: _texts(job[GID] for job in jobs),
    "WorkDir": _column(WORK_DIR),
    "Timelimit": lambda jobs, now, steps: list(map(Memo(_limit).__getitem__, (job[TIME_LIMIT] for job in jobs))),
    "TimelimitRaw": lambda jobs, now, steps: ["UNLIMITED" if job[TIME_LIMIT] in (None, INFINITE)
                                              else str(job[TIME_LIMIT]) for job in jobs],
    "ReqMem": lambda jobs, now, steps: [format_memory_mb(job[MIN_MEMORY_MB]) if job[MIN_MEMORY_MB] else "0"
                                        for job in jobs],
    "Partition": _column(PARTITION),
    "Account": _column(ACCOUNT),
    "Comment": _column(COMMENT),
    "Reason": _column(REASON),
    "Priority": lambda jobs, now, steps: [str(job[PRIORITY]) for job in jobs],
    "QOS": _column(QOS),
    "AllocTRES": lambda jobs, now, steps: [_tres(job) if job[STATE] != "PENDING" else "" for job in jobs],
    "ReqTRES": lambda jobs, now, steps: [_tres(job) for job in jobs],
    "NTasks": _same(""),
    "Cost": lambda jobs, now, steps: [billed(job[COST_CENTS]) if job[COST_CENTS] is not None else "" for job in jobs],
    "LimitPrice": lambda jobs, now, steps: [job[LIMIT_PRICE] or "" for job in jobs],
    "Suspended": _same("00:00:00"),
    "TotalCPU": _job_cpu("TotalCPU"),
    "UserCPU": _job_cpu("UserCPU"),
    "SystemCPU": _job_cpu("SystemCPU"),
}
JOB_COLUMNS.update(NCPUS=JOB_COLUMNS["AllocCPUS"], AllocNodes=JOB_COLUMNS["NNodes"], ReqNodes=JOB_COLUMNS["NNodes"])


_nothing = _same("")


def _step_state(step: StepRecord) -> str:
    if step.state == "CANCELLED" and step.extra.get("cancelled_by") is not None:
        return f"CANCELLED by {step.extra['cancelled_by']}"
    return step.state


def _step_elapsed(step: StepRecord, now: float) -> int:
    return _elapsed(step.start_time, step.end_time, now)


def _step_usage(name: str):
    return lambda step, job, now: usage_value(name, step.extra.get("usage"), step.num_tasks)


# A step's line: (step, its job's row, now) -> text (steps are few beside a listing's jobs).
STEP_VALUES = {
    "JobID": lambda step, job, now: f"{_job_id(job)}.{step.step_id}",
    "JobIDRaw": lambda step, job, now: f"{job[JOB_ID]}.{step.step_id}",
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
    "Account": lambda step, job, now: job[ACCOUNT],
    "CPUTime": lambda step, job, now: format_elapsed_sacct(_step_elapsed(step, now) * step.num_cpus),
    "CPUTimeRAW": lambda step, job, now: str(_step_elapsed(step, now) * step.num_cpus),
    "Suspended": lambda step, job, now: "00:00:00",
    **{name: _step_usage(name) for name in STEP_USAGE},
}
STEP_VALUES.update(NCPUS=STEP_VALUES["AllocCPUS"], ReqCPUS=STEP_VALUES["AllocCPUS"], AllocNodes=STEP_VALUES["NNodes"],
                   ReqNodes=STEP_VALUES["NNodes"], Submit=STEP_VALUES["Start"], Eligible=STEP_VALUES["Start"])


def _no_step_value(step, job, now) -> str:
    return ""


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


def _in_state(job: tuple, states: set[str], since: float, until: float) -> bool:
    """Whether ``job`` was in one of ``states`` at some moment from ``since`` to ``until``: pending
    from eligible to start (never, while its eligibility is unknown), running from start to end,
    and in an ended state at its end."""
    state, end, eligible = job[STATE], job[END], job[ELIGIBLE]
    if eligible is None and job[NODELIST]:  # a job that ran was eligible (a store that missed saying when)
        eligible = job[SUBMIT]
    if "PENDING" in states and eligible is not None and eligible <= until:
        # Ended while pending: no node ever held, pending until its end.
        left = job[START] if job[NODELIST] and job[START] is not None else end
        if state == "PENDING" or (left or until) >= since:
            return True
    if "RUNNING" in states and job[NODELIST] and job[START] is not None and state != "PENDING":
        if job[START] <= until and (end or until) >= since:
            return True
    if state == "PENDING" and job[RESTART_COUNT] > 0:  # a requeued job's record, waiting again
        return "PENDING" in states
    if state in states and state not in ("PENDING", "RUNNING"):
        return not end or since <= end <= until  # still so (completing, suspended), or ended so in the window
    return False


def _as_stored(value: str) -> str:
    return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")


def sacct_main(argv: list[str], jobs, steps, *, now: float | None = None,
               user: str = "", env: dict | None = None) -> tuple[str, str, int]:
    """sacct over ``jobs`` and ``steps``: lists of records, or loaders: ``jobs(ids=...)`` (those
    jobs and their arrays' tasks) or ``jobs(ended_since=...)`` (at least every job not ended
    before), each job as its row of ``records.JOB_FIELDS``; and ``steps(job_ids, running, usage)``:
    those jobs' steps, with their measured usage if ``usage`` (``running``: the records of those
    still running)."""
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
    # sacct(1), DEFAULT TIME WINDOW: with -s, -E defaults to -S (and both to now); else to now.
    until = end if end is not None else start if states and start is not None else now
    if start is not None and start > until:
        return "", (f"sacct: error: Start time ({iso_time(start)}) requested is after end time "
                    f"({iso_time(until)}).\n"), 1
    table = {row["name"].lower(): row for row in load_table("sacct_fields.toml")}
    columns, unknown = field_columns(fields_text, table)
    if unknown is not None:
        return "", f"sacct: error: Invalid field requested: \"{unknown}\"\n", 1
    # Named steps: job id -> the steps asked for, or None for the whole job.
    only_steps: dict[int, set[str] | None] = {}
    midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    # -S defaults to the epoch with -j, to now with -s, else to midnight.
    since = start if start is not None else 0.0 if ids else now if states else midnight
    if callable(jobs):  # a loader: the store picks the named jobs, or those that ended in the window
        jobs = jobs(ids=[job_id for job_id, _, _ in ids]) if ids else jobs(ended_since=since)
    else:
        jobs = [job_row(job) for job in jobs]
    if ids:
        chosen = []
        for job_id, indices, step in ids:
            for job in jobs:
                if (job[JOB_ID] == job_id or job[ARRAY_JOB_ID] == job_id) and (
                        indices is None or job[ARRAY_TASK_ID] in indices):
                    if job not in chosen:
                        chosen.append(job)
                        only_steps[job[JOB_ID]] = set()
                    if step is None or only_steps[job[JOB_ID]] is None:
                        only_steps[job[JOB_ID]] = None
                    else:
                        only_steps[job[JOB_ID]].add(step)
        users = None if users == {user} else users
    chosen = [job for job in (chosen if ids else jobs)
              if (users is None or job[USER] in users) and (not names or job[NAME] in names)
              and (not partitions or job[PARTITION] in partitions)]
    if states:  # jobs in one of those states at some moment of the window, named or not
        chosen = [job for job in chosen if _in_state(job, states, since, until)]
    elif not ids:
        # A window holds the jobs eligible before its end and not ended before its start: a job held,
        # waiting on a dependency or on a --begin still ahead, and cancelled so, is in none (-j names
        # it all the same). A requeued job's record waits in every window since its requeue.
        chosen = [job for job in chosen if (job[END] or until) >= since and (
            job[ELIGIBLE] <= until if job[ELIGIBLE] is not None
            else job[SUBMIT] <= until and (job[NODELIST] or job[STATE] == "PENDING" and job[RESTART_COUNT] > 0))]
    if any(job[ARRAY_JOB_ID] is not None for job in chosen):  # an array's tasks by index, after the array
        chosen.sort(key=lambda job: (job[ARRAY_JOB_ID] or job[JOB_ID],
                                     job[ARRAY_TASK_ID] if job[ARRAY_TASK_ID] is not None else -1))
    else:
        chosen.sort(key=itemgetter(JOB_ID))
    names_shown = [name for name, _, _ in columns]
    usage = any(name in STEP_USAGE for name in names_shown)
    if callable(steps):  # a loader: only the chosen jobs' steps, and only when a line needs them
        wanted = not no_steps or usage or any(only_steps.values())
        running = [JobRecord(*job) for job in chosen if job[STATE] in ("RUNNING", "COMPLETING")]
        steps = steps([job[JOB_ID] for job in chosen], running, usage) if wanted else []
    steps_by_job: dict[int, list[StepRecord]] = {}
    for step in steps:
        steps_by_job.setdefault(step.job_id, []).append(step)
    # The jobs' own lines, a column at a time; then each job's step lines after its own.
    shown = chosen if not only_steps else [job for job in chosen if only_steps[job[JOB_ID]] is None]
    values = [JOB_COLUMNS.get(name, _nothing)(shown, now, steps_by_job) for name in names_shown]
    count = len(shown)
    if steps_by_job and (not no_steps or any(only_steps.values())):
        step_getters = [STEP_VALUES.get(name, _no_step_value) for name in names_shown]
        job_lines = iter(zip(*values)) if values else iter([()] * count)
        rows: list = []
        for job in chosen:
            steps_wanted = only_steps.get(job[JOB_ID])
            if steps_wanted is None:
                rows.append(next(job_lines))
            job_steps = steps_by_job.get(job[JOB_ID])
            if job_steps and (not no_steps or steps_wanted):
                for step in sorted(job_steps, key=step_order):
                    if steps_wanted is None or step.step_id in steps_wanted:
                        rows.append([get(step, job, now) for get in step_getters])
        values, count = ([list(column) for column in zip(*rows)] if values else []), len(rows)
    out = render_value_columns(columns, values, count, header=header, delimiter=delimiter, trailing=trailing)
    if not out.isascii():
        # The accounting database keeps text as UTF-8: sacct shows "?" for each byte that was not.
        values = [[value if value.isascii() else _as_stored(value) for value in column] for column in values]
        out = render_value_columns(columns, values, count, header=header, delimiter=delimiter, trailing=trailing)
    return out, "", 0
