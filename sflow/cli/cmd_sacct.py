"""``sacct``: accounting from the database, jobs and their steps."""

from __future__ import annotations

import os
import sys

from sflow.cli.common import reader, whoami
from sflow.exec import steplog
from sflow.views.sacct import sacct_main


def main(argv: list[str]) -> int:
    store = reader()

    def jobs(ids=None, ended_since=None):
        return store.job_rows(ids=ids, ended_since=ended_since)

    def steps(job_ids, running, usage):
        recorded = store.steps(job_ids, usage=usage)
        # Steps of jobs still running live in their step logs until the job ends.
        return recorded + steplog.live_steps(store.home, running, recorded)

    with store:  # one connection for the jobs and their steps
        out, err, code = sacct_main(argv, jobs, steps, user=whoami()[0], env=dict(os.environ))
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code
