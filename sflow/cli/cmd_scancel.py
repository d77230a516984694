"""``scancel``: cancel or signal jobs, with scancel's own messages and exit codes."""

from __future__ import annotations

import sys

from sflow.errors import SlurmError

CANCELLABLE_STATES = ("PENDING", "RUNNING", "SUSPENDED")


def main(argv: list[str]) -> int:
    from sflow.cli.common import call, emit, whoami
    from sflow.queue.select import parse_job_spec
    from sflow.slurm.getopt import getopt
    from sflow.slurm.values import signal_number

    parsed = getopt("scancel", argv)
    msg: dict = {"job_specs": [], "names": [], "users": [], "states": [], "partitions": []}
    user, uid = whoami()
    msg["uid"] = uid
    for option, raw in parsed.options:
        name = option.long
        if name in ("name", "jobname"):
            msg["names"] += raw.split(",")
        elif name == "user":
            msg["users"] += raw.split(",")
        elif name == "me":
            msg["users"].append(user)
        elif name == "state":
            for state in raw.split(","):
                full = {"PD": "PENDING", "R": "RUNNING", "S": "SUSPENDED"}.get(state.upper(), state.upper())
                if full not in CANCELLABLE_STATES:
                    print(f"Invalid job state specified: {state}\n"
                          "Valid job states are PENDING, RUNNING, and SUSPENDED", file=sys.stderr)
                    return 1
                msg["states"].append(full)
        elif name == "partition":
            msg["partitions"] += raw.split(",")
        elif name == "signal":
            number = signal_number(raw)
            if number is None:
                raise SlurmError(f"Unknown job signal: {raw}")
            msg["signal"] = number
        elif name == "batch":
            msg["batch"] = True
        elif name in ("help", "usage"):
            from sflow.slurm.help import render_help

            print(render_help("scancel"))
            return 0
        elif name == "version":
            from sflow.slurm.help import VERSION_LINE

            print(VERSION_LINE)
            return 0
    for spec in parsed.positionals:
        for piece in spec.split(","):
            if parse_job_spec(piece) is None:
                raise SlurmError(f"Invalid job id {piece}")
            msg["job_specs"].append(piece)
    if not msg["job_specs"] and not (msg["names"] or msg["users"] or msg["states"] or msg["partitions"]):
        raise SlurmError("No job identification provided")
    if not msg["job_specs"] and not msg["users"]:
        msg["users"] = [user]  # filters alone act on your own jobs
    return emit(call("cancel", **msg))
