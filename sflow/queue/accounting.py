"""The batch step's usage, gathered by the controller's loop: one pass over /proc for all jobs.

Every job's batch step is sampled at its own frequency (``--acctg-freq``, else
the cluster's JobAcctGatherFrequency): the batch shell and what it started,
srun included but not the tasks of srun's steps (srun measures those itself, as
a step's own slurmstepd does). Each sample is written beside the job, so sstat
sees it and a controller that restarts picks the high-water marks up again.
The CPU times come from the batch wrapper's ``times`` at the end, exact even if
no controller was up then.
"""

from __future__ import annotations

from sflow.exec import usage
from sflow.queue import launch

BATCH = "batch"


def job_frequency(ctl, job) -> int:
    request = ctl.request_of(job)
    given = getattr(request, "acctg_freq", None)
    return usage.frequency(given or ctl.config_value("JobAcctGatherFrequency"))


def _gauge(ctl, job):
    state = ctl.gauges.get(job.job_id)
    if state is None:
        path = usage.usage_path(ctl.home, job.job_id, BATCH)
        node = job.alloc.nodes[0].name if job.alloc and job.alloc.nodes else job.rec.nodelist
        # [gauge, seconds between samples, next sample due, file]; a sample left by a previous controller goes on
        state = ctl.gauges[job.job_id] = [usage.Gauge(1, [node], usage.load(path)), job_frequency(ctl, job), 0.0, path]
    return state


def batch_tree(pid: int, children: dict[int, list[int]]) -> list[int]:
    """The batch step's processes: the shell under the wrapper and its descendants, srun's tasks left out."""
    found, stack = [], list(children.get(pid, []))
    while stack:
        current = stack.pop()
        found.append(current)
        if not launch._is_srun(current):
            stack += children.get(current, [])
    return found


def gather(ctl, now: float) -> float:
    """Sample the batch steps that are due; the next time one is."""
    due = []
    wake = float("inf")
    for job in ctl.launched_jobs():
        if job.launch != "launched" or not job.pid or job.rec.state not in ("RUNNING", "COMPLETING") or (
                job.alloc is not None and any(node.address for node in job.alloc.nodes)):
            continue  # a remote step's processes are on other machines
        state = _gauge(ctl, job)
        if state[1] <= 0:
            continue
        if now >= state[2]:
            due.append((job, state))
            state[2] = now + state[1]
        wake = min(wake, state[2])
    if due:
        children = usage.children_map()
        for job, (gauge, _, _, path) in due:
            gauge.sample(0, batch_tree(job.pid, children))
            usage.save(path, gauge.to_dict())
    return wake


def batch_usage(ctl, job, steps) -> dict:
    """The batch step's usage at its end: memory as sampled, CPU from the wrapper's ``times`` less
    what srun's steps (``steps``, with their own usage) used."""
    state = ctl.gauges.pop(job.job_id, None)
    if state is not None:
        gauge = state[0]
    else:
        node = job.alloc.nodes[0].name if job.alloc and job.alloc.nodes else job.rec.nodelist
        gauge = usage.Gauge(1, [node], usage.load(usage.usage_path(ctl.home, job.job_id, BATCH)))
    gauge.ended(0)
    times = None
    if job.status_path:
        try:
            with open(job.status_path + ".times") as handle:
                times = usage.parse_times(handle.read())
        except OSError:
            pass
    if times is not None:
        user, system = times
        for step in steps:
            used = step.extra.get("usage") or {}
            user -= used.get("user_cpu", 0.0)
            system -= used.get("sys_cpu", 0.0)
        gauge.user_cpu = gauge.sys_cpu = 0.0
        gauge.add_cpu(user, system)
    return gauge.to_dict()
