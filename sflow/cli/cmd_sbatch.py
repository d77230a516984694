"""``sbatch``: hand the submission to the controller, which parses and queues it.

The controller holds the grammars and the job model warm, so this process
only gathers its ingredients (argv, environment, working directory, and the
script's text, read here as the submitting user) and prints the answer.
"""

from __future__ import annotations

import os
import sys

from sflow.cli.common import call, emit, home
from sflow.cli.render import submission
from sflow.cli.submit_context import environment, identity, read_script
from sflow.queue import client
from sflow.slurm.getopt import getopt
from sflow.slurm.help import VERSION_LINE, render_help, render_usage


def _early_exit(argv: list[str]) -> int | None:
    """--help, --usage and --version need no controller."""
    for option, _ in getopt("sbatch", argv).options:
        if option.field in ("help", "usage"):
            print(render_help("sbatch") if option.field == "help" else render_usage("sbatch"))
            return 0
        if option.field == "version":
            print(VERSION_LINE)
            return 0
    return None


def wait_for(job_id: int) -> int:
    """Block until the job (and, for an array, every task) ends; its exit code.

    The controller answers the moment the job's end is committed, so there is no polling delay.
    """
    return int(client.wait(home(), [job_id]).get("exit_code", 1))


def main(argv: list[str]) -> int:
    early = _early_exit(argv)
    if early is not None:
        return early
    cwd = os.getcwd()
    script = read_script(argv, cwd)
    reply = call("submit", argv=argv, env=environment(), cwd=cwd, script=script, **identity())
    code = emit(submission(reply))
    if reply.get("ok") and reply.get("wait") and reply.get("job_id"):
        code = wait_for(reply["job_id"])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
