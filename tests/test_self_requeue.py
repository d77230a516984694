"""A batch job that requeues itself (``scontrol requeue $SLURM_JOB_ID``, as checkpointing
libraries do on a preemption signal) sees the command succeed, then runs again, its steps numbered
from 0 as in a new job."""

from __future__ import annotations

import os
import time

SCRIPT = """#!/bin/bash
trap 'echo got TERM' TERM
echo "run ${SLURM_RESTART_COUNT:-0}"
srun true
if [ -z "$SLURM_RESTART_COUNT" ]; then
    scontrol requeue $SLURM_JOB_ID
    echo "requeue exit $?"
    sleep 30
fi
"""


def test_scontrol_requeue_from_inside_the_job_succeeds(cluster):
    cluster.env["SFLOW_REQUEUE_DELAY"] = "0"  # SLURM holds a requeued job back 2 minutes
    # The trap keeps the first run alive through SIGTERM until KillWait's SIGKILL: 2 s, not 30.
    conf = os.path.join(cluster.work, "slurm.conf")
    with open(conf, "w") as handle:
        handle.write(open(cluster.env["SFLOW_CONF"]).read() + "\nKillWait=2\n")
    cluster.env["SFLOW_CONF"] = conf
    out = os.path.join(cluster.work, "out.txt")
    done = cluster.run("sbatch", "--parsable", "--open-mode=append", "-o", out, input=SCRIPT)
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip()
    deadline = time.time() + 90
    state = ""
    while time.time() < deadline:
        state = cluster.run("sacct", "-X", "-n", "-P", "-j", job, "-o", "State").stdout.strip()
        if state == "COMPLETED":
            break
        time.sleep(0.5)
    text = open(out).read()
    assert state == "COMPLETED", text
    assert "requeue exit 0" in text
    assert "run 1" in text
    # The second run's steps count from 0 again; the first run's are gone from sacct.
    steps = cluster.run("sacct", "-n", "-P", "-j", job, "-o", "JobID").stdout.split()
    assert steps == [job, f"{job}.batch", f"{job}.0"]


def test_requeue_leaves_sigterm_as_it_found_it_when_none_came(tmp_path, monkeypatch):
    # Called in process (as by tools that import sflow), the command must not leave SIGTERM held.
    import signal

    from sflow.cli import cmd_scontrol
    from sflow.errors import SflowError

    monkeypatch.setenv("SFLOW_HOME", str(tmp_path))
    try:
        cmd_scontrol.main(["requeue", "99999"])
    except SflowError:
        pass
    finally:
        from sflow.queue import client

        try:
            client.call(str(tmp_path), "shutdown", start=False)
        except client.ControllerUnavailable:
            pass
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
