"""``squeue``: read the queue straight from the database (no controller round trip)."""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    from sflow.cli.common import home, whoami
    from sflow.conf import load_cluster
    from sflow.queue import store
    from sflow.slurm.indexset import IndexSet
    from sflow.views.squeue import dump_options, parse_squeue, render_squeue

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

    cluster = load_cluster()
    query = parse_squeue(argv, user=whoami()[0], env=os.environ, node_names=[n.name for n in cluster.nodes],
                         hostname=os.uname().nodename.split(".")[0])
    if isinstance(query, tuple):  # help, version or a bad command line
        return _emit(*query)
    if query.verbose:
        sys.stdout.write(dump_options(query))
    sys.stderr.write(query.warnings)
    while True:
        code = _emit(*render_squeue(query, jobs, min_job_age=cluster.min_job_age, pending_indices=pending_indices,
                                    running_steps=running_steps,
                                    partition_tiers={p.name: p.priority_tier for p in cluster.partitions}))
        if not query.iterate or query.sort_error:
            return code
        # --iterate: the listing again every so many seconds, a blank line after each, until killed
        sys.stdout.write("\n")
        sys.stdout.flush()
        time.sleep(query.iterate)


def _emit(out: str, err: str, code: int) -> int:
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.stdout.flush()
    return code
