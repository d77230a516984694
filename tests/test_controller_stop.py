"""scontrol shutdown and flow stop: the controller leaves, its running jobs do not."""

from __future__ import annotations

import os
import time

import pytest


def _wait_for(predicate, limit: float = 60.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("argv", [["scontrol", "shutdown"], ["scontrol", "shutdown", "slurmctld"],
                                  ["flow", "stop"]])
def test_stopping_the_controller_leaves_running_jobs_to_the_next_one(cluster, argv):
    gate = os.path.join(cluster.work, "go")
    submitted = cluster.run("sbatch", "--parsable", "-o", "/dev/null",
                            "--wrap", f"while [ ! -e {gate} ]; do sleep 0.1; done")
    job_id = submitted.stdout.strip()
    assert _wait_for(lambda: cluster.run("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip() == "RUNNING")
    stopped = cluster.run(*argv)
    assert (stopped.returncode, stopped.stdout, stopped.stderr) == (0, "", "")
    assert not os.path.exists(os.path.join(cluster.home, "ctl.pid"))  # it left cleanly
    open(gate, "w").close()
    done = cluster.run("sacct", "-n", "-X", "-j", job_id, "-o", "State", "-P")
    assert _wait_for(lambda: cluster.run("sacct", "-n", "-X", "-j", job_id, "-o", "State", "-P").stdout.strip()
                     == "COMPLETED"), done.stdout


def test_shutdown_takes_only_the_controller_forms(cluster):
    done = cluster.run("scontrol", "shutdown", "everything")
    assert done.returncode == 1
    assert "invalid shutdown argument" in done.stderr
    assert cluster.run("scontrol", "shutdown", "a", "b").returncode == 1
    assert cluster.run("scontrol", "shutdown").returncode == 0  # none running: nothing to do
