"""Allocations held by a command, as salloc (and srun outside a job) hold them.

The allocation is a job whose batch step only keeps the nodes; the command
runs here with the allocation's SLURM environment, and the job ends with the
command's exit code when it returns.
"""

from __future__ import annotations

import os
import sys
import time

HOLDER_SCRIPT = "#!/bin/sh\n# Holds an allocation for salloc/srun; ended by its owner.\nwhile :; do sleep 3600; done\n"


def _sbatch_args(command: str, argv: list[str]) -> tuple[list[str], list[str]]:
    """Split a command line into the allocation's sbatch options and the rest."""
    from sflow.slurm.getopt import getopt
    from sflow.slurm.options import table

    parsed = getopt(command, argv)
    sbatch = table("sbatch")
    alloc_args, rest = [], []
    for option, raw in parsed.options:
        twin = sbatch.by_long(option.long)
        if twin is not None and twin.status == "supported" and option.long not in ("output", "error", "input", "wait"):
            alloc_args.append(f"--{option.long}" + (f"={raw}" if raw is not None else ""))
        if command == "srun":
            rest.append(f"--{option.long}" + (f"={raw}" if raw is not None else ""))
    return alloc_args, rest + ["--"] + parsed.positionals if command == "srun" else parsed.positionals


def hold_allocation(command: str, alloc_args: list[str], name: str) -> tuple[int, dict]:
    from sflow.cli.common import call, home, read_jobs
    from sflow.cli.submit_context import identity
    from sflow.errors import SlurmError
    from sflow.exec.srun import load_context

    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    reply = call("submit", argv=["--job-name", name, "--output", "/dev/null", *alloc_args],
                 env=env, cwd=os.getcwd(), stdin=HOLDER_SCRIPT, **identity())
    if not reply.get("ok"):
        sys.stderr.write(reply.get("stderr", "").replace("sbatch:", f"{command}:"))
        raise SystemExit(reply.get("exit_code", 1))
    job_id = reply["job_id"]
    announced = False
    while True:
        job = read_jobs("job_id = ?", (job_id,))[0]
        if job.state == "RUNNING":
            context = load_context(home(), job_id)
            if context is not None:
                break
        elif job.state != "PENDING":
            raise SlurmError(f"Job allocation {job_id} has been revoked.")
        elif not announced:
            print(f"{command}: job {job_id} queued and waiting for resources", file=sys.stderr)
            announced = True
        time.sleep(0.05)
    if announced:
        print(f"{command}: job {job_id} has been allocated resources", file=sys.stderr)
    return job_id, context


def release(job_id: int, exit_code: int) -> None:
    from sflow.cli.common import call

    call("finish_allocation", job_id=job_id, exit_code=exit_code)


def run_in_new_allocation(command: str, argv: list[str]) -> int:
    """``srun`` outside a job: allocate, run the step, release."""
    from sflow.cli import cmd_srun

    alloc_args, step_argv = _sbatch_args("srun", argv)
    positionals = step_argv[step_argv.index("--") + 1:]
    job_id, _ = hold_allocation("srun", alloc_args, os.path.basename(positionals[0]) if positionals else "srun")
    os.environ["SLURM_JOB_ID"] = str(job_id)
    code = 1
    try:
        code = cmd_srun.main(step_argv)
    finally:
        release(job_id, code)
    return code
