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
    ran = dict(state="COMPLETED", eligible_time=1.0, start_time=2.0, reason="None", nodelist="node1")
    jobs = [_job(1, end_time=50.0, **ran), _job(2, end_time=90.0, **ran)]
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


def _many_jobs() -> tuple[list[JobRecord], list[StepRecord]]:
    """Forty ended jobs whose values repeat in some columns and not in others, with steps."""
    jobs, steps = [], []
    for number in range(40):
        job_id = 100 + number
        start = 1.7e9 + number * 37.5
        state = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")[number % 4]
        jobs.append(_job(job_id, name=("a", "long-name-of-a-job", "é")[number % 3], state=state, reason="None",
                         start_time=start, end_time=start + (0, 61, 3600, 90000)[number % 4] + number,
                         submit_time=start - 5, eligible_time=start - 5, num_cpus=(1, 2, 64)[number % 3],
                         cancelled_by=0 if state == "CANCELLED" and number % 8 == 2 else None,
                         exit_code=number % 3, exit_signal=(0, 9)[number % 2], time_limit=(None, 10, 2000)[number % 3],
                         min_memory_mb=(None, 512, 2048)[number % 3], cost_cents=(None, 12.5)[number % 2],
                         array_job_id=90 if number % 5 == 0 else None,
                         array_task_id=number if number % 5 == 0 else None, array_task_str=None))
        if number % 2:
            steps.append(StepRecord(job_id, "batch", "batch", state, start, start + number, "node1", exit_code=1))
    return jobs, steps


def test_sacct_each_line_of_a_long_listing_is_the_jobs_own():
    # A long listing makes each column in one pass, each repeated value formatted once: every job's
    # lines are still those sacct shows for that job alone.
    jobs, steps = _many_jobs()
    fields = "JobID,JobIDRaw,JobName,State,ExitCode,AllocCPUS,Elapsed,ElapsedRaw,CPUTime,Start,End,Submit,Eligible," \
             "Timelimit,TimelimitRaw,ReqMem,Group,Cost,AllocTRES,NodeList,Partition,Account"
    now = 1.7e9 + 1e5
    listing = sacct_main(["-a", "-S", "2020-01-01", "-P", "-n", "-o", fields], jobs, steps, now=now, user="alice")[0]
    alone = "".join(sacct_main(["-j", str(job.job_id), "-P", "-n", "-o", fields], jobs, steps, now=now,
                               user="alice")[0] for job in jobs)
    assert sorted(listing.splitlines()) == sorted(alone.splitlines()) and len(listing.splitlines()) == 60
    assert listing.count("CANCELLED by 0") == 5 and "1-01:00:" in listing


def test_sacct_columns_pad_and_cut_each_value_as_alone():
    jobs, steps = _many_jobs()
    argv = ["-a", "-S", "2020-01-01", "-n", "-o", "JobID%5,JobName%-4,State%9,Elapsed%-10,ExitCode%2"]
    parsable = sacct_main([*argv, "-P"], jobs, steps, now=1.7e9, user="alice")[0].splitlines()
    fixed = sacct_main(argv, jobs, steps, now=1.7e9, user="alice")[0].splitlines()

    def fit(value: str, width: int, left: bool) -> str:
        value = value if len(value) <= width else value[:width - 1] + "+"
        return value.ljust(width) if left else value.rjust(width)

    widths = [(5, False), (4, True), (9, False), (10, True), (2, False)]
    assert fixed == ["".join(fit(value, *spec) + " " for value, spec in zip(line.split("|"), widths))
                     for line in parsable]
