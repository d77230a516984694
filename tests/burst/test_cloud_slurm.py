"""Real SLURM 22.05 powers CLOUD nodes up and down through the programs it is given."""

from __future__ import annotations

import os
import time

from .cloud_slurm import calls, wait_for, write_program


def _sacct_state(slurm, job_id: str) -> str:
    out = slurm.run("sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State").stdout.split()
    return out[0] if out else ""


def _hosts(slurm, program_calls) -> list[str]:
    """The node names of every call's hostlist argument."""
    lists = [slurm.run("scontrol", "show", "hostnames", c["argv"][1]).stdout.split() for c in program_calls]
    return sorted(name for names in lists for name in names)


def test_a_job_boots_cloud_nodes_runs_and_they_power_down(cloud_slurm):
    resume = write_program(cloud_slurm.root, "resume", "boot")
    suspend = write_program(cloud_slurm.root, "suspend", "stop")
    slurm = cloud_slurm(resume_program=resume, suspend_program=suspend, suspend_time=3, suspend_timeout=2)
    assert slurm.node_states()["cloud1"][0] == "idle~"

    submitted = time.monotonic()
    out = slurm.run("sbatch", "--parsable", "-p", "cloud", "-N2", "--ntasks-per-node=2", "-o", "job-%j.out",
                    "--wrap", 'srun bash -c "echo \\$SLURM_PROCID \\$(hostname)"', check=True)
    job_id = out.stdout.strip()
    wait_for(lambda: slurm.job(job_id).get("JobState") in ("RUNNING", "COMPLETING", "COMPLETED"), 60,
             "the job to run")
    running = time.monotonic()
    wait_for(lambda: _sacct_state(slurm, job_id) == "COMPLETED", 60, "the job to be COMPLETED in sacct")
    completed = time.monotonic()

    lines = open(os.path.join(slurm.dir, f"job-{job_id}.out")).read().split("\n")
    ranks = sorted(tuple(line.split()) for line in lines if line)
    assert [r for r, _ in ranks] == ["0", "1", "2", "3"]
    assert sorted(h for _, h in ranks) == ["cloud1", "cloud1", "cloud2", "cloud2"]
    assert [c["argv"][1] for c in calls(resume)] == ["cloud[1-2]"]

    # SuspendTime after the job, both nodes are powered down again and their slurmds are gone.
    wait_for(lambda: all(slurm.node_states()[n][0] == "idle~" for n in slurm.cloud_nodes), 60,
             "the cloud nodes to power down")
    print(f"sbatch to RUNNING {running - submitted:.1f}s, then COMPLETED in sacct {completed - running:.1f}s, "
          f"then powered down {time.monotonic() - completed:.1f}s")
    assert _hosts(slurm, calls(suspend)) == ["cloud1", "cloud2"]
    wait_for(lambda: not any(slurm.slurmd_pid(n) for n in slurm.cloud_nodes), 20, "the slurmds to stop")


def test_a_node_that_never_boots_fails_its_resume_and_the_job_waits_again(cloud_slurm):
    resume = write_program(cloud_slurm.root, "resume")  # records the call, boots nothing
    failed = write_program(cloud_slurm.root, "resume_fail")
    suspend = write_program(cloud_slurm.root, "suspend", "stop")  # without one, SLURM disables power saving
    slurm = cloud_slurm(resume_program=resume, resume_fail_program=failed, suspend_program=suspend,
                        resume_timeout=5)

    job_id = slurm.run("sbatch", "--parsable", "-p", "cloud", "-N1", "--wrap", "true", check=True).stdout.strip()
    wait_for(lambda: calls(failed), 60, "ResumeFailProgram to be called")
    assert [c["argv"][1] for c in calls(failed)] == [c["argv"][1] for c in calls(resume)] == ["cloud1"]
    job = wait_for(lambda: (j := slurm.job(job_id)).get("JobState") == "PENDING" and j, 30,
                   "the job to wait again")
    assert job["Restarts"] == "1"
    assert slurm.node_states()["cloud1"] == ("down~", "ResumeTimeout reached")
