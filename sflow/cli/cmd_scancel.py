"""``scancel``: cancel or signal jobs, array tasks and steps, with scancel's messages and exit codes.

What SLURM 22.05's scancel does, and sflow with it:
- ids (``12``, ``12_3``, ``12_[1-3]``, ``12.0``, comma lists) and/or filters
  (``-n``, ``-u``, ``--me``, ``-t``, ``-p``, ``-A``, ``-q``, ``-w``); filters alone act on
  every job that passes them all;
- a plain cancel of a job that is unknown or already over says nothing and
  exits 0 (``-v`` shows the error); with ``--signal`` or ``--batch`` it is an error;
- ``-s`` signals the job's steps, ``-b`` the batch shell, ``-f`` everything;
- ``-i`` asks before each job, ``-v`` tells what it does, ``-Q`` says nothing.
"""

from __future__ import annotations

import os
import sys

from sflow.cli.common import call, reader, whoami
from sflow.errors import SlurmError
from sflow.queue.select import MAX_RANGE, RangeError, parse_target, passes, split_ids, unreadable
from sflow.records import FINISHED_STATES
from sflow.slurm.getopt import getopt
from sflow.slurm.help import VERSION_LINE, recorded
from sflow.slurm.options import table
from sflow.slurm.values import InvalidValue, expand_hostlist, signal_number
from sflow.users import uid_of

STATES = {"PD": "PENDING", "PENDING": "PENDING", "R": "RUNNING", "RUNNING": "RUNNING",
          "S": "SUSPENDED", "SUSPENDED": "SUSPENDED"}
# scancel's SCANCEL_* input variables (command line wins).
ENVIRONMENT = {
    "SCANCEL_ACCOUNT": "account", "SCANCEL_BATCH": "batch", "SCANCEL_FULL": "full",
    "SCANCEL_INTERACTIVE": "interactive", "SCANCEL_NAME": "name", "SCANCEL_PARTITION": "partition",
    "SCANCEL_QOS": "qos", "SCANCEL_STATE": "state", "SCANCEL_USER": "user", "SCANCEL_VERBOSE": "verbose",
}
FILTER_LABELS = (("names", "job_name"), ("users", "user_name"), ("states", "job_state"),
                 ("partitions", "partition"), ("accounts", "account"), ("qos", "qos"), ("nodelist", "nodelist"))


def _options(argv: list[str], env) -> tuple[list[tuple[str, str | None]], list[str]]:
    parsed = getopt("scancel", argv)
    given = {option.long for option, _ in parsed.options}
    options: list[tuple[str, str | None]] = []
    known = table("scancel")
    for name, long in ENVIRONMENT.items():
        option = known.by_long(long) or known.by_long("jobname" if long == "name" else long)
        if name in env and option is not None and option.long not in given and long not in given:
            options.append((long, None if option.arg == "none" else env[name]))
    options += [(option.long, raw) for option, raw in parsed.options]
    return options, parsed.positionals


