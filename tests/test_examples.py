"""The example job scripts, run for real through the shims on a 4-node local cluster."""

from __future__ import annotations

import os
import socket
import re
import time

import pytest

from conftest import copy_examples


def _wait_done(cluster, job_ids, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = cluster.run("sacct", "-X", "-n", "-P", "-o", "JobID,State,ExitCode", "-j", ",".join(job_ids)).stdout
        rows = [line.split("|") for line in out.splitlines() if line]
        # A job waiting on a dependency has no accounting row yet, as in SLURM: wait for every one.
        listed = {row[0].split("_")[0] for row in rows}
        if listed >= set(job_ids) and all(state not in ("PENDING", "RUNNING", "COMPLETING") for _, state, _ in rows):
            return rows
        time.sleep(0.2)
    raise AssertionError(f"jobs {job_ids} did not finish")


def test_hello(cluster):
    copy_examples(cluster.work)
    done = cluster.run("sbatch", "--wait", "hello.slurm")
    assert done.returncode == 0, done.stderr
    job_id = re.search(r"Submitted batch job (\d+)", done.stdout).group(1)
    text = open(os.path.join(cluster.work, f"hello-{job_id}.out")).read()
    assert f"job {job_id} (hello) on node1, 2 tasks" in text
    assert sorted(l for l in text.splitlines() if l.startswith("hello")) == [
        "hello from task 0 of 2 on node1", "hello from task 1 of 2 on node1"]


def test_mpi_ranks_span_two_nodes(cluster):
    copy_examples(cluster.work)
    done = cluster.run("sbatch", "--wait", "mpi_ranks.slurm")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.split()[-1]
    lines = sorted(open(os.path.join(cluster.work, f"ranks-{job_id}.out")).read().splitlines())
    assert lines == [
        "0: rank 0/4 local 0 node 0 (node1)", "1: rank 1/4 local 1 node 0 (node1)",
        "2: rank 2/4 local 0 node 1 (node2)", "3: rank 3/4 local 1 node 1 (node2)"]


def test_array_sweep_with_throttle(cluster):
    copy_examples(cluster.work)
    done = cluster.run("sbatch", "--parsable", "array.slurm")
    array_id = done.stdout.strip()
    rows = _wait_done(cluster, [array_id])
    assert sorted(r[0] for r in rows) == [f"{array_id}_{i}" for i in range(8)]
    assert all(r[1] == "COMPLETED" for r in rows)
    text = open(os.path.join(cluster.work, f"sweep-{array_id}_3.out")).read()
    assert text == f"array job {array_id} task 3 of 8: lr=0.01\n"


def test_dependency_pipeline(cluster):
    copy_examples(cluster.work)
    done = cluster.run("bash", "pipeline.sh")
    assert done.returncode == 0, done.stderr
    prep, train, report = done.stdout.split()
    rows = dict((r[0], r[1]) for r in _wait_done(cluster, [prep, train, report]))
    assert rows == {prep: "COMPLETED", train: "COMPLETED", report: "COMPLETED"}
    assert open(os.path.join(cluster.work, f"train-{train}.out")).read().strip() == "9"


def _free_port():
    with socket.socket() as s:
        s.bind(("", 0))  # free on every address, the nodes' own included
        return s.getsockname()[1]


def test_torchrun_two_nodes(cluster):
    pytest.importorskip("torch")
    copy_examples(cluster.work)
    # The rendezvous host is the first node, by name (it resolves inside the job).
    cluster.env.pop("MASTER_ADDR", None)
    cluster.env["MASTER_PORT"] = str(_free_port())
    done = cluster.run("sbatch", "--wait", "torchrun.slurm", timeout=240)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.split()[-1]
    text = open(os.path.join(cluster.work, f"ddp-{job_id}.out")).read()
    assert text.count("sum=6.0 expected=6.0") == 4, text
    assert f"rendezvous at node1:{cluster.env['MASTER_PORT']}\n" in text
