"""The SLURM environment of batch scripts and srun tasks, against real SLURM's (compat/golden/env.json).

Each recorded job is rebuilt from the same sbatch options and the allocation
SLURM gave it; sflow's environment table must produce the same variables.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from sflow.conf import load_file
from sflow.exec.context import job_context
from sflow.exec.env import JobContext, StepContext, Where, batch_environment, task_environment
from sflow.exec.layout import ranks_by_node
from sflow.records import AllocatedNode, JobRecord
from sflow.slurm.request import parse_sbatch
from sflow.slurm.values import expand_counts, expand_hostlist
from sflow.backends.base import Allocation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = json.load(open(os.path.join(ROOT, "compat", "golden", "env.json")))
CLUSTER = load_file(os.path.join(ROOT, "compat", "golden", "ref-slurm.conf"))
JOB_ID = 4242
# Values that name the machine, the daemon or a process rather than the job.
VOLATILE = {"SLURM_TASK_PID", "SLURM_CONF", "SLURM_SUBMIT_HOST",
            "SLURM_STEP_LAUNCHER_PORT", "SLURM_SRUN_COMM_PORT", "SLURM_SRUN_COMM_HOST", "SLURM_LAUNCH_NODE_IPADDR",
            "SLURM_JOB_CPUS_PER_NODE_PACK_GROUP_0", "SLURM_UMASK"}


def _rebuild(case: dict, tmp_path):
    recorded = case["batch"]
    script = tmp_path / "job.sh"
    sub = parse_sbatch([*case["args"], str(script)], env={}, cwd="{cwd}", script_text="#!/bin/bash\ntrue\n",
                       user="root", uid=0, gid=0, host="vm", cluster=CLUSTER)
    req = sub.request
    names = expand_hostlist(recorded["SLURM_JOB_NODELIST"])
    cpus = expand_counts(recorded["SLURM_JOB_CPUS_PER_NODE"])
    tasks = expand_counts(recorded["SLURM_TASKS_PER_NODE"])
    gpus = tuple(int(g) for g in recorded.get("SLURM_JOB_GPUS", "").split(",") if g)
    alloc = Allocation(JOB_ID, [AllocatedNode(n, c, 0, gpus, "", None, t) for n, c, t in zip(names, cpus, tasks)])
    array_id = JOB_ID if req.array else None
    task_id = int(recorded["SLURM_ARRAY_TASK_ID"]) if req.array else None
    own_id = int(recorded["SLURM_JOB_ID"]) if recorded["SLURM_JOB_ID"].isdigit() else JOB_ID
    job = JobRecord(job_id=own_id, name=req.job_name, user="root", uid=0, gid=0, partition="debug", state="RUNNING",
                    reason="None", submit_time=0.0, work_dir="{cwd}", command=str(script),
                    array_job_id=array_id, array_task_id=task_id, account="root")
    return job_context(job, req, alloc, CLUSTER)


def _expected(env: dict) -> dict:
    return {k: v.replace("{job_id}", str(JOB_ID)) for k, v in env.items() if k not in VOLATILE}



@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_batch_environment_matches_slurm(name, tmp_path):
    ctx = _rebuild(GOLDEN[name], tmp_path)
    env = batch_environment(ctx, {"SLURM_SUBMIT_HOST": "vm"})
    ours = {k: v for k, v in env.items() if k in GOLDEN[name]["batch"] or k.startswith("SLURM")}
    ours = {k: v for k, v in ours.items() if k not in VOLATILE}
    assert ours == _expected(GOLDEN[name]["batch"])


@pytest.mark.parametrize("name", sorted(n for n in GOLDEN if GOLDEN[n]["tasks"]))
def test_task_environment_matches_slurm(name, tmp_path):
    ctx = _rebuild(GOLDEN[name], tmp_path)
    step = StepContext(step_id=0, nodes=ctx.nodes, tasks_per_node=ctx.tasks_per_node,
                       cpus_per_task=ctx.cpus_per_task)
    base = batch_environment(ctx, {})
    for node_index, ranks in enumerate(ranks_by_node(ctx.tasks_per_node)):
        for local_id, rank in enumerate(ranks):
            env = task_environment(ctx, base, Where(node_index=node_index, rank=rank, local_id=local_id, step=step))
            recorded = _expected(GOLDEN[name]["tasks"][rank])
            ours = {k: v for k, v in env.items() if (k in recorded or k.startswith("SLURM")) and k not in VOLATILE}
            assert ours == recorded, f"task {rank}"


def test_batch_step_knows_its_own_pid_and_a_temporary_directory(tmp_path):
    from sflow.exec.batch import launch_batch

    ctx = _rebuild(GOLDEN["plain"], tmp_path)
    ctx.work_dir = str(tmp_path)
    script = "#!/bin/sh\necho $SLURM_TASK_PID $$ $TMPDIR $SLURM_NODE_ALIASES $SLURM_WORKING_CLUSTER $HOSTNAME\n"
    step = launch_batch(ctx, script, [], {"PATH": "/usr/bin:/bin"}, home=str(tmp_path / "home"),
                        stdout_pattern=str(tmp_path / "out"))
    step.popen.wait()
    task_pid, own_pid, tmpdir, aliases, working, hostname = (tmp_path / "out").read_text().split()
    assert task_pid == own_pid and tmpdir == "/tmp" and aliases == "(null)"
    assert working == GOLDEN["plain"]["batch"]["SLURM_WORKING_CLUSTER"]
    assert hostname == GOLDEN["plain"]["batch"]["SLURMD_NODENAME"]


def test_a_jobs_own_tmpdir_is_kept(tmp_path):
    env = batch_environment(_rebuild(GOLDEN["plain"], tmp_path), {"TMPDIR": "/var/tmp"})
    assert env["TMPDIR"] == "/var/tmp"


def test_a_variable_no_shell_could_name_reaches_the_script(tmp_path):
    from sflow.exec.batch import launch_batch

    ctx = _rebuild(GOLDEN["plain"], tmp_path)
    ctx.work_dir = str(tmp_path)
    script = "#!/bin/bash\nexec env\n"
    step = launch_batch(ctx, script, ["a=b"], {"PATH": "/usr/bin:/bin", "TEST_ENV_17.14": "1 2", "OK": "x"},
                        home=str(tmp_path / "home"), stdout_pattern=str(tmp_path / "out"))
    step.popen.wait()
    lines = (tmp_path / "out").read_text().splitlines()
    assert "TEST_ENV_17.14=1 2" in lines and "OK=x" in lines and lines.count("SLURM_JOB_NAME=plain") == 1


def test_pythons_own_locale_coercion_never_reaches_the_job(cluster):
    # With no locale set, CPython gives itself LC_CTYPE=C.UTF-8 at start-up; real sbatch passes none.
    env = {k: v for k, v in cluster.env.items() if not k.startswith(("LC_", "LANG"))}
    out = os.path.join(cluster.work, "env.out")
    done = subprocess.run(["sbatch", "-W", "-o", out, "--wrap", "env; srun env"], cwd=cluster.work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with open(out) as handle:
        assert "LC_CTYPE=" not in handle.read()


def test_the_context_file_keeps_the_node_fields_instances_read():
    # An instance may run another sflow version: the file's node entries keep their shape.
    ctx = JobContext(job_id=1, job_name="t", user="u", uid=0, gid=0, partition="debug", account="u", qos="normal",
                     cluster_name="c", submit_dir="/", submit_host="h", work_dir="/",
                     nodes=[AllocatedNode("node1", 2, tasks=2)], tasks_per_node=[2], ntasks=2)
    (node,) = ctx.to_json()["nodes"]
    assert set(node) == {"name", "cpus", "mem_mb", "gpu_indices", "root_dir", "address", "instance"}
    assert JobContext.from_json(ctx.to_json()).nodes[0].name == "node1"
