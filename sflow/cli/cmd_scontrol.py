"""``scontrol``: show jobs, nodes, partitions, configuration and hostlists; hold, release, requeue, update."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import time

from sflow.cli.common import call, emit, home, reader, whoami
from sflow.conf import load_cluster, runtime_partitions_path
from sflow.errors import SlurmError
from sflow.slurm.getopt import getopt
from sflow.slurm.help import VERSION_LINE, render_help
from sflow.slurm.indexset import IndexSet
from sflow.users import uid_of
from sflow.views.cluster_show import iso_time, node_states, scontrol_show
from sflow.views.job_show import show_job, show_steps


def _show(args: list[str], one_liner: bool, show_all: bool, details: bool = False) -> int:
    if args and "=" in args[0]:  # "show PartitionName=NAME", "show JobId=ID": the entity and its name
        key, _, value = args[0].partition("=")
        args = [key.lower().removesuffix("name"), value, *args[1:]]
    if args and args[0].lower() in ("job", "jobs", "jobid"):
        return _show_jobs(args[1:], one_liner, details)
    if args and args[0].lower() in ("step", "steps", "stepid"):
        return _show_steps(args[1:], one_liner)
    cluster = load_cluster()
    states = {}
    if args and args[0].lower().startswith(("node", "part")):
        states = node_states(reader().allocated_nodes(), cluster)
    shown = scontrol_show(args, cluster, states, one_liner=one_liner, show_all=show_all,
                          next_job_id=_next_job_id(cluster) if args and args[0].lower().startswith("conf") else None)
    if shown is None:
        if args and args[0].lower() in ("step", "steps"):
            raise SlurmError(f"invalid entity:{args[0]} for keyword:show")
        print("scontrol: error: Usage: scontrol show hostlist <hostnames>", file=sys.stderr)
        return 1
    out, err, code = shown
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


def _next_job_id(cluster) -> int | None:
    ids = [j.job_id for j in reader().jobs()]
    return max(ids) + 1 if ids else None


def _show_jobs(rest: list[str], one_liner: bool, details: bool = False) -> int:
    jobs = reader().jobs()
    spec = rest[0] if rest else ""
    base, underscore, index = spec.partition("_")
    if spec and underscore and not (base.isdecimal() and index.isdecimal()):
        print("scontrol_print_job error: Invalid job id specified", file=sys.stderr)
        return 1
    if spec and not base.isdecimal():
        print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
        return 1
    if spec and underscore:
        # Job id 0 names every array: task N of each is shown, as SLURM does.
        shown = _array_tasks(jobs, int(base), int(index))
        if not shown:
            if int(base) and not any(j.job_id == int(base) or j.array_job_id == int(base) for j in jobs):
                print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
            else:
                print(f"Job {int(base)}_{int(index)} not found")
            return 1
        jobs = shown
    elif spec and int(base):
        jobs = [j for j in jobs if j.job_id == int(base) or j.array_job_id == int(base)]
        if not jobs:
            print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
            return 1
    if not jobs:
        print("No jobs in the system")
        return 0
    node_details = {j.job_id: _held(j.job_id) for j in jobs if details and j.state == "RUNNING"}
    sys.stdout.write(show_job(jobs, one_liner=one_liner, node_memory_mb=_node_memory(), details=details,
                              node_details=node_details))
    return 0


def _held(job_id: int) -> tuple[str | None, list[str]]:
    """What a running job holds, from its context: ``gpu:N`` and one ``Nodes=...`` line per node."""
    try:
        with open(os.path.join(home(), "jobs", str(job_id), "context.json")) as handle:
            nodes = json.load(handle)["nodes"]
    except (OSError, ValueError, KeyError):
        return None, []

    lines = []
    for node in nodes:
        gpus = node.get("gpu_indices") or []
        gres = f"gpu:{len(gpus)}(IDX:{IndexSet.of(gpus).ranges_text()})" if gpus else ""
        cpus = max(1, node.get("cpus", 1))
        cpu_ids = f"0-{cpus - 1}" if cpus > 1 else "0"
        lines.append(f"Nodes={node['name']} CPU_IDs={cpu_ids} Mem={node.get('mem_mb') or 0} GRES={gres}")
    total = sum(len(node.get("gpu_indices") or []) for node in nodes)
    return (f"gpu:{total}" if total else "(null)"), lines


def _show_steps(rest: list[str], one_liner: bool) -> int:
    """Running steps: all, a job's (``JOBID``) or one (``JOBID.STEP``, ``JOBID.batch``)."""
    from sflow.exec.steplog import live_steps  # deferred: ~0.45 ms that scontrol show job does not pay

    jobs = {job.job_id: job for job in reader().jobs()}
    if not rest:
        steps = live_steps(home(), jobs.values())
        if not steps:
            print("No job steps in the system")
            return 0
        sys.stdout.write(show_steps(steps, jobs, one_liner=one_liner))
        return 0
    spec = rest[0]
    job_text, _, step_text = spec.partition(".")
    job = _step_job(jobs, job_text)
    if job is None:
        print("slurm_get_job_steps error: Invalid job id specified", file=sys.stderr)
        return 1
    steps = live_steps(home(), [job])
    if step_text:
        steps = [s for s in steps if s.step_id == step_text]
    if not steps:
        print(f"Job step {job.job_id}.{step_text} not found")
        return 1
    sys.stdout.write(show_steps(steps, jobs, one_liner=one_liner))
    return 0


