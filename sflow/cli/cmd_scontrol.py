"""``scontrol``: show jobs, nodes, partitions, configuration and hostlists; hold, release, requeue, update."""

from __future__ import annotations

import sys

from sflow.errors import SlurmError


def _show(args: list[str], one_liner: bool) -> int:
    from sflow.cli.common import home
    from sflow.conf import load_cluster
    from sflow.slurm.values import InvalidValue, compress_hostlist, expand_hostlist

    if not args:
        raise SlurmError("too few arguments for keyword:show")
    entity, rest = args[0].lower(), args[1:]
    if entity in ("hostnames", "hostname"):
        import os

        text = rest[0] if rest else os.environ.get("SLURM_JOB_NODELIST", "")
        try:
            names = expand_hostlist(text)
        except InvalidValue:
            print(f"scontrol: error: Invalid hostlist: {text}", file=sys.stderr)
            return 1
        sys.stdout.write("".join(f"{n}\n" for n in names))
        return 0
    if entity == "hostlist":
        try:
            print(compress_hostlist(expand_hostlist(rest[0] if rest else "")))
        except InvalidValue:
            print(f"scontrol: error: Invalid hostlist: {rest[0] if rest else ''}", file=sys.stderr)
            return 1
        return 0
    if entity in ("job", "jobs", "jobid"):
        from sflow.cli.common import read_jobs
        from sflow.views.job_show import show_job

        jobs = read_jobs()
        if rest:
            spec = rest[0]
            base = spec.split("_")[0]
            if not base.isdigit():
                print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
                return 1
            jobs = [j for j in jobs if j.job_id == int(base) or j.array_job_id == int(base)]
            if "_" in spec:
                jobs = [j for j in jobs if str(j.array_task_id) == spec.split("_", 1)[1]]
            if not jobs:
                print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
                return 1
        elif not jobs:
            print("No jobs in the system")
            return 0
        sys.stdout.write(show_job(jobs, one_liner=one_liner))
        return 0
    cluster = load_cluster()
    if entity in ("node", "nodes"):
        from sflow.cli.cmd_sinfo import node_usage
        from sflow.views.cluster import show_node

        text = show_node(cluster, node_usage(home()), rest[0] if rest else None, one_liner)
        if not text:
            print(f"Node {rest[0]} not found", file=sys.stderr)
            return 1
        sys.stdout.write(text)
        return 0
    if entity in ("partition", "partitions"):
        from sflow.views.cluster import show_partition

        text = show_partition(cluster, rest[0] if rest else None, one_liner)
        if not text.strip():
            print(f"Partition {rest[0]} not found", file=sys.stderr)
            return 1
        sys.stdout.write(text)
        return 0
    if entity in ("config", "configuration"):
        from sflow.views.cluster import show_config

        sys.stdout.write(show_config(cluster))
        return 0
    raise SlurmError(f"invalid entity:{args[0]} for keyword:show")


def _job_ids(args: list[str]) -> list[str]:
    ids = []
    for arg in args:
        text = arg.split("=", 1)[1] if arg.lower().startswith("jobid=") else arg
        ids += text.split(",")
    return ids


def main(argv: list[str]) -> int:
    from sflow.cli.common import call, emit
    from sflow.slurm.getopt import getopt

    parsed = getopt("scontrol", argv)
    one_liner = False
    for option, _ in parsed.options:
        if option.long == "oneliner":
            one_liner = True
        elif option.long == "help":
            from sflow.slurm.help import render_help

            print(render_help("scontrol"))
            return 0
        elif option.long == "version":
            from sflow.slurm.help import VERSION_LINE

            print(VERSION_LINE)
            return 0
    if not parsed.positionals:
        raise SlurmError("scontrol needs a command: show, hold, release, requeue, update")
    command, args = parsed.positionals[0].lower(), parsed.positionals[1:]
    if command == "show":
        return _show(args, one_liner)
    if command in ("hold", "uhold", "release", "requeue"):
        if not args:
            raise SlurmError(f"too few arguments for keyword:{command}")
        op = {"uhold": "hold"}.get(command, command)
        return emit(call(op, job_ids=_job_ids(args)))
    if command == "update":
        changes = dict(a.split("=", 1) for a in args if "=" in a)
        job_id = changes.pop("JobId", changes.pop("jobid", None))
        if job_id is None:
            raise SlurmError("No job id specified for update")
        return emit(call("update", job_id=job_id, changes=changes))
    if command == "reconfigure":
        return emit(call("shutdown", start=False))
    raise SlurmError(f"invalid keyword: {parsed.positionals[0]}")