def main(argv: list[str]) -> int:
    options, positionals = _options(argv, os.environ)
    filters: dict[str, list[str]] = {}
    signum = None
    batch = full = interactive = quiet = False
    verbose = 0
    me, my_uid = whoami()
    for name, raw in options:
        if name in ("name", "jobname"):
            filters.setdefault("names", []).extend(raw.split(","))
        elif name == "user":
            for user in raw.split(","):
                if uid_of(user) is None:
                    raise SlurmError(f"Invalid user name: {user}")
                filters.setdefault("users", []).append(user)
        elif name == "me":
            filters.setdefault("users", []).append(me)
        elif name == "state":
            for state in raw.split(","):
                full_name = STATES.get(state.strip().upper())
                if full_name is None:
                    print(f"Invalid job state specified: {state}\n"
                          "Valid job states are PENDING, RUNNING, and SUSPENDED", file=sys.stderr)
                    return 1
                filters.setdefault("states", []).append(full_name)
        elif name == "partition":
            # One name, compared with the job's whole partition: a pending job given several
            # keeps the list ("a,b"), which only that same list matches.
            filters["partitions"] = [raw]
        elif name == "account":
            filters.setdefault("accounts", []).extend(raw.split(","))
        elif name == "qos":
            filters.setdefault("qos", []).extend(raw.split(","))
        elif name == "nodelist":
            text = raw
            if "/" in raw:  # a file of host names
                try:
                    with open(raw) as handle:
                        text = ",".join(handle.read().split())
                except OSError:
                    raise SlurmError(f"Invalid node list: {raw}") from None
            try:
                filters.setdefault("nodelist", []).extend(expand_hostlist(text))
            except InvalidValue:
                raise SlurmError(f"Invalid node list: {raw}") from None
        elif name == "signal":
            number = signal_number(raw)
            if not number:
                print(f"Unknown job signal: {raw}", file=sys.stderr)
                return 1
            signum = number
        elif name == "batch":
            batch = True
        elif name == "full":
            full = True
        elif name == "interactive":
            interactive = True
        elif name == "quiet":
            quiet = True
        elif name == "verbose":
            verbose += 1
        elif name in ("help", "usage"):
            sys.stdout.write(recorded("scancel", name))
            return 0
        elif name == "version":
            print(VERSION_LINE)
            return 0
    if quiet:
        verbose = 0
    targets = []
    for spec in positionals:
        for piece in split_ids(spec):
            if not piece or unreadable(piece):
                continue  # a range past 64 bits reads as no id at all
            try:
                parsed = parse_target(piece, max_range=MAX_RANGE)
            except RangeError as err:
                print(f"scancel: error: {err}", file=sys.stderr)
                parsed = None
            if parsed is None or parsed[0] == 0:  # no job has id 0
                raise SlurmError(f"Invalid job id {piece}")
            targets.append(piece)
    if not targets and not filters:
        raise SlurmError("No job identification provided")
    if interactive:
        targets = _confirm(targets, filters)
        if not targets:
            return 0
        filters = {}
    reply = call("cancel", targets=targets, filters=filters, signal=signum, batch=batch, full=full, uid=my_uid)
    if not reply.get("ok"):
        sys.stderr.write(reply.get("stderr", ""))
        return reply.get("exit_code", 1)
    return _report(reply, signum, batch, full, verbose, quiet, filters)


def _report(reply: dict, signum, batch: bool, full: bool, verbose: int, quiet: bool, filters: dict) -> int:
    signalling = signum is not None or batch
    number = reply.get("signal")
    code = 0
    results = reply.get("results") or []
    for result in results:
        target, error = result["target"], result.get("error")
        if verbose:
            if not signalling:
                print(f"scancel: Terminating job {target}", file=sys.stderr)
            elif batch and not full:
                print(f"scancel: Signal {number} to batch job {target}", file=sys.stderr)
            else:
                print(f"scancel: Signal {number} to job {target}", file=sys.stderr)
        if error is None:
            continue
        what = "job step id" if result.get("step") else "job id"
        quiet_miss = not signalling and not result.get("step") and result.get("exit_code", 1) <= 1 \
            and error in ("Invalid job id specified", "Job/step already completing or completed")
        if quiet_miss:
            # A plain cancel of a job gone or never known: scancel keeps quiet unless asked.
            if verbose:
                print(f"scancel: error: Kill job error on {what} {target}: {error}", file=sys.stderr)
            continue
        if not quiet:
            print(f"scancel: error: Kill job error on {what} {target}: {error}", file=sys.stderr)
        code = max(code, result.get("exit_code", 1))
    if not results and filters and verbose:
        shown = " ".join(f"{label}={','.join(filters[key])}" for key, label in FILTER_LABELS if filters.get(key))
        print(f"scancel: error: No active jobs match ALL job filters, including: {shown} ", file=sys.stderr)
    return code


def _confirm(targets: list[str], filters: dict) -> list[str]:
    """``-i``: ask about each job, as ``Cancel job_id=12 name=x partition=debug [y/n]? ``."""
    jobs = [j for j in reader().jobs() if j.state not in FINISHED_STATES]
    chosen: list[tuple[str, object]] = []
    if targets:
        for text in targets:
            job_id, indices, step = parse_target(text)
            for job in jobs:
                ours = job.job_id == job_id or job.array_job_id == job_id
                if indices is not None:
                    ours = job.array_job_id == job_id and (job.array_task_id in indices or job.array_task_id is None)
                if ours and passes(job, filters):
                    chosen.append((text, job))
                    break
    else:
        for job in jobs:
            if passes(job, filters):
                shown = str(job.job_id) if job.array_job_id is None else (
                    f"{job.array_job_id}_{job.array_task_id}" if job.array_task_id is not None
                    else f"{job.array_job_id}_[{job.array_task_str}]")
                chosen.append((shown, job))
    confirmed = []
    for text, job in chosen:
        kind = "step_id" if "." in text else "job_id"  # scancel -i JOB.STEP asks about the step
        sys.stdout.write(f"Cancel {kind}={text} name={job.name} partition={job.partition} [y/n]? ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer.startswith("y"):
            confirmed.append(text)
    return confirmed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

__all__ = ["main", "SlurmError"]
