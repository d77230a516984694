"""Long listings: squeue -r writes a pending array's tasks from one row, and sacct asks its loaders
only for what it shows; both the same bytes as the plain way."""

from __future__ import annotations

import pytest

from sflow.records import JobRecord, StepRecord, job_row
from sflow.slurm.indexset import IndexSet
from sflow.views.sacct import sacct_main
from sflow.views.squeue import squeue_main


def _job(job_id: int, **extra) -> JobRecord:
    fields = dict(job_id=job_id, name="j", user="alice", uid=1234, gid=1234, partition="debug", state="PENDING",
                  reason="JobHeldUser", submit_time=1.0, work_dir="/w", command="/w/s.sh")
    return JobRecord(**{**fields, **extra})


ARRAY = _job(10, name="a{0}", array_job_id=10, array_task_str="1-3,7", priority=5)
JOBS = [ARRAY, _job(11, array_job_id=10, array_task_id=0, state="RUNNING", reason="None", nodelist="node1",
                    start_time=2.0), _job(12, priority=9), _job(13, priority=5)]


def _squeue(*argv, indices=IndexSet.of([1, 2, 3, 7])):
    return squeue_main(list(argv), JOBS, now=100.0, user="alice", pending_indices=lambda job: indices)


def test_squeue_r_lists_each_pending_task_where_its_array_sorts():
    out, err, code = _squeue("-r", "-o", "%i|%j|%K|%F|%t|%R")
    assert (err, code) == ("", 0)
    assert out.splitlines() == [
        "JOBID|NAME|ARRAY_TASK_ID|ARRAY_JOB_ID|ST|NODELIST(REASON)",
        "12|j|N/A|12|PD|(JobHeldUser)", "13|j|N/A|13|PD|(JobHeldUser)",
        "10_1|a{0}|1|10|PD|(JobHeldUser)", "10_2|a{0}|2|10|PD|(JobHeldUser)", "10_3|a{0}|3|10|PD|(JobHeldUser)",
        "10_7|a{0}|7|10|PD|(JobHeldUser)", "10_0|j|0|10|R|node1"]


def test_squeue_r_rows_are_the_tasks_own_rows():
    # Sorted by id, the tasks are made one by one; in the default order, from one row of their array's.
    by_default = _squeue("-r", "-l", "-h")[0].splitlines()
    by_id = _squeue("-r", "-l", "-h", "-S", "i")[0].splitlines()
    assert sorted(by_default) == sorted(by_id) and len(by_default) == 7


WIDE = IndexSet.from_runs([(7, 12, 1), (98, 101, 1), (999, 1001, 1), (123456, 123456, 1)])


@pytest.mark.parametrize("argv", [["-r"], ["-r", "-l"], ["-r", "-o", "%i %T"], ["-r", "-o", "%.5i|%j"],
                                  ["-r", "-o", "%-8i|%j"], ["-r", "-o", "%.9i%K"], ["-r", "-O", "JobID:6,Name"],
                                  ["-r", "-o", "{%i}%%"], ["-r", "-o", "%20i%i"]])
def test_squeue_r_tasks_of_every_id_length_are_their_own_rows(argv):
    # Ids of one length are written at once, those that a narrow cell cuts one by one.
    by_default = _squeue(*argv, indices=WIDE)[0].splitlines()
    by_id = _squeue(*argv, "-S", "i", indices=WIDE)[0].splitlines()
    assert sorted(by_default) == sorted(by_id) and len(by_default) >= len(WIDE) + 3


def test_squeue_r_leaves_out_an_array_with_no_pending_task_left():
    assert "10_" not in _squeue("-r", "-h", indices=IndexSet())[0].replace("10_0", "")


def test_sacct_asks_its_loaders_only_for_the_named_jobs_or_its_window():
    jobs = [_job(1, state="COMPLETED", start_time=2.0, end_time=50.0, reason="None"),
            _job(2, state="COMPLETED", start_time=2.0, end_time=90.0, reason="None")]
    steps = [StepRecord(1, "batch", "batch", "COMPLETED", 2.0, 50.0), StepRecord(2, "batch", "batch", "COMPLETED",
                                                                                  2.0, 90.0)]
    asked = []

    def load_jobs(ids=None, ended_since=None):
        asked.append(("jobs", ids, ended_since))
        return [job_row(job) for job in jobs]

    def load_steps(job_ids, running, usage):
        asked.append(("steps", job_ids, usage))
        return steps

    def both(*argv):
        given = sacct_main(list(argv), jobs, steps, now=100.0, user="alice")
        loaded = sacct_main(list(argv), load_jobs, load_steps, now=100.0, user="alice")
        assert loaded == given
        return given

    assert both("-j", "2", "-P", "-o", "JobID,State")[0] == "JobID|State\n2|COMPLETED\n2.batch|COMPLETED\n"
    assert asked == [("jobs", [2], None), ("steps", [2], False)]
    asked.clear()
    assert both("-X", "-S", "00:01:10", "-P", "-n", "-o", "JobID")[0] == "2\n"
    assert asked == [("jobs", None, 70.0)]  # -X without usage fields: no steps read
    asked.clear()
    both("-X", "-j", "1", "-o", "JobID,TotalCPU")
    assert asked == [("jobs", [1], None), ("steps", [1], True)]
