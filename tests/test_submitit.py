"""submitit's SlurmExecutor, unchanged, against the sflow shims on PATH."""

from __future__ import annotations

import os
import time

import pytest

submitit = pytest.importorskip("submitit")


def add(a, b):
    return a + b


def rank_and_node():
    env = submitit.JobEnvironment()
    return env.global_rank, env.num_tasks, os.environ["SLURMD_NODENAME"]


def sleep_long():
    time.sleep(120)
    return "never"


class CountTo(submitit.helpers.Checkpointable):
    """Counts one a second; its state travels through submitit's checkpoint pickle."""

    def __init__(self):
        self.count = 0

    def __call__(self, goal):
        while self.count < goal:
            time.sleep(1)
            self.count += 1
        return self.count, os.environ.get("SLURM_RESTART_COUNT")


def _done(job, timeout: float):
    deadline = time.time() + timeout
    while not job.done() and time.time() < deadline:
        time.sleep(0.2)
    assert job.done(), f"job {job.job_id} still {job.state} after {timeout}s"
    return job


@pytest.fixture
def executor(cluster, tmp_path, monkeypatch):
    for key, value in cluster.env.items():
        monkeypatch.setenv(key, value)
    # The job unpickles functions from this module: make it importable there.
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(os.path.abspath(__file__)))
    ex = submitit.AutoExecutor(folder=str(tmp_path / "logs"), cluster="slurm")
    ex.update_parameters(timeout_min=5, slurm_partition="debug")
    return ex


def test_function_result(executor):
    job = executor.submit(add, 2, 3)
    assert _done(job, 90).result() == 5
    deadline = time.time() + 30  # submitit refreshes sacct's view on its own schedule
    while job.state != "COMPLETED" and time.time() < deadline:
        time.sleep(0.5)
    assert job.state == "COMPLETED"


def test_map_array(executor):
    executor.update_parameters(slurm_array_parallelism=2)
    jobs = executor.map_array(add, [1, 2, 3, 4], [10, 20, 30, 40])
    assert [_done(j, 120).result() for j in jobs] == [11, 22, 33, 44]


def test_multi_task_job(executor):
    executor.update_parameters(nodes=2, tasks_per_node=2)
    job = executor.submit(rank_and_node)
    results = _done(job, 120).results()
    assert sorted(results) == [(0, 4, "node1"), (1, 4, "node1"), (2, 4, "node2"), (3, 4, "node2")]


def test_cancellation(executor):
    job = executor.submit(sleep_long)
    deadline = time.time() + 60
    while job.state not in ("RUNNING",) and time.time() < deadline:
        time.sleep(0.3)
    job.cancel()
    deadline = time.time() + 60
    while not job.done() and time.time() < deadline:
        time.sleep(0.3)
    assert job.state.startswith("CANCELLED")


def test_checkpoint_and_requeue(executor, cluster, monkeypatch):
    """Preemption as submitit fakes it (scancel --signal TERM, then USR2): the job checkpoints,
    requeues itself with scontrol and finishes its count in its second run."""
    monkeypatch.setenv("SFLOW_REQUEUE_DELAY", "0")  # before the first command starts the controller
    job = executor.submit(CountTo(), 8)
    deadline = time.time() + 60
    while job.state != "RUNNING" and time.time() < deadline:
        time.sleep(0.3)
    time.sleep(2)
    job._interrupt()
    assert _done(job, 120).result() == (8, "1")


@pytest.fixture
def cpu_burner():
    """Every CPU busy: the client that makes a job's folder after sbatch returns is slowed down."""
    import subprocess
    import sys

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    yield
    for proc in burners:
        proc.kill()
        proc.wait()


def test_default_job_folders_under_load(cluster, tmp_path, monkeypatch, cpu_burner):
    """submitit's default layout (``folder/%j``) makes each job's folder, where its output goes,
    only once sbatch has answered; SLURM never starts a job that soon, so no job may lose that race."""
    for key, value in cluster.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(os.path.abspath(__file__)))
    ex = submitit.AutoExecutor(folder=str(tmp_path / "logs" / "%j"), cluster="slurm")
    ex.update_parameters(timeout_min=5, slurm_partition="debug")
    jobs = [ex.submit(add, i, 1) for i in range(8)]
    jobs += ex.map_array(add, range(8), [100] * 8)  # an array's folders are made one after another
    expected = [i + 1 for i in range(8)] + [i + 100 for i in range(8)]
    assert [_done(job, 180).result() for job in jobs] == expected
    # A job writes its result before its batch step ends: its record says so a moment later.
    deadline = time.monotonic() + 60
    while True:
        ended = cluster.run("sacct", "-X", "-n", "-P", "-o", "JobID,State").stdout.split()
        if time.monotonic() > deadline or not any(line.endswith(("|RUNNING", "|COMPLETING")) for line in ended):
            break
        time.sleep(0.2)
    assert ended and all(line.endswith("|COMPLETED") for line in ended), ended
