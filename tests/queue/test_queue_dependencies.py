"""Every kind of dependency, end to end, and the rules on their own (delays, arrays)."""

from __future__ import annotations

import os

import pytest

from sflow.queue import deps
from sflow.slurm.model import DependencyRequest
from sflow.slurm.values import parse_dependency
from queue_harness import queue  # noqa: F401  (the fixture)


def _ran(queue, job_id: int) -> bool:
    return queue.job(job_id).start_time is not None and queue.job(job_id).state != "CANCELLED"


def test_afterok_afternotok_afterany_after(queue):
    good = queue.sbatch("--wrap", "sleep 0.3")
    bad = queue.sbatch("--wrap", "sleep 0.3; exit 2")
    waits = {
        "afterok_good": queue.sbatch("-d", f"afterok:{good}", "--wrap", "true"),
        "afterok_bad": queue.sbatch("-d", f"afterok:{bad}", "--wrap", "true"),
        "afternotok_bad": queue.sbatch("-d", f"afternotok:{bad}", "--wrap", "true"),
        "afternotok_good": queue.sbatch("-d", f"afternotok:{good}", "--wrap", "true"),
        "afterany_bad": queue.sbatch("-d", f"afterany:{bad}", "--wrap", "true"),
        "after_good": queue.sbatch("-d", f"after:{good}", "--wrap", "true"),
        "either": queue.sbatch("-d", f"afterok:{bad}?afterok:{good}", "--wrap", "true"),
        "unknown": queue.sbatch("-d", "afterok:99999", "--wrap", "true"),
    }
    early = queue.job(waits["afterok_good"])
    assert (early.state, early.dependency) == ("PENDING", f"afterok:{good}(unfulfilled)")
    assert queue.wait_done(good, bad)["ok"]
    for name in ("afterok_good", "afternotok_bad", "afterany_bad", "after_good", "either", "unknown"):
        assert queue.wait_done(waits[name])["states"][str(waits[name])] == "COMPLETED", name
    for name in ("afterok_bad", "afternotok_good"):
        job = queue.wait_for(lambda: (j := queue.job(waits[name])).reason == "DependencyNeverSatisfied" and j,
                             what=name)
        assert job.state == "PENDING"
    assert queue.job(waits["afterok_bad"]).dependency == f"afterok:{bad}(failed)"
    assert queue.job(waits["after_good"]).start_time >= queue.job(good).start_time


def test_kill_on_invalid_dep_cancels_the_waiting_job(queue):
    bad = queue.sbatch("--wrap", "exit 1")
    doomed = queue.sbatch("-d", f"afterok:{bad}", "--kill-on-invalid-dep=yes", "--wrap", "true")
    job = queue.wait_state(doomed, "CANCELLED")
    assert job.reason == "DependencyNeverSatisfied"


def test_singleton_runs_one_at_a_time(queue):
    log = os.path.join(queue.work, "singleton.log")
    script = f"echo start $SLURM_JOB_ID >> {log}; sleep 0.3; echo end $SLURM_JOB_ID >> {log}"
    ids = [queue.sbatch("-J", "solo", "-d", "singleton", "--wrap", script) for _ in range(3)]
    other = queue.sbatch("-J", "other", "-d", "singleton", "--wrap", "true")
    queue.wait_done(*ids, other)
    with open(log) as handle:
        lines = handle.read().split("\n")
    assert lines[:6] == [f"{word} {i}" for i in ids for word in ("start", "end")]


