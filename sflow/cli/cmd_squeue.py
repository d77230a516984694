"""``squeue``: read the queue straight from the database (no controller round trip)."""

from __future__ import annotations

import os
import sys
import time

from sflow.cli.common import reader, whoami
from sflow.conf import load_cluster
from sflow.views.squeue import dump_options, parse_squeue, render_squeue


def main(argv: list[str]) -> int:
    store = reader()

    def jobs(job_ids=None, states=None):
        return store.jobs(ids=job_ids, states=states)

    def pending_indices(job):
        return store.pending_indices(job.job_id)

    def running_steps(running):
        from sflow.exec import steplog  # deferred: it brings values (~8 ms); only running jobs' steps need it

        recorded = store.steps([j.job_id for j in running])
        return [s for s in steplog.live_steps(store.home, running, recorded) if s.state == "RUNNING"]

    cluster = load_cluster()
    query = parse_squeue(argv, user=whoami()[0], env=os.environ, node_names=[n.name for n in cluster.nodes],
                         hostname=os.uname().nodename.split(".")[0])
    if isinstance(query, tuple):  # help, version or a bad command line
        return _emit(*query)
    if query.verbose:
        sys.stdout.write(dump_options(query))
    sys.stderr.write(query.warnings)
    while True:
        with store:  # one connection for the listing's every read
            listing = render_squeue(query, jobs, min_job_age=cluster.min_job_age, pending_indices=pending_indices,
                                    running_steps=running_steps,
                                    partition_tiers={p.name: p.priority_tier for p in cluster.partitions})
        code = _emit(*listing)
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
