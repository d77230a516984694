"""``salloc``: hold an allocation while a command (by default a shell) runs."""

from __future__ import annotations

import os
import subprocess
import sys

from sflow.cli.allocation import hold_allocation, release, sbatch_args
from sflow.cli.submit_context import environment
from sflow.exec.env import batch_environment


def main(argv: list[str]) -> int:
    alloc_args, positionals = sbatch_args("salloc", argv)
    command = positionals or [os.environ.get("SHELL", "/bin/sh")]
    job_id, context = hold_allocation("salloc", alloc_args, os.path.basename(command[0]))
    print(f"salloc: Granted job allocation {job_id}", file=sys.stderr)
    env = batch_environment(context, environment())
    env.pop("ENVIRONMENT", None)  # salloc's shell is interactive, not a batch script
    code = 1
    try:
        code = subprocess.call(command, env=env)
    except OSError as exc:
        print(f"salloc: error: {command[0]}: {exc.strerror}", file=sys.stderr)
        code = 127
    finally:
        print(f"salloc: Relinquishing job allocation {job_id}", file=sys.stderr)
        release(job_id, code)
    return code
