"""Arrays, holds, begin times, requeue, --wait and updates, end to end."""

from __future__ import annotations

import os
import time
from queue_harness import queue  # noqa: F401  (the fixture)

from sflow.queue.jobs import Job
from sflow.queue.lifecycle import JobLife
from sflow.records import JobRecord


def test_array_ids_as_slurm_gives_them(queue):
    array = queue.sbatch("--array=0-3", "--wrap", "sleep 0.5")
    queue.wait_done(array)
    tasks = sorted(queue.jobs(array), key=lambda j: j.array_task_id)
    # Tasks split off the pending record take new ids; the last one keeps the array's own.
    assert [(j.array_task_id, j.job_id) for j in tasks] == [(0, array + 1), (1, array + 2), (2, array + 3),
                                                            (3, array)]
    assert all(j.array_job_id == array and j.array_task_str is None for j in tasks)
    assert sorted(os.listdir(queue.work)) == [f"slurm-{array}_{i}.out" for i in range(4)]
    assert tasks[0].stdout == os.path.join(queue.work, f"slurm-{array}_0.out")


def test_array_throttle_and_pending_record(queue):
    log = os.path.join(queue.work, "throttle.log")
    array = queue.sbatch("--array=1-6%2", "--wrap", f"echo + >> {log}; sleep 0.3; echo - >> {log}")
    remainder = queue.wait_for(lambda: (j := queue.job(array)).reason == "JobArrayTaskLimit" and j,
                               what="throttle")
    assert remainder.state == "PENDING" and remainder.array_task_str in ("3-6%2", "4-6%2", "5-6%2")
    assert queue.wait_done(array)["exit_code"] == 0
    depth, most = 0, 0
    with open(log) as handle:
        for mark in handle.read().split():
            depth += 1 if mark == "+" else -1
            most = max(most, depth)
    assert most == 2


def test_wait_reports_the_worst_exit_code(queue):
    array = queue.sbatch("--array=0-2", "--wrap", "exit $SLURM_ARRAY_TASK_ID")
    assert queue.wait_done(array)["exit_code"] == 2
    killed = queue.sbatch("--wrap", "kill -9 $$")
    summary = queue.wait_done(killed)
    assert summary["exit_code"] == 1 and summary["states"][str(killed)] == "FAILED"
    job = queue.job(killed)
    assert (job.exit_code, job.exit_signal, job.reason) == (0, 9, "JobLaunchFailure")  # SLURM's word for it


def test_hold_release_and_priority(queue):
    job_id = queue.sbatch("--hold", "--wrap", "true")
    assert queue.job(job_id).priority == 0
    reply = queue.call("release", job_ids=[str(job_id)])
    assert reply["ok"]
    assert queue.wait_done(job_id)["states"][str(job_id)] == "COMPLETED"
    pending = queue.sbatch("--begin=now+600", "--wrap", "true")
    assert queue.call("hold", job_ids=[str(pending)], admin=True)["ok"]
    job = queue.job(pending)
    assert (job.held, job.reason, job.priority) == (True, "JobHeldAdmin", 0)
    assert queue.call("release", job_ids=[str(pending)])["ok"]
    job = queue.wait_for(lambda: (j := queue.job(pending)).reason == "BeginTime" and j, what="BeginTime")
    assert job.priority > 0
    missing = queue.call("hold", job_ids=["99999"])
    assert (missing["ok"], missing["exit_code"], missing["stderr"]) == (
        False, 1, "Invalid job id specified for job 99999\nslurm_suspend error: Invalid job id specified\n")


def test_begin_time_delays_start(queue):
    start = time.time()
    job_id = queue.sbatch("--begin=now+2", "--wrap", "true")
    job = queue.job(job_id)
    assert (job.state, job.reason) == ("PENDING", "BeginTime")
    assert job.eligible_time >= start + 1
    queue.wait_done(job_id, timeout=10)
    # Begin times are whole seconds, as SLURM keeps them: now+2 is two
    # ticks of the clock's second, not two seconds from the float now.
    assert queue.job(job_id).start_time >= int(start) + 2


def test_requeue_running_and_finished_jobs(queue):
    marker = os.path.join(queue.work, "runs")
    script = f"echo run$SLURM_RESTART_COUNT >> {marker}; sleep 30"
    job_id = queue.sbatch("--wrap", script)
    queue.wait_for(lambda: os.path.exists(marker), what="first run")
    assert queue.call("requeue", job_ids=[str(job_id)])["ok"]
    queue.wait_for(lambda: len(open(marker).read().split()) == 2, what="second run")
    assert open(marker).read().split()[1] == "run1"
    job = queue.job(job_id)
    assert (job.state, job.restart_count) == ("RUNNING", 1)
    queue.scancel(str(job_id))
    queue.wait_state(job_id, "CANCELLED")
    assert queue.call("requeue", job_ids=[str(job_id)], hold=True)["ok"]
    job = queue.job(job_id)
    assert (job.state, job.held, job.restart_count) == ("PENDING", True, 2)
    refused = queue.call("requeue", job_ids=[str(job_id)])
    assert refused["stderr"] == f"Job is pending execution for job {job_id}\n" and refused["exit_code"] == 1
    never = queue.sbatch("--no-requeue", "--wrap", "true")
    queue.wait_done(never)
    assert queue.call("requeue", job_ids=[str(never)])["stderr"] == (
        f"Requested operation is presently disabled for job {never}\n")
    assert queue.call("requeue", job_ids=["99999"])["stderr"] == "Invalid job id specified for job 99999\n"