def _step_job(jobs: dict, text: str):
    """The job a step id names: ``123``, or an array task as ``123_4``."""
    base, _, task = text.partition("_")
    if not base.isdecimal():
        return None
    if task:
        return next((j for j in jobs.values() if j.array_job_id == int(base) and str(j.array_task_id) == task), None)
    return jobs.get(int(base))


def _array_tasks(jobs: list, array_id: int, index: int) -> list:
    """Task ``index`` of array ``array_id`` (of every array when 0): its own record once it has
    started, else the array's pending record shown as that one task."""
    arrays = sorted({j.array_job_id for j in jobs if j.array_job_id is not None
                     and (array_id == 0 or j.array_job_id == array_id)})
    shown = []
    for array in arrays:
        members = [j for j in jobs if j.array_job_id == array]
        own = [j for j in members if j.array_task_id == index]
        shown += own or _pending_element(members, index)
    return shown


def _pending_element(jobs: list, index: int) -> list:
    """Element ``index`` while it still waits in the array's pending record: that record as the element."""
    with reader() as store:
        for job in jobs:
            if job.array_task_id is not None or job.array_job_id is None:
                continue
            if index in store.pending_indices(job.job_id):
                # Paths were expanded with SLURM's placeholder task id; the element's own replaces it.
                return [dataclasses.replace(job, array_task_id=index, array_task_str=None,
                                            stdout=job.stdout.replace("4294967294", str(index)),
                                            stderr=job.stderr.replace("4294967294", str(index)))]
    return []


def _node_memory() -> dict[str, int]:
    """Each partition's memory per node (the least of its nodes)."""
    cluster = load_cluster()
    memory = {}
    for partition in cluster.partitions:
        sizes = [cluster.node(name).real_memory_mb for name in partition.nodes]
        if sizes:
            memory[partition.name] = min(sizes)
    return memory


def _is_operator() -> bool:
    """root and SlurmUser hold jobs as administrators (JobHeldAdmin), others as users."""
    return os.getuid() == 0 or whoami()[0] == (load_cluster().config_value("SlurmUser") or "root")


def _job_ids(args: list[str]) -> list[str]:
    ids = []
    for arg in args:
        text = arg.split("=", 1)[1] if arg.lower().startswith("jobid=") else arg
        ids += text.split(",")
    return ids


def _pairs(args: list[str]) -> list[tuple[str, str]]:
    """``Key=Value`` words, or a key and its value as two words (``ArrayTaskThrottle 2``)."""
    pairs = []
    words = iter(args)
    for word in words:
        if "=" in word:
            key, value = word.split("=", 1)
        else:
            value = next(words, None)
            if value is None:
                raise _Aborted(f"Invalid input: {word}\nRequest aborted")
            key = word
        pairs.append((key, value))
    return pairs


class _Aborted(Exception):
    """A request scontrol refuses before sending it, printed as is (no ``scontrol: error:`` prefix)."""


