"""``srun``: run a parallel step inside the current allocation."""

from __future__ import annotations

import os
import signal as _signal
import sys

from sflow.errors import SlurmError


def _request(argv: list[str]):
    from sflow.exec.srun import StepRequest
    from sflow.slurm import values
    from sflow.slurm.getopt import getopt
    from sflow.slurm.request import convert

    parsed = getopt("srun", argv)
    req = StepRequest(argv=parsed.positionals)
    warnings = []
    for option, raw in parsed.options:
        if option.status == "ignored":
            warnings.append(option.note)
            continue
        value = convert(option, raw)
        name = option.field
        if name == "nodes":
            req.nodes = value[0]
        elif name in ("ntasks", "ntasks_per_node", "cpus_per_task", "overcommit", "label", "output",
                      "error", "input", "chdir", "job_name"):
            setattr(req, name, value)
        elif name == "gpus_per_task":
            req.gpus_per_task = value.count
        elif name == "jobid":
            if not raw.strip().isdigit():
                raise SlurmError(f'Invalid numeric value "{raw}" for --jobid.')
            req.jobid = raw.strip()
        elif name == "nodelist":
            req.nodelist = value
        elif name == "kill_on_bad_exit":
            req.kill_on_bad_exit = raw in (None, "1", "yes")
        elif name in ("help", "usage"):
            from sflow.slurm.help import render_help

            print(render_help("srun"))
            raise SystemExit(0)
        elif name == "version":
            from sflow.slurm.help import VERSION_LINE

            print(VERSION_LINE)
            raise SystemExit(0)
    del values
    return req, warnings


def main(argv: list[str]) -> int:
    from sflow.cli.common import home as state_home
    from sflow.exec.env import StepContext
    from sflow.exec.srun import StepRunner, load_context, next_step_id, plan_step

    req, warnings = _request(argv)
    for warning in warnings:
        print(f"srun: warning: {warning}", file=sys.stderr)
    if not req.argv:
        print("srun: fatal: No command given to execute.", file=sys.stderr)
        return 1
    job_id = req.jobid or os.environ.get("SLURM_JOB_ID")
    home = state_home()
    job = load_context(home, job_id) if job_id else None
    if job is None and req.jobid:
        print(f"srun: error: Unable to confirm allocation for job {job_id}: Invalid job id specified\n"
              f"srun: Check SLURM_JOB_ID environment variable. Expired or invalid job {job_id}", file=sys.stderr)
        return 1
    if job is None and os.environ.get("SFLOW_NODES"):  # on a cloud node: never a new allocation from here
        raise SlurmError(f"Unable to confirm allocation for job {job_id}: no job context in {home}")
    if job is None:
        from sflow.cli.allocation import run_in_new_allocation

        return run_in_new_allocation("srun", argv)

    def warn(text: str) -> None:
        print(f"srun: Warning: {text}", file=sys.stderr)

    indices, layout = plan_step(job, req, None, warn)
    step_id = next_step_id(home, job.job_id)
    step = StepContext(step_id=step_id, nodes=[job.nodes[i] for i in indices], tasks_per_node=layout,
                       cpus_per_task=req.cpus_per_task or job.cpus_per_task,
                       gpus_per_task=req.gpus_per_task, launcher_port=40000 + os.getpid() % 20000)
    from sflow.exec import steplog as step_log

    step_log.started(home, job.job_id, step, name=req.job_name or os.path.basename(req.argv[0]))
    runner = StepRunner(job, step, req, dict(os.environ))
    runner.cancelled_by = lambda: step_log.cancelled(home, job.job_id, step_id)
    runner.kill_wait = _kill_wait()
    forwarded = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGQUIT)
    previous = {s: _signal.signal(s, lambda signum, frame: runner.signal(signum)) for s in forwarded}
    try:
        runner.start()
        code = runner.wait()
    finally:
        for signum, handler in previous.items():
            _signal.signal(signum, handler)
    step_log.finished(home, job.job_id, step_id, runner.tasks)
    return code


def _kill_wait() -> int:
    from sflow.conf import load_cluster

    try:
        return load_cluster().kill_wait
    except Exception:  # no readable configuration: SLURM's default
        return 30


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

__all__ = ["main", "SlurmError"]