def test_update_time_limit_name_and_refusals(queue):
    job_id = queue.sbatch("--hold", "-t", "10", "--wrap", "true")
    assert queue.call("update", job_id=str(job_id), changes={"TimeLimit": "+5", "JobName": "renamed"})["ok"]
    job = queue.job(job_id)
    assert (job.time_limit, job.name) == (15, "renamed")
    bad = queue.call("update", job_id=str(job_id), changes={"JobName": "x", "Bogus": "1"})
    assert (bad["ok"], bad["stderr"]) == (False, "Update of this parameter is not supported: Bogus=1\nRequest aborted\n")
    assert queue.job(job_id).name == "renamed"  # nothing of a refused update sticks
    assert queue.call("update", job_id="99999", changes={"TimeLimit": "5"})["stderr"] == (
        "Invalid job id specified for job 99999\n")
    queue.call("update", job_id=str(job_id), changes={"Dependency": "afterok:99998"})
    assert queue.job(job_id).dependency == "afterok:99998(unfulfilled)"


def test_finish_allocation_ends_a_holder_job(queue):
    job_id = queue.sbatch("--wrap", "sleep 60")
    queue.wait_state(job_id, "RUNNING")
    queue.wait_for(lambda: os.path.exists(os.path.join(queue.home, "jobs", str(job_id), "pid")), what="launch")
    assert queue.call("finish_allocation", job_id=job_id, exit_code=4)["ok"]
    job = queue.wait_state(job_id, "FAILED")
    assert job.exit_code == 4


def test_step_records_and_job_env_info(queue):
    job_id = queue.sbatch("--wrap", "sleep 30")
    queue.wait_state(job_id, "RUNNING")
    info = queue.call("job_env_info", job_id=job_id)
    assert info["ok"] and info["allocation"]["nodes"][0]["name"] == "n1"
    assert queue.call("step_start", job_id=job_id, step_id="0", name="hostname", num_tasks=2, num_cpus=2)["ok"]
    assert queue.call("step_end", job_id=job_id, step_id="0", exit_code=0)["ok"]
    from sflow.queue import store

    step = store.read_steps(queue.home, [job_id])[0]
    assert (step.step_id, step.name, step.state, step.num_tasks) == ("0", "hostname", "COMPLETED", 2)
    queue.scancel(str(job_id))
    queue.wait_state(job_id, "CANCELLED")
    steps = {s.step_id: s for s in store.read_steps(queue.home, [job_id])}
    assert steps["batch"].state == "CANCELLED" and steps["batch"].exit_signal == 15
    gone = queue.call("job_env_info", job_id=job_id)
    assert gone["stderr"] == f"Unable to confirm allocation for job {job_id}: Invalid job id specified\n"


def test_holding_one_pending_task_splits_it_off(queue):
    array = queue.sbatch("--array=0-5%1", "--wrap", "sleep 0.1")
    queue.call("hold", job_ids=[f"{array}_4"])
    held = [j for j in queue.jobs(array) if j.held]
    assert [(j.array_task_id, j.reason, j.state) for j in held] == [(4, "JobHeldUser", "PENDING")]
    assert held[0].job_id != array
    queue.wait_for(lambda: sum(j.state == "COMPLETED" for j in queue.jobs(array)) == 5, what="other tasks")
    assert queue.job(held[0].job_id).state == "PENDING"
    queue.call("release", job_ids=[f"{array}_4"])
    assert queue.wait_done(array)["states"][str(held[0].job_id)] == "COMPLETED"


class _Life(JobLife):
    """Only what ``finish`` touches of a controller."""

    def __init__(self):
        self.jobs, self.after_commit = {}, []

    def backend_run_over(self, job, state):
        pass

    def save(self, job):
        pass

    def answer_waiters(self):
        pass


def _cancelled_pending(reason: str, **job) -> float | None:
    rec = JobRecord(job_id=1, name="j", user="u", uid=1, gid=1, partition="debug", state="PENDING", reason=reason,
                    submit_time=100.0, work_dir="/w", command="c")
    _Life().finish(Job(rec=rec, **job), "CANCELLED")
    return rec.eligible_time


def test_a_job_cancelled_before_a_scheduling_pass_keeps_when_it_was_eligible():
    # sacct's windows list only jobs that were ever eligible, as SLURM's accounting records them.
    before = time.time()
    assert _cancelled_pending("None") >= before  # submitted or released a moment ago
    assert _cancelled_pending("BeginTime", begin_time=5000.0) == 5000.0
    assert _cancelled_pending("JobHeldUser") is None
    assert _cancelled_pending("Dependency") is None