def test_aftercorr_pairs_array_tasks(queue):
    first = queue.sbatch("--array=0-2", "--wrap", "sleep 0.$SLURM_ARRAY_TASK_ID; exit $((SLURM_ARRAY_TASK_ID == 1))")
    second = queue.sbatch("--array=0-2", "-d", f"aftercorr:{first}", "--wrap", "true")
    queue.wait_done(first)
    queue.wait_for(lambda: {j.array_task_id for j in queue.jobs(second) if j.state == "COMPLETED"} == {0, 2},
                   what="tasks 0 and 2")
    rest = queue.wait_for(lambda: [j for j in queue.jobs(second) if j.state == "PENDING"
                                   and j.reason == "DependencyNeverSatisfied"], what="task 1 to be stuck")
    assert (rest[0].job_id, rest[0].array_task_str) == (second, "1")  # the pending record, task 1 left


def test_dependency_on_a_whole_array_waits_for_every_task(queue):
    array = queue.sbatch("--array=0-3%2", "--wrap", "sleep 0.2")
    after = queue.sbatch("-d", f"afterok:{array}", "--wrap", "true")
    queue.wait_done(after)
    last_end = max(j.end_time for j in queue.jobs(array))
    assert queue.job(after).start_time >= last_end
    task = queue.sbatch("-d", f"afterany:{array}_3", "--wrap", "true")
    assert queue.wait_done(task)["ok"]


class Fake(deps.Lookup):
    def __init__(self, jobs, arrays=None):
        self.jobs, self.arrays = jobs, arrays or {}

    def job(self, job_id):
        return self.jobs.get(job_id)

    def array(self, array_job_id):
        return self.arrays.get(array_job_id)

    def task(self, array_job_id, index):
        tasks = self.arrays.get(array_job_id) or []
        return tasks[index] if index < len(tasks) else None

    def singleton_blocked(self, name, user, job_id, seq):
        return name == "busy"


def _dep(text: str) -> DependencyRequest:
    parsed = parse_dependency(text)
    return DependencyRequest(any_of=parsed.any_of, text=text, items=[
        {"kind": i.kind, "job_id": i.job_id, "delay_minutes": i.delay_minutes} for i in parsed.items])


@pytest.mark.parametrize("text, now, expected", [
    ("after:5+10", 1000 + 599, ("wait", "after:5+10(unfulfilled)")),
    ("after:5+10", 1000 + 600, ("ok", "")),
    ("after:6", 0, ("wait", "after:6(unfulfilled)")),
    ("afterok:7,afterany:5", 0, ("wait", "afterany:5(unfulfilled)")),
    ("afterok:8,afterok:7", 0, ("never", "afterok:8(failed)")),
    ("afterok:8?afterany:5", 0, ("wait", "afterok:8(failed)?afterany:5(unfulfilled)")),
    ("afternotok:8?afterok:9", 0, ("ok", "")),
    ("singleton", 0, ("ok", "")),
    ("afterok:20", 0, ("never", "afterok:20(failed)")),
    ("afternotok:20", 0, ("ok", "")),
    ("afterany:20_1", 0, ("ok", "")),
    ("afterok:20_2", 0, ("wait", "afterok:20_2(unfulfilled)")),
])
def test_rules(text, now, expected):
    jobs = {
        5: deps.Target("RUNNING", start_time=1000.0),
        6: deps.Target("PENDING"),
        7: deps.Target("COMPLETED", end_time=1.0),
        8: deps.Target("FAILED", exit_code=1, end_time=1.0),
        9: deps.Target("TIMEOUT", exit_signal=15, end_time=1.0),
    }
    arrays = {20: [deps.Target("COMPLETED", end_time=1.0), deps.Target("FAILED", exit_code=3, end_time=1.0),
                   deps.Target("PENDING")]}
    arrays[20] = arrays[20][:2] + [deps.Target("PENDING")]
    if text in ("afterok:20", "afternotok:20"):
        arrays[20] = arrays[20][:2]  # every task ended, one failed
    result = deps.evaluate(_dep(text), Fake(jobs, arrays), job_id=1, name="j", user="u", now=now)
    assert result == expected
    busy = deps.evaluate(_dep("singleton"), Fake(jobs), job_id=1, name="busy", user="u", now=0)
    assert busy == ("wait", "singleton(unfulfilled)")