def _update(args: list[str]) -> int:
    """``update JobId=ID ...``, or the jobs of a name (``JobName=NAME [UserID=UID]``) when no id is given."""
    pairs = _pairs(args)
    keys = [key.lower() for key, _ in pairs]
    if "jobid" in keys:
        job_id = pairs[keys.index("jobid")][1]
        changes = [(k, v) for k, v in pairs if k.lower() != "jobid"]
        reply = call("update", job_id=job_id, changes=changes)
        for resized in reply.get("resized") or []:
            _write_resize_scripts(resized)
        return emit(reply)
    if "jobname" in keys:
        name = pairs[keys.index("jobname")][1]
        user = pairs[keys.index("userid")][1] if "userid" in keys else None
        uid = None
        if user is not None:
            uid = uid_of(user)
            if uid is None:
                raise SlurmError(f"Invalid UserID: {user}")
        changes = [(k, v) for k, v in pairs if k.lower() not in ("jobname", "userid")]
        return emit(call("update", job_name=name, user_id=uid, changes=changes))
    if "partitionname" in keys:
        return _partition_op("update", args)
    print("No valid entity in update command", file=sys.stderr)
    print('Input line must include "NodeName", "PartitionName", "Reservation", "JobId", or "SlurmctldDebug"',
          file=sys.stderr)
    return 1


def _write_resize_scripts(resized: dict) -> None:
    """A shrunk job's new environment, as scontrol leaves it in the current directory for the job to source."""
    job_id = resized["job_id"]
    values = [("SLURM_NODELIST", f'"{resized["nodelist"]}"'), ("SLURM_JOB_NODELIST", f'"{resized["nodelist"]}"'),
              ("SLURM_NNODES", str(resized["num_nodes"])), ("SLURM_JOB_NUM_NODES", str(resized["num_nodes"])),
              ("SLURM_JOB_CPUS_PER_NODE", f'"{resized["cpus_per_node"]}"')]
    unset = ("SLURM_NPROCS", "SLURM_NTASKS", "SLURM_TASKS_PER_NODE")
    sh = "".join(f"export {name}={value}\n" for name, value in values) + "".join(f"unset {n}\n" for n in unset)
    csh = "".join(f"setenv {name} {value}\n" for name, value in values) + "".join(f"unsetenv {n}\n" for n in unset)
    for suffix, text in (("sh", sh), ("csh", csh)):
        with open(f"slurm_job_{job_id}_resize.{suffix}", "w") as handle:
            handle.write(text)
    print("To reset Slurm environment variables, execute")
    print(f"  For bash or sh shells:  . ./slurm_job_{job_id}_resize.sh")
    print(f"  For csh shells:         source ./slurm_job_{job_id}_resize.csh")


def _completing() -> int:
    """Jobs in COMPLETING state with their nodes (sflow's jobs pass through it too briefly to list)."""
    for job in reader().jobs():
        if job.state == "COMPLETING":
            print(f"JobId={job.job_id} EndTime={iso_time(job.end_time)} CompletingTime=00:00:00 Nodes={job.nodelist}")
    return 0


def _partition_op(command: str, args: list[str]) -> int:
    """``create|delete|update PartitionName=NAME ...``: partitions the controller holds beside slurm.conf."""
    if not args:
        raise SlurmError(f"too few arguments for keyword:{command}")
    key, _, name = args[0].partition("=")
    # scontrol takes any leading part of the keyword that is long enough to be only this one
    is_partition = len(key) >= 3 and "partitionname".startswith(key.lower()) and bool(name)
    if command == "delete":
        if not is_partition or len(args) > 1:
            raise SlurmError(f"Invalid deletion entity: {args[0]}")
        return emit(call("partition", action="delete", name=name, given=args[0]))
    if not is_partition:
        raise SlurmError(f"Invalid {'creation' if command == 'create' else 'update'} entity: {args[0]}")
    settings = _pairs(args[1:])
    return emit(call("partition", action=command, name=name, settings=settings))


