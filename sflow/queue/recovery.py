"""Picking up after a controller that stopped, however it stopped (``kill -9`` included).

Every job the store says holds resources is one of:

- launched, and its batch wrapper still lives (same pid *and* kernel start
  time): adopted and watched again;
- launched, wrapper gone: finished with the status file the wrapper left;
  without one, the step vanished, which SLURM calls a node failure
  (NODE_FAIL, requeued when the job allows);
- an *intent* (the controller died between deciding to start it and writing
  down its pid): the wrapper is looked for by its pid file and, failing that,
  by its environment; found, it is adopted as above; not found, it never ran
  (or left no trace) and is handled as a node failure, so it runs once.
"""

from __future__ import annotations

import os
import sys

from sflow.queue import launch, paths


def _pid_file(job_dir: str, since: float | None) -> tuple[int, str] | None:
    """The executor's ``pid`` file (``<pid> <start time>``), if written for this launch."""
    path = os.path.join(job_dir, "pid")
    try:
        if since is not None and os.stat(path).st_mtime < since - 2:
            return None  # left by an earlier run of a requeued job
        with open(path) as handle:
            pid_text, start = handle.read().split()[:2]
        return int(pid_text), start
    except (OSError, ValueError):
        return None


def _fresh_status(path: str, since: float | None) -> bool:
    try:
        return since is None or os.stat(path).st_mtime >= since - 2
    except OSError:
        return False


def resolve_intent(ctl, job) -> bool:
    """Find the process of a start whose pid was never recorded; True if found (or it ended)."""
    job_dir = paths.job_dir(ctl.home, job.job_id)
    status_path = os.path.join(job_dir, "status")
    found = _pid_file(job_dir, job.launch_time)
    if found is not None and not launch.alive(*found):
        found = None  # ended already (its status file says how) or not ours
    if found is None:
        found = launch.find_launched(job.job_id, job.launch_time or 0.0, ctl.uid)
    if found is None and not _fresh_status(status_path, job.launch_time):
        return False
    if found is not None:
        job.pid, job.pid_start = found
        job.pgid = found[0]
    job.status_path = status_path
    job.launch = "launched"
    ctl.save(job)
    return True


def recover(ctl) -> None:
    adopted = ended = lost = 0
    for job in sorted(ctl.jobs.values(), key=lambda j: j.job_id):
        if job.rec.state not in ("RUNNING", "COMPLETING"):
            continue
        if job.alloc is not None:
            ctl.backend_for(job).restore(job.alloc)
        if job.launch != "launched" and not resolve_intent(ctl, job):
            lost += 1
            ctl.end_run(job)
            ctl.node_fail(job)
            continue
        if job.pid and launch.alive(job.pid, job.pid_start):
            adopted += 1
            ctl.watch(job)
            continue
        ended += 1
        ctl.reap(job)
    if adopted or ended or lost:
        print(f"recovered: {adopted} running job(s) adopted, {ended} ended meanwhile, "
              f"{lost} never started (requeued or NODE_FAIL)", file=sys.stderr)
