"""``sstat``: usage of a running job's steps, sampled while they run."""

from __future__ import annotations

import sys

from sflow.cli.common import reader
from sflow.exec import steplog, usage
from sflow.views.sstat import sstat_main


def main(argv: list[str]) -> int:
    store = reader()
    state_home = store.home
    with store:
        jobs = store.jobs()
        running = [j for j in jobs if j.state in ("RUNNING", "COMPLETING")]
        steps = steplog.live_steps(state_home, running, store.steps([j.job_id for j in running]))

    def live_usage(step):
        return usage.load(usage.usage_path(state_home, step.job_id, step.step_id))

    out, err, code = sstat_main(argv, jobs, steps, live_usage)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code
