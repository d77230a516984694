"""``squeue``: read the queue straight from the database (no controller round trip)."""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    from sflow.cli.common import home, whoami
    from sflow.conf import load_cluster
    from sflow.queue import store
    from sflow.slurm.indexset import IndexSet
    from sflow.views.squeue import squeue_main

    state_home = home()

    def jobs(job_ids=None, states=None):
        return store.read_jobs(state_home, job_ids=job_ids, states=states)

    def pending_indices(job):
        conn = store.reader(state_home)
        row = conn.execute("SELECT pending_indices FROM jobs WHERE job_id = ?", (job.job_id,)).fetchone()
        return IndexSet.from_json(json.loads(row[0] or "[]")) if row else IndexSet()

    def running_steps(running):
        from sflow.exec import steplog

        recorded = store.read_steps(state_home, [j.job_id for j in running])
        return [s for s in steplog.live_steps(state_home, running, recorded) if s.state == "RUNNING"]

    out, err, code = squeue_main(argv, jobs, user=whoami()[0], min_job_age=load_cluster().min_job_age,
                                 pending_indices=pending_indices, running_steps=running_steps)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code
