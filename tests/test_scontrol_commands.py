"""scontrol's job and partition commands as SLURM 22.05 runs them: update forms, top, requeuehold,
completing, create/delete partition, show job -d, and show hostnames' order."""

from __future__ import annotations

import re

from sflow.slurm.values import expand_hostlist


def _submit(cluster, *args: str) -> str:
    done = cluster.run("sbatch", "--parsable", "-o", "/dev/null", *args, "--wrap", "sleep 300")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _field(cluster, job: str, key: str) -> str:
    shown = cluster.run("scontrol", "show", "job", job).stdout
    match = re.search(rf"\b{re.escape(key)}=(\S*)", shown)
    return match.group(1) if match else "MISSING"


def test_hostnames_vary_the_last_bracket_then_the_first():
    # Recorded from SLURM 22.05: the last bracket fastest, then the first, then the second.
    assert expand_hostlist("row[0,1]_rack[2-3]_blade[4,5]") == [
        "row0_rack2_blade4", "row0_rack2_blade5", "row1_rack2_blade4", "row1_rack2_blade5",
        "row0_rack3_blade4", "row0_rack3_blade5", "row1_rack3_blade4", "row1_rack3_blade5"]
    assert expand_hostlist("a[0-1]b[2-3]") == ["a0b2", "a0b3", "a1b2", "a1b3"]
    assert expand_hostlist("a[0-1]b[2-3]c[5]") == ["a0b2c5", "a1b2c5", "a0b3c5", "a1b3c5"]


def test_update_keys_are_case_blind_and_may_take_their_value_as_the_next_word(cluster):
    array = _submit(cluster, "--array=0-3%1", "--begin=now+1hour", "-t1")
    assert cluster.run("scontrol", "update", f"jobid={array}", "arraytaskthrottle", "2").returncode == 0
    assert cluster.run("scontrol", "update", "JOBID", array, "TimeLimit", "5").returncode == 0
    assert _field(cluster, array, "ArrayTaskThrottle") == "2"
    done = cluster.run("scontrol", "update", f"jobid={array}", "timelimit")
    assert (done.returncode, done.stderr) == (1, "Invalid input: timelimit\nRequest aborted\n")


def test_update_of_one_array_task_splits_it_off(cluster):
    array = _submit(cluster, "--array=0-3", "--begin=now+1hour", "-t1")
    assert cluster.run("scontrol", "update", f"jobid={array}_2", "TimeLimit=7").returncode == 0
    shown = cluster.run("scontrol", "show", "job", f"{array}_2").stdout
    assert re.search(rf"JobId=(?!{array} )\d+ ArrayJobId={array} ArrayTaskId=2 ", shown), shown
    assert "TimeLimit=00:07:00" in shown
    assert _field(cluster, array, "TimeLimit") == "00:01:00"
    assert _field(cluster, array, "ArrayTaskId") == "0-1,3"


def test_update_by_job_name_and_user(cluster):
    job = _submit(cluster, "--hold", "-J", "named")
    cluster.run("scontrol", "release", job)
    done = cluster.run("scontrol", "update", "JobName=named", "UserID=4242", "Priority=5")
    assert (done.returncode, done.stderr) == (1, "scontrol: error: No jobs with user ID 4242 and name 'named'\n")
    done = cluster.run("scontrol", "update", "JobName=nothing", "Priority=5")
    assert done.stderr == "scontrol: error: No jobs with name 'nothing'\n"
    done = cluster.run("scontrol", "update", "JobName=named", f"UserID={__import__('os').getuid()}", "Priority=5")
    assert done.returncode == 0, done.stderr
    assert _field(cluster, job, "Priority") == "5"
    done = cluster.run("scontrol", "update", "Priority=5")
    assert done.returncode == 1 and done.stderr.startswith("No valid entity in update command\n")


def test_priority_of_a_held_job_is_refused(cluster):
    job = _submit(cluster, "--hold")
    done = cluster.run("scontrol", "update", f"JobId={job}", "Priority=9")
    assert (done.returncode, done.stderr) == (1, f"Job is in held state, pending scheduler release for job {job}\n")


