"""``seff JOBID``: CPU and memory efficiency of a job, from its accounting."""

from __future__ import annotations

import sys
import time

from sflow.cli.common import reader
from sflow.conf import load_cluster
from sflow.exec import steplog
from sflow.views.fmt import group_name
from sflow.views.seff import report

USAGE = "Usage: seff [Options] <Jobid>\n       Options:\n       -h    Help menu\n       -v    Version\n       -d    Debug mode: display raw Slurm data\n"


def main(argv: list[str]) -> int:
    words = [w for w in argv if not w.startswith("-")]
    if "-h" in argv or "--help" in argv or len(words) != 1:
        sys.stdout.write(USAGE)
        return 1 if len(words) != 1 and "-h" not in argv else 0
    text = words[0]
    job_text, _, index = text.partition("_")
    if not job_text.isdecimal() or (index and not index.isdecimal()):
        sys.stderr.write(USAGE)
        return 1
    store = reader()
    jobs = store.jobs()
    if index:
        found = [j for j in jobs if j.array_job_id == int(job_text) and j.array_task_id == int(index)]
    else:
        found = [j for j in jobs if j.job_id == int(job_text)]
    if not found or found[0].state == "PENDING":
        sys.stderr.write("Job not found.\n")
        return 2
    job = found[0]
    recorded = store.steps([job.job_id])
    steps = recorded + steplog.live_steps(store.home, [job], recorded)
    cluster, memory = "sflow", 0
    try:
        conf = load_cluster()
        cluster = conf.config_value("ClusterName") or cluster
        memory = next((n.real_memory_mb for n in conf.nodes if n.name == job.nodelist.split(",")[0].split("[")[0] or n.name in job.nodelist), 0)
    except Exception:  # no readable configuration: the report without the cluster's figures
        pass
    sys.stdout.write(report(job, steps, cluster, group_name(job.gid), time.time(), memory))
    return 0
