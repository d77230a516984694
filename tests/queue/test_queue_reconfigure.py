"""A slurm.conf made, edited or reread while jobs run: the controller schedules on it at once,
as sinfo shows it, and the running jobs keep running."""

from __future__ import annotations

import os
import subprocess
import sys

from queue_harness import queue  # noqa: F401  (the fixture)

FOUR_NODES = """\
ClusterName=laptop
FirstJobId=1000
NodeName=node[1-4] CPUs=2 RealMemory=4000 Gres=gpu:8
PartitionName=debug Nodes=node[1-4] Default=YES MaxTime=1:00:00
PartitionName=big Nodes=node[1-4] MaxTime=1:00:00
"""


def _scontrol(q, *argv: str):
    code = "import sys; from sflow.cli.shims import scontrol; sys.argv = ['scontrol'] + sys.argv[1:]; scontrol()"
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=q.work, env=q.env,
                          capture_output=True, text=True, timeout=30)


def test_a_slurm_conf_written_after_the_first_job_is_used_at_once(queue, monkeypatch):
    monkeypatch.delenv("SFLOW_CONF")  # the default one-node cluster, until $SFLOW_HOME/slurm.conf exists
    conf = queue.conf = os.path.join(queue.home, "slurm.conf")
    running = queue.sbatch("--wrap", "sleep 300")
    queue.wait_state(running, "RUNNING")
    wide = queue.sbatch("-N", "4", "-t", "5", "--wrap", "true")
    assert queue.wait_for(lambda: queue.job(wide).reason == "PartitionNodeLimit", what="the -N 4 job to pend")

    with open(conf, "w") as handle:
        handle.write(FOUR_NODES)
    # The pending job starts on the new nodes without another command.
    assert queue.wait_state(wide, "COMPLETED").state == "COMPLETED"
    big = queue.sbatch("-p", "big", "-N", "4", "--wrap", "true")
    assert queue.wait_state(big, "COMPLETED").nodelist == "node[1-4]"

    with open(conf, "a") as handle:
        handle.write("PartitionName=more Nodes=node[1-2]\n")
    more = queue.sbatch("-p", "more", "-N", "2", "--wrap", "true")
    assert queue.wait_state(more, "COMPLETED").nodelist == "node[1-2]"

    pid = queue.controller_pid()
    with open(conf, "a") as handle:
        handle.write("PartitionName=later Nodes=node3\n")
    done = _scontrol(queue, "reconfigure")
    assert (done.returncode, done.stderr) == (0, "")
    later = queue.sbatch("-p", "later", "--wrap", "true")
    assert queue.wait_state(later, "COMPLETED").nodelist == "node3"
    assert queue.controller_pid() == pid  # reread in place, not by a restart
    assert queue.job(running).state == "RUNNING"


def test_reconfigure_with_a_broken_slurm_conf_says_so_and_keeps_the_cluster(queue):
    queue.wait_state(queue.sbatch("--wrap", "true"), "COMPLETED")  # a controller running
    with open(queue.conf, "a") as handle:
        handle.write("PartitionName=broken Nodes=nowhere\n")
    done = _scontrol(queue, "reconfigure")
    assert done.returncode == 1 and done.stderr.startswith("slurm_reconfigure error: "), done.stderr
    job = queue.sbatch("--wrap", "true")
    assert queue.wait_state(job, "COMPLETED").partition == "debug"