def test_top_moves_the_named_jobs_first_in_order(cluster):
    jobs = [_submit(cluster, "--begin=now+1hour", "-J", "t") for _ in range(3)]
    assert cluster.run("scontrol", "top", f"{jobs[2]},{jobs[1]}").returncode == 0
    prio = [int(_field(cluster, j, "Priority")) for j in jobs]
    assert prio[2] > prio[1] > prio[0]
    assert cluster.run("scontrol", "top", jobs[0]).returncode == 0
    prio = [int(_field(cluster, j, "Priority")) for j in jobs]
    assert prio[0] > prio[2] > prio[1]


def test_requeuehold_holds_the_requeued_job(cluster):
    job = _submit(cluster)
    cluster.run("scontrol", "requeuehold", job)
    assert _field(cluster, job, "JobState") == "PENDING"
    assert _field(cluster, job, "Reason") in ("JobHeldUser", "JobHeldAdmin")
    assert _field(cluster, job, "Priority") == "0"


def test_completing_is_a_command(cluster):
    done = cluster.run("scontrol", "completing")
    assert (done.returncode, done.stderr) == (0, "")


def test_created_partition_is_used_until_deleted(cluster):
    done = cluster.run("scontrol", "create", "PartitionName=extra", "Nodes=node1", "MaxTime=5")
    assert done.returncode == 0, done.stderr
    assert "extra" in cluster.run("sinfo", "-h", "-o", "%P").stdout.split()
    assert "MaxTime=00:05:00" in cluster.run("scontrol", "show", "partition", "extra").stdout
    job = _submit(cluster, "-p", "extra", "--hold")
    assert cluster.run("squeue", "-h", "-o", "%P", "-j", job).stdout.strip() == "extra"
    done = cluster.run("scontrol", "create", "PartitionName=extra", "Nodes=node1")
    assert (done.returncode, done.stderr) == (1, "Error creating the partition: Invalid partition name specified\n")
    done = cluster.run("scontrol", "delete", "PartitionName=extra")
    assert (done.returncode, done.stderr) == (1, "delete_partition PartitionName=extra: Partition is in use\n")
    cluster.run("scancel", job)
    assert cluster.run("scontrol", "delete", "PartitionName=extra").returncode == 0
    assert "extra" not in cluster.run("sinfo", "-h", "-o", "%P").stdout.split()
    done = cluster.run("scontrol", "delete", "PartitionName=extra")
    assert done.stderr == "delete_partition PartitionName=extra: Invalid partition name specified\n"
    done = cluster.run("scontrol", "create", "PartitionName=bad", "Nodes=nodeX")
    assert done.stderr == "Error creating the partition: Invalid node name specified\n"
    done = cluster.run("scontrol", "create", "foo=bar")
    assert (done.returncode, done.stderr) == (1, "scontrol: error: Invalid creation entity: foo=bar\n")
    with open(cluster.env["SFLOW_CONF"]) as handle:
        assert "extra" not in handle.read()


def test_show_job_details_has_the_derived_exit_code(cluster):
    job = _submit(cluster, "--hold")
    shown = cluster.run("scontrol", "show", "job", "-d", job).stdout.splitlines()
    requeue = next(i for i, line in enumerate(shown) if line.lstrip().startswith("Requeue="))
    assert shown[requeue + 1] == "   DerivedExitCode=0:0"
    assert "DerivedExitCode" not in cluster.run("scontrol", "show", "job", job).stdout


def test_show_takes_the_entity_as_key_value(cluster):
    by_word = cluster.run("scontrol", "show", "partition", "debug")
    by_key = cluster.run("scontrol", "show", "PartitionName=debug")
    assert by_key.returncode == 0 and by_key.stdout == by_word.stdout


