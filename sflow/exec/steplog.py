"""Each job's step records, appended as JSON lines beside the job (``jobs/<id>/steps.jsonl``).

Written by ``srun`` itself, so a step is recorded even while the controller is
away; the controller and ``sacct`` read the file into StepRecords.
"""

from __future__ import annotations

import json
import os
import time

from sflow.records import StepRecord
from sflow.slurm.values import compress_hostlist


def _path(home: str, job_id: int) -> str:
    return os.path.join(home, "jobs", str(job_id), "steps.jsonl")


def _append(home: str, job_id: int, entry: dict) -> None:
    line = (json.dumps(entry) + "\n").encode()
    fd = os.open(_path(home, job_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line)  # one write per line: O_APPEND keeps concurrent sruns' lines whole
    finally:
        os.close(fd)


def started(home: str, job_id: int, step, name: str, given=()) -> None:
    """``given``: srun's (option, raw value) pairs, for what ``scontrol show step`` shows of them."""
    tasks = sum(step.tasks_per_node)
    _append(home, job_id, {
        "event": "start", "step_id": str(step.step_id), "name": name, "time": time.time(),
        "nodelist": compress_hostlist([n.name for n in step.nodes]), "num_nodes": len(step.nodes),
        "num_tasks": tasks,
        "num_cpus": tasks * step.cpus_per_task,
        "srun_host": os.environ.get("SLURMD_NODENAME") or os.uname().nodename.split(".")[0],
        "srun_pid": os.getpid(),
        "dist": getattr(step, "distribution", None) if getattr(step, "given_distribution", False) else None,
        **step_tres(dict(given), tasks, step.cpus_per_task, len(step.nodes)),
    })


def step_tres(given: dict, tasks: int, cpus_per_task: int, nodes: int) -> dict:
    """The step's GPU request as scontrol shows it: {"tres_per": {CpusPerTres: ..., TresPerTask: ...},
    "gpus": the GPUs its TRES counts}; empty when it asked for none."""
    def count(raw):
        tail = (raw or "").rsplit(":", 1)[-1]
        return int(tail) if tail.isdecimal() else 0

    def gres(raw):
        return f"gres:gpu:{raw}"

    shown = {}
    if given.get("cpus-per-gpu"):
        shown["CpusPerTres"] = gres(given["cpus-per-gpu"])
    if given.get("mem-per-gpu"):
        shown["MemPerTres"] = gres(given["mem-per-gpu"])
    if given.get("gpu-bind"):
        shown["TresBind"] = f"gpu:{given['gpu-bind']}"
    if given.get("gpu-freq"):
        shown["TresFreq"] = f"gpu:{given['gpu-freq']}"
    if given.get("gpus"):
        shown["TresPerStep"] = f"cpu:{tasks * cpus_per_task},{gres(given['gpus'])}"
    if given.get("gpus-per-node"):
        shown["TresPerNode"] = gres(given["gpus-per-node"])
    if given.get("gpus-per-socket"):
        shown["TresPerSocket"] = gres(given["gpus-per-socket"])
    if given.get("gpus-per-task"):
        shown["TresPerTask"] = gres(given["gpus-per-task"])
    gpus = (count(given.get("gpus")) or count(given.get("gpus-per-node")) * nodes
            or count(given.get("gpus-per-socket")) * nodes or count(given.get("gpus-per-task")) * tasks)
    return {"tres_per": shown, "gpus": gpus} if shown or gpus else {}


def finished(home: str, job_id: int, step_id: int, tasks, usage: dict | None = None) -> None:
    """``usage``: what the step's tasks used (``sflow.exec.usage``), kept with its record."""
    codes = [t.exit_code for t in tasks]
    signals = [t.signal for t in tasks if t.signal]
    exit_code = max(codes) if codes else 0
    if signals:
        state = "CANCELLED" if signals[0] in (15, 9) else "FAILED"
    else:
        state = "FAILED" if exit_code else "COMPLETED"
    entry = {"event": "end", "step_id": str(step_id), "time": time.time(), "state": state,
             "exit_code": exit_code, "signal": signals[0] if signals else 0}
    by = cancelled(home, job_id, step_id)
    if by is not None:
        entry["state"], entry["cancelled_by"] = "CANCELLED", by[0]
    if usage:
        entry["usage"] = usage
    _append(home, job_id, entry)


def _cancel_path(home: str, job_id: int, step_id) -> str:
    return os.path.join(home, "jobs", str(job_id), f"step-{step_id}.cancelled")


def mark_cancelled(home: str, job_id: int, step_id, uid: int) -> None:
    """scancel of one step: who and when, for the step's srun to report before its tasks die."""
    with open(_cancel_path(home, job_id, step_id), "w") as handle:
        handle.write(f"{uid} {time.time()}\n")


def cancelled(home: str, job_id: int, step_id) -> tuple[int, float] | None:
    """(uid, time) of the scancel that ended this step, or None."""
    try:
        with open(_cancel_path(home, job_id, step_id)) as handle:
            uid, when = handle.read().split()
        return int(uid), float(when)
    except (OSError, ValueError):
        return None


def running_batch_step(home: str, job):
    """The batch step of a running job (recorded only when it ends), from its start and first node."""
    node, cpus = job.nodelist, job.num_cpus
    try:
        with open(os.path.join(home, "jobs", str(job.job_id), "context.json")) as handle:
            first = json.load(handle)["nodes"][0]
        node, cpus = first["name"], first["cpus"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        pass
    return StepRecord(job_id=job.job_id, step_id="batch", name="batch", state="RUNNING",
                      start_time=job.start_time, nodelist=node, num_nodes=1, num_tasks=1, num_cpus=cpus)


def live_steps(home: str, jobs, recorded=()) -> list:
    """The steps of running jobs, not yet in the store: the batch step and srun's from their log."""
    known = {(s.job_id, s.step_id) for s in recorded}
    steps = []
    for job in jobs:
        if job.state in ("RUNNING", "COMPLETING"):
            batch = [running_batch_step(home, job)] if (job.job_id, "batch") not in known else []
            steps += batch + [s for s in read_steps(home, job.job_id) if (s.job_id, s.step_id) not in known]
    return steps


def read_steps(home: str, job_id: int) -> list:
    """StepRecords of the job's srun steps, in start order."""
    steps: dict[str, StepRecord] = {}
    try:
        with open(_path(home, job_id)) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry["event"] == "start":
            steps[entry["step_id"]] = StepRecord(
                job_id=job_id, step_id=entry["step_id"], name=entry["name"], state="RUNNING",
                start_time=entry["time"], nodelist=entry["nodelist"], num_nodes=entry["num_nodes"],
                num_tasks=entry["num_tasks"], num_cpus=entry["num_cpus"],
                extra={key: entry[key] for key in ("srun_host", "srun_pid", "dist", "tres_per", "gpus")
                       if entry.get(key) is not None})
        elif entry["step_id"] in steps:
            step = steps[entry["step_id"]]
            step.state, step.end_time = entry["state"], entry["time"]
            step.exit_code, step.exit_signal = entry["exit_code"], entry["signal"]
            if "cancelled_by" in entry:
                step.extra["cancelled_by"] = entry["cancelled_by"]
            if "usage" in entry:
                step.extra["usage"] = entry["usage"]
    return list(steps.values())
