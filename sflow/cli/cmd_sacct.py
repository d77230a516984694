"""``sacct``: accounting from the database, jobs and their steps."""

from __future__ import annotations

import os
import sys

from sflow.cli.common import reader, whoami
from sflow.exec import steplog
from sflow.views.sacct import sacct_main


def main(argv: list[str]) -> int:
    store = reader()
    with store:
        jobs = store.jobs()
        steps = store.steps()
    # Steps of jobs still running live in their step logs until the job ends.
    steps += steplog.live_steps(store.home, jobs, steps)
    out, err, code = sacct_main(argv, jobs, steps, user=whoami()[0], env=dict(os.environ))
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code