def test_show_job_of_one_array_task_in_every_form(cluster):
    # Recorded from SLURM 22.05: job id 0 names every array; a missing task is "not found".
    first = _submit(cluster, "--array=1-3", "--begin=now+1hour", "-t1")
    second = _submit(cluster, "--array=2-4", "--begin=now+1hour", "-t1")
    shown = cluster.run("scontrol", "show", "job", "0_2").stdout
    assert re.findall(r"JobId=(\d+) ArrayJobId=(\d+) ArrayTaskId=(\S+)", shown) == [
        (first, first, "2"), (second, second, "2")]
    assert "JobState=PENDING" in shown
    assert len(re.findall(r"^JobId=", cluster.run("scontrol", "show", "job", "0_4").stdout, re.M)) == 1
    by_key = cluster.run("scontrol", "show", f"JobId={first}_3").stdout
    assert by_key == cluster.run("scontrol", "show", "job", f"{first}_3").stdout
    assert f"JobId={first} ArrayJobId={first} ArrayTaskId=3 " in by_key
    done = cluster.run("scontrol", "show", "job", f"{first}_7")
    assert (done.returncode, done.stdout, done.stderr) == (1, f"Job {first}_7 not found\n", "")
    done = cluster.run("scontrol", "show", "job", "0_7")
    assert (done.returncode, done.stdout) == (1, "Job 0_7 not found\n")
    done = cluster.run("scontrol", "show", "job", f"{first}_x")
    assert (done.returncode, done.stderr) == (1, "scontrol_print_job error: Invalid job id specified\n")
    done = cluster.run("scontrol", "show", "job", "999999_1")
    assert (done.returncode, done.stderr) == (1, "slurm_load_jobs error: Invalid job id specified\n")
    assert len(re.findall(r"^JobId=", cluster.run("scontrol", "show", "job", "0").stdout, re.M)) == 2


def test_show_job_of_a_finished_array_task_is_its_own_record(cluster, tmp_path):
    done = cluster.run("sbatch", "--parsable", "-o", "/dev/null", "--array=1-2", "--wait", "--wrap", "true")
    array = done.stdout.strip()
    shown = cluster.run("scontrol", "show", "job", "0_1").stdout
    assert re.search(rf"JobId=\d+ ArrayJobId={array} ArrayTaskId=1 ", shown), shown
    assert "JobState=COMPLETED" in shown


def test_shrinking_a_running_job_frees_nodes_and_writes_resize_scripts(cluster):
    # Recorded from SLURM 22.05: the files land in scontrol's directory; growing is refused.
    script = cluster.work + "/shrink.sh"
    with open(script, "w") as handle:
        handle.write("#!/bin/bash\n"
                     "scontrol update JobId=$SLURM_JOB_ID NumNodes=5 2>grow.err\n"
                     "scontrol update JobId=$SLURM_JOB_ID NumNodes=1 >update.out\n"
                     ". ./slurm_job_${SLURM_JOB_ID}_resize.sh\n"
                     "echo nodes=$SLURM_NNODES list=$SLURM_JOB_NODELIST tasks=${SLURM_TASKS_PER_NODE-unset}\n"
                     "srun -l printenv SLURMD_NODENAME\n"
                     "scontrol show job $SLURM_JOB_ID | grep -o 'NumNodes=[0-9]*'\n")
    done = cluster.run("sbatch", "--parsable", "-N2", "-t1", "-o", "shrink.out", "--wait", script)
    job = done.stdout.strip()
    with open(cluster.work + "/shrink.out") as handle:
        out = handle.read().splitlines()
    assert out[0] == "nodes=1 list=node1 tasks=unset"
    assert out[1:] == ["0: node1", "NumNodes=1"]
    with open(cluster.work + f"/slurm_job_{job}_resize.sh") as handle:
        assert handle.read().splitlines()[:3] == [
            'export SLURM_NODELIST="node1"', 'export SLURM_JOB_NODELIST="node1"', "export SLURM_NNODES=1"]
    with open(cluster.work + f"/slurm_job_{job}_resize.csh") as handle:
        assert handle.read().splitlines()[-1] == "unsetenv SLURM_TASKS_PER_NODE"
    with open(cluster.work + "/update.out") as handle:
        assert handle.read().splitlines()[0] == "To reset Slurm environment variables, execute"
    with open(cluster.work + "/grow.err") as handle:
        assert handle.read() == f"Requested operation not supported on this system for job {job}\n"
