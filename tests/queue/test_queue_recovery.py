"""Crash safety: a controller killed with SIGKILL at any moment loses nothing and runs nothing twice."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import threading
import time

from sflow.queue import client
from queue_harness import queue  # noqa: F401  (the fixture)

BIG_CONF = """\
ClusterName=crash
FirstJobId=1
KillWait=1
NodeName=c[1-4] CPUs=8 RealMemory=8000
PartitionName=debug Nodes=c[1-4] Default=YES State=UP
"""
WORKLOAD = int(os.environ.get("SFLOW_TEST_CRASH_JOBS", "500"))


def _markers(directory: str) -> dict[int, int]:
    counts = {}
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as handle:
            counts[int(name)] = len(handle.read().split())
    return counts


def test_kill_9_mid_workload_loses_nothing_and_runs_nothing_twice(queue, tmp_path):
    with open(queue.conf, "w") as handle:
        handle.write(BIG_CONF)
    runs = tmp_path / "runs"
    runs.mkdir()
    script = f"echo $SLURM_JOB_ID >> {runs}/$SLURM_JOB_ID"
    stop = threading.Event()
    kills = []

    def killer() -> None:
        rng = random.Random(7)
        # A bounded number of kills, each after the controller has served a little: on a
        # loaded machine a restart can take longer than the gap between kills.
        while len(kills) < 12 and not stop.wait(rng.uniform(0.15, 0.5)):
            pid = queue.controller_pid()
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                    kills.append(time.monotonic())
                except ProcessLookupError:
                    pass

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    acknowledged = []
    try:
        for i in range(WORKLOAD):
            reply = queue.submit("-o", "/dev/null", "-J", f"w{i}", "--wrap", script)
            assert reply["ok"], reply
            acknowledged.append(reply["job_id"])
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            done = [j for j in queue.jobs() if j.state in ("COMPLETED", "FAILED", "NODE_FAIL", "CANCELLED")]
            if len(done) == WORKLOAD:
                break
            client.call(queue.home, "ping", timeout=30)  # a command arriving restarts a dead controller
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    assert len(kills) >= 3, "the controller was never killed"
    jobs = queue.jobs()
    assert sorted(j.job_id for j in jobs) == sorted(acknowledged) == list(range(1, WORKLOAD + 1))
    assert len(set(acknowledged)) == WORKLOAD  # a resent submission was never queued twice
    assert {j.state for j in jobs} == {"COMPLETED"}, [(j.job_id, j.state) for j in jobs if j.state != "COMPLETED"]
    counts = _markers(str(runs))
    assert sorted(counts) == list(range(1, WORKLOAD + 1))
    assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}


def test_running_job_is_adopted_by_the_next_controller(queue):
    job_id = queue.sbatch("--wrap", "sleep 1.5; exit 5")
    queue.wait_state(job_id, "RUNNING")
    queue.wait_for(lambda: os.path.exists(os.path.join(queue.home, "jobs", str(job_id), "pid")), what="launch")
    queue.kill_controller()
    client.call(queue.home, "ping")  # a new controller, while the job still runs
    job = queue.job(job_id)
    assert job.state == "RUNNING"
    job = queue.wait_state(job_id, "FAILED", timeout=10)
    assert (job.exit_code, job.reason) == (5, "NonZeroExitCode")


def test_job_ending_while_no_controller_is_finished_from_its_status_file(queue):
    job_id = queue.sbatch("--wrap", "sleep 0.5; exit 7")
    queue.wait_state(job_id, "RUNNING")
    status = os.path.join(queue.home, "jobs", str(job_id), "status")
    queue.wait_for(lambda: os.path.exists(os.path.join(queue.home, "jobs", str(job_id), "pid")), what="launch")
    queue.kill_controller()
    queue.wait_for(lambda: os.path.exists(status), what="status file")
    client.call(queue.home, "ping")
    job = queue.job(job_id)
    assert (job.state, job.exit_code) == ("FAILED", 7)


def _forge_intent(queue, job_id: int, requeue: bool = True) -> None:
    """What a controller killed right after committing a start leaves behind: no process, no pid."""
    queue.shutdown()
    conn = sqlite3.connect(os.path.join(queue.home, "sflow.db"), isolation_level=None)
    alloc = {"job_id": job_id, "exclusive": False,
             "nodes": [{"name": "n1", "cpus": 1, "mem_mb": 0, "gpu_indices": [], "root_dir": "", "address": None,
                        "tasks": 1}]}
    now = time.time()
    conn.execute("UPDATE jobs SET state='RUNNING', reason='None', held=0, priority=1, start_time=?, nodelist='n1', "
                 "alloc=?, launch='intent', launch_time=?, requeue=? WHERE job_id=?",
                 (now, json.dumps(alloc), now, int(requeue), job_id))
    # The packed records no longer match the columns: mark them stale (readers and the
    # next controller then go by the columns, and it repacks them).
    conn.execute("UPDATE meta SET value='stale' WHERE key='layout'")
    conn.close()


def test_an_intent_without_a_process_is_a_node_failure_and_requeued(queue, tmp_path):
    marker = tmp_path / "ran"
    job_id = queue.sbatch("--hold", "--wrap", f"echo x >> {marker}")
    _forge_intent(queue, job_id)
    assert queue.job(job_id).state == "RUNNING"
    client.call(queue.home, "ping")
    done = queue.wait_done(job_id)
    job = queue.job(job_id)
    assert done["states"][str(job_id)] == "COMPLETED" and job.restart_count == 1
    assert marker.read_text() == "x\n"


def test_an_intent_without_a_process_and_no_requeue_ends_as_node_fail(queue):
    job_id = queue.sbatch("--hold", "--no-requeue", "--wrap", "true")
    _forge_intent(queue, job_id, requeue=False)
    client.call(queue.home, "ping")
    job = queue.wait_state(job_id, "NODE_FAIL")
    assert job.reason == "NodeDown"


def test_an_intent_whose_process_did_start_is_adopted_not_rerun(queue, tmp_path):
    marker = tmp_path / "ran"
    job_id = queue.sbatch("--wrap", f"echo x >> {marker}; sleep 1; exit 6")
    queue.wait_for(lambda: marker.exists(), what="start")
    queue.kill_controller()
    conn = sqlite3.connect(os.path.join(queue.home, "sflow.db"), isolation_level=None)
    conn.execute("UPDATE jobs SET launch='intent', pid=NULL, pid_start=NULL, pgid=NULL, status_path=NULL "
                 "WHERE job_id=?", (job_id,))
    conn.close()
    client.call(queue.home, "ping")
    job = queue.wait_state(job_id, "FAILED", timeout=10)
    assert (job.exit_code, job.restart_count) == (6, 0)
    assert marker.read_text() == "x\n"
