"""srun inside an allocation: task layout, ranks, output handling and SLURM's messages.

The allocation is written the way the controller writes it (the job's
context.json), so these run without a controller.
"""

from __future__ import annotations

import json

import pytest

from conftest import job_allocation, run_srun as srun
from sflow.exec.layout import block_layout
from sflow.records import AllocatedNode
from sflow.slurm.values import compress_counts

JOB_ID = 77


@pytest.fixture
def job_env(tmp_path):
    env, home = job_allocation(tmp_path, JOB_ID, nodes=[AllocatedNode("node1", 2, gpu_indices=(0, 1)),
                                                          AllocatedNode("node2", 2, gpu_indices=(0, 1))],
                               tasks_per_node=[2, 2], ntasks=4, ntasks_given=True, ntasks_per_node=2)
    return env, home, tmp_path


def test_tasks_get_ranks_and_nodes(job_env):
    env, home, cwd = job_env
    done = srun(env, cwd, "-l", "bash", "-c", "echo $SLURM_PROCID $SLURM_LOCALID $SLURM_NODEID $SLURMD_NODENAME $SLURM_STEP_ID")
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == [
        "0: 0 0 0 node1 0", "1: 1 1 0 node1 0", "2: 2 0 1 node2 0", "3: 3 1 1 node2 0"]
    again = srun(env, cwd, "-n1", "printenv", "SLURM_STEP_ID")
    assert again.stdout.strip() == "1"
    steps = [json.loads(line) for line in (home / "jobs" / str(JOB_ID) / "steps.jsonl").read_text().splitlines()]
    assert [(s["event"], s["step_id"]) for s in steps] == [("start", "0"), ("end", "0"), ("start", "1"), ("end", "1")]


def test_failing_tasks_fail_the_step_as_srun_reports_it(job_env):
    env, _, cwd = job_env
    done = srun(env, cwd, "bash", "-c", "exit $SLURM_PROCID")
    assert done.returncode == 3
    assert "srun: error: node2: task 3: Exited with exit code 3" in done.stderr
    assert "srun: error: node1: task 1: Exited with exit code 1" in done.stderr
    killed = srun(env, cwd, "-n2", "bash", "-c", "kill -9 $$")
    assert killed.returncode == 137
    assert f"srun: Force Terminated StepId={JOB_ID}.1" in killed.stderr


def test_stdin_goes_to_every_task_and_files_per_task(job_env):
    env, _, cwd = job_env
    done = srun(env, cwd, "-n2", "-o", "out-%j-%t.txt", "bash", "-c", "cat; echo rank $SLURM_PROCID", stdin="hello\n")
    assert done.returncode == 0, done.stderr
    assert (cwd / f"out-{JOB_ID}-0.txt").read_text() == "hello\nrank 0\n"
    assert (cwd / f"out-{JOB_ID}-1.txt").read_text() == "hello\nrank 1\n"


def test_gpus_per_task_bind_disjoint_devices(job_env):
    env, _, cwd = job_env
    done = srun(env, cwd, "-n4", "--gpus-per-task=1", "-l", "printenv", "CUDA_VISIBLE_DEVICES")
    assert sorted(done.stdout.splitlines()) == ["0: 0", "1: 1", "2: 0", "3: 1"]


def test_step_refusals_and_usage_errors(job_env):
    env, _, cwd = job_env
    assert srun(env, cwd).stderr == "srun: fatal: No command given to execute.\n"
    too_many = srun(env, cwd, "-n", "12", "true")
    assert too_many.returncode == 1
    assert too_many.stderr == f"srun: error: Unable to create step for job {JOB_ID}: More processors requested than permitted\n"
    missing = srun(env, cwd, "-n1", "no-such-command-here")
    assert missing.returncode == 2
    assert "slurmstepd-node1: error: execve(): no-such-command-here: No such file or directory" in missing.stderr
    bad = srun(env, cwd, "--bogus", "true")
    assert bad.returncode == 255 and bad.stderr.startswith("srun: unrecognized option '--bogus'")


def test_fewer_tasks_than_nodes_shrinks_the_step(job_env):
    env, _, cwd = job_env
    done = srun(env, cwd, "-n1", "printenv", "SLURM_STEP_NUM_NODES")
    assert done.stdout.strip() == "1"
    assert "srun: Warning: can't run 1 processes on 2 nodes, setting nnodes to 1" in done.stderr


@pytest.mark.parametrize("ntasks, cpus, per_node, layout", [
    (3, [2, 2], None, [2, 1]), (4, [2, 2], None, [2, 2]), (2, [2, 2], None, [1, 1]),
    (5, [2, 2], None, [3, 2]), (4, [4, 4], 2, [2, 2]),
])
def test_block_layout(ntasks, cpus, per_node, layout):
    assert block_layout(ntasks, cpus, 1, per_node) == layout


def test_tasks_per_node_text():
    assert compress_counts([2, 2, 2, 1]) == "2(x3),1"


def test_srun_jobid_runs_a_step_in_another_shells_allocation(cluster):
    import time as _time

    job_id = cluster.run("sbatch", "--parsable", "-N2", "--wrap", "sleep 30").stdout.strip()
    deadline = _time.time() + 30
    while _time.time() < deadline and cluster.run("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip() != "RUNNING":
        _time.sleep(0.2)
    step = cluster.run("srun", f"--jobid={job_id}", "-N2", "-l", "bash", "-c", "echo $SLURM_JOB_ID $SLURMD_NODENAME")
    assert step.returncode == 0, step.stderr
    assert sorted(step.stdout.splitlines()) == [f"0: {job_id} node1", f"1: {job_id} node2"]
    unknown = cluster.run("srun", "--jobid=999999", "true")
    assert (unknown.returncode, unknown.stderr) == (1, "srun: error: Unable to confirm allocation for job 999999: "
                                                       "Invalid job id specified\nsrun: Check SLURM_JOB_ID environment "
                                                       "variable. Expired or invalid job 999999\n")
    cluster.run("scancel", job_id)