def _ping() -> int:
    """``Slurmctld(primary) at HOST is UP``: the controller is started on demand, so asking starts it."""
    from sflow.queue import client  # deferred: ~0.6 ms that scontrol show, which only reads, does not pay

    hosts = [name.split("(")[0] for name in load_cluster().controllers] or [os.uname().nodename.split(".")[0]]
    try:
        up = bool(client.call(None, "ping").get("ok"))
    except client.ControllerUnavailable:
        up = False
    labels = ["primary", "backup"] + [f"backup{n}" for n in range(2, len(hosts))]
    for label, host in zip(labels, hosts):
        print(f"Slurmctld({label}) at {host} is {'UP' if up and label == 'primary' else 'DOWN'}")
    return 0 if up else 1


def stop_controller(args: list[str]) -> int:
    """``scontrol shutdown [slurmctld|controller]``: the controller saves its state and leaves.

    Running jobs keep running, and the next controller (started by the next command)
    adopts them; sflow has no node daemons, so every form stops the controller alone."""
    from sflow.queue import client, paths  # deferred: as in _ping

    if len(args) > 1:
        raise SlurmError("too many arguments for keyword:shutdown")
    if args and args[0].lower() not in ("slurmctld", "controller"):
        raise SlurmError(f"invalid shutdown argument:{args[0]}")
    state_home = home()
    try:
        client.call(state_home, "shutdown", start=False)
    except client.ControllerUnavailable:
        return 0  # none running: nothing to stop
    # Return once it has left (its clean exit removes ctl.pid), so the next command starts a fresh one.
    deadline = time.monotonic() + 30
    while os.path.exists(paths.pid_path(state_home)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return 0


def main(argv: list[str]) -> int:
    parsed = getopt("scontrol", argv)
    one_liner = show_all = details = False
    for option, _ in parsed.options:
        if option.long == "oneliner":
            one_liner = True
        elif option.long == "details":
            details = True
        elif option.long == "all":
            show_all = True
        elif option.long == "help":
            print(render_help("scontrol"))
            return 0
        elif option.long == "version":
            print(VERSION_LINE)
            return 0
    if not parsed.positionals:
        raise SlurmError("scontrol needs a command: show, hold, release, requeue, update")
    command, args = parsed.positionals[0].lower(), parsed.positionals[1:]
    if command == "show":
        return _show(args, one_liner, show_all, details)
    if command in ("requeue", "requeuehold"):
        # Options come before the job list: Incomplete, State=SpecialExit.
        options = {a.lower() for a in args if a.lower() in ("incomplete", "state=specialexit")}
        targets = [a for a in args if a.lower() not in options]
        if not targets:
            raise SlurmError(f"too few arguments for keyword:{command}")
        # A job that requeues itself gets SIGTERM from the requeue while this command is
        # still reading the answer; SLURM's reply outruns that signal, ours must outlive it.
        # Held off, not ignored: the process ends with the requeue's exit code.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            return emit(call("requeue", job_ids=_job_ids(targets), hold=command == "requeuehold",
                             incomplete="incomplete" in options,
                             special_exit="state=specialexit" in options))
        finally:
            if signal.SIGTERM not in signal.sigpending():  # none came: nothing to outlive
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
    if command in ("hold", "uhold", "release"):
        if not args:
            raise SlurmError(f"too few arguments for keyword:{command}")
        op = {"uhold": "hold"}.get(command, command)
        return emit(call(op, job_ids=_job_ids(args), admin=command == "hold" and _is_operator()))
    if command == "update":
        try:
            return _update(args)
        except _Aborted as err:
            print(err, file=sys.stderr)
            return 1
    if command == "top":
        if not args:
            raise SlurmError("too few arguments for keyword:top")
        return emit(call("top", job_ids=_job_ids(args), operator=_is_operator()))
    if command == "completing":
        return _completing()
    if command in ("create", "delete"):
        try:
            return _partition_op(command, args)
        except _Aborted as err:
            print(err, file=sys.stderr)
            return 1
    if command == "ping":
        return _ping()
    if command == "shutdown":
        return stop_controller(args)
    if command == "reconfigure":
        from sflow.queue import client  # deferred: as in _ping

        # SLURM rereads slurm.conf: the partitions scontrol created or deleted are forgotten.
        with contextlib.suppress(FileNotFoundError):
            os.remove(runtime_partitions_path())

        try:
            return emit(client.call(None, "reconfigure", start=False))
        except client.ControllerUnavailable:
            return 0  # none running: the next one reads slurm.conf as it is
    raise SlurmError(f"invalid keyword: {parsed.positionals[0]}")
