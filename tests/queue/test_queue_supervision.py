"""The read-only commands restart a dead controller only when a job runs (or a bid is live)."""

from __future__ import annotations

import os
import subprocess
import sys

from queue_harness import queue  # noqa: F401  (the fixture)
from sflow.queue import watchdog

SQUEUE = "import sys; from sflow.cli.shims import squeue; sys.argv = ['squeue']; squeue()"


def test_squeue_leaves_a_stopped_controller_alone_when_nothing_runs(queue):
    queue.sbatch("--hold", "--wrap", "true")
    queue.shutdown()
    subprocess.run([sys.executable, "-c", SQUEUE], env=queue.env, cwd=queue.work, capture_output=True, timeout=30)
    assert not watchdog.live_work(queue.home)
    assert not watchdog.controller_answers(queue.home)


def test_squeue_restarts_a_controller_killed_while_a_job_runs(queue):
    job_id = queue.sbatch("--wrap", "sleep 30")
    queue.wait_state(job_id, "RUNNING")
    queue.wait_for(lambda: os.path.exists(os.path.join(queue.home, "jobs", str(job_id), "pid")), what="launch")
    queue.kill_controller()
    assert watchdog.live_work(queue.home) and not watchdog.controller_answers(queue.home)
    done = subprocess.run([sys.executable, "-c", SQUEUE], env=queue.env, cwd=queue.work, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0 and str(job_id) in done.stdout, done.stderr
    queue.wait_for(lambda: watchdog.controller_answers(queue.home), what="a controller started by squeue")
    assert queue.scancel(str(job_id)).returncode == 0
