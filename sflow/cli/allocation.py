"""Allocations held by a command, as salloc (and srun outside a job) hold them.

The allocation is a job whose batch step only keeps the nodes; the command
runs here with the allocation's SLURM environment, and the job ends with the
command's exit code when it returns. What runs inside is the caller's business
(salloc's shell, srun's step): nothing here calls back into a command.
"""

from __future__ import annotations

import os
import sys
import time

from sflow.cli.common import call, reader
from sflow.cli.render import submission
from sflow.cli.submit_context import identity
from sflow.errors import SlurmError
from sflow.exec.srun import load_context
from sflow.slurm.getopt import getopt
from sflow.slurm.options import table

HOLDER_SCRIPT = "#!/bin/sh\n# Holds an allocation for salloc/srun; ended by its owner.\nwhile :; do sleep 3600; done\n"


def sbatch_args(command: str, argv: list[str]) -> tuple[list[str], list[str]]:
    """Split a command line into the allocation's sbatch options and the rest."""
    parsed = getopt(command, argv)
    return allocation_args(parsed.options), parsed.positionals


def allocation_args(options) -> list[str]:
    """The sbatch options of an allocation, from a command's (option, raw) pairs."""
    sbatch = table("sbatch")
    alloc_args = []
    for option, raw in options:
        twin = sbatch.by_long(option.long)
        if twin is not None and twin.status == "supported" and option.long not in ("output", "error", "input", "wait",
                                                                                    "verbose", "quiet"):
            alloc_args.append(f"--{option.long}" + (f"={raw}" if raw is not None else ""))
    return alloc_args


def hold_allocation(command: str, alloc_args: list[str], name: str, immediate: int | None = None) -> tuple[int, dict]:
    """Submit the holder job and wait for it to run; with ``immediate`` seconds, give up as
    SLURM does when it cannot start by then."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    reply = call("submit", argv=["--job-name", name, "--output", "/dev/null", *alloc_args],
                 env=env, cwd=os.getcwd(), script=HOLDER_SCRIPT, **identity())
    shown = submission(reply)
    refused = _ALLOCATE_FAILED.get(command, "Unable to allocate resources: ")
    if not shown["ok"]:
        sys.stderr.write(shown["stderr"].replace("sbatch:", f"{command}:")
                         .replace("Batch job submission failed: ", refused))
        raise SystemExit(shown["exit_code"])
    if reply.get("job_id") is None:  # --test-only: the answer is the whole result
        sys.stderr.write(shown["stderr"].replace("sbatch:", f"{command}:"))
        raise SystemExit(shown["exit_code"])
    job_id = reply["job_id"]
    announced = False
    deadline = time.monotonic() + immediate if immediate is not None else None
    store = reader()
    while True:
        job = store.job(job_id)
        if job.state == "RUNNING":
            context = load_context(store.home, job_id)
            if context is not None:
                break
        elif job.state != "PENDING":  # cancelled, or past its --deadline, before it could start
            if not announced:
                _announce(command, job_id)
            if command == "salloc":  # SLURM's two threads say these in either order; this is the usual one
                print(f"salloc: Job allocation {job_id} has been revoked.", file=sys.stderr)
            print(f"{command}: Job has been cancelled", file=sys.stderr)
            raise SlurmError(f"{refused}Job/step already completing or completed")
        elif deadline is not None and (time.monotonic() >= deadline or job.reason in NEVER_NOW):
            call("cancel", targets=[str(job_id)], uid=os.getuid(), quiet=True)
            raise SlurmError(f"Unable to allocate resources: {_why_not_now(job.reason)}")
        elif deadline is not None:
            pass  # --immediate: no queued notice while it may still start
        elif not announced:
            _announce(command, job_id)
            announced = True
        time.sleep(0.05)
    if announced:
        print(f"{command}: job {job_id} has been allocated resources", file=sys.stderr)
    return job_id, context


def _announce(command: str, job_id: int) -> None:
    if command == "salloc":
        print(f"salloc: Pending job allocation {job_id}", file=sys.stderr)
    print(f"{command}: job {job_id} queued and waiting for resources", file=sys.stderr)


# How srun and salloc word a refused allocation (sbatch: "Batch job submission failed: ").
_ALLOCATE_FAILED = {"salloc": "Job submit/allocate failed: ", "srun": "Unable to allocate resources: "}
# Pending reasons no wait can cure, and SLURM's words for refusing an --immediate job.
NEVER_NOW = {"JobHeldUser", "JobHeldAdmin", "Dependency", "DependencyNeverSatisfied", "PartitionNodeLimit",
             "PartitionConfig", "PartitionTimeLimit", "BeginTime"}


def _why_not_now(reason: str) -> str:
    if reason in ("JobHeldUser", "JobHeldAdmin", "Dependency", "DependencyNeverSatisfied", "BeginTime"):
        return "Job dependency problem"
    if reason.startswith("Partition"):
        return "Requested partition configuration not available now"
    return "Requested nodes are busy"


def release(job_id: int, exit_code: int) -> None:
    call("finish_allocation", job_id=job_id, exit_code=exit_code)
