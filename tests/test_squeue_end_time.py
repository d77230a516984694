"""squeue's END_TIME (%e, -O EndTime): a running job's expected end, as squeue 22.05 shows it."""

from __future__ import annotations

import time

from sflow.records import INFINITE, JobRecord
from sflow.views.squeue import squeue_main


def _job(job_id: int, **extra) -> JobRecord:
    fields = dict(job_id=job_id, name="j", user="alice", uid=1234, gid=1234, partition="debug", state="RUNNING",
                  reason="None", submit_time=1.0, work_dir="/w", command="/w/s.sh", stdout="/w/o",
                  nodelist="node2", start_time=1_000_000.0)
    fields.update(extra)
    return JobRecord(**fields)


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(seconds))


def test_a_running_jobs_end_is_its_start_plus_its_limit_none_without_one_na_while_pending():
    jobs = [_job(1, time_limit=5), _job(2, time_limit=INFINITE), _job(3, time_limit=None),
            _job(4, state="PENDING", start_time=None, nodelist="", reason="JobHeldUser", time_limit=5),
            _job(5, state="COMPLETED", time_limit=5, end_time=1_000_030.0)]
    out, err, code = squeue_main(["-h", "-t", "all", "-o", "%i %e"], jobs, now=1_000_010.0)
    assert (err, code) == ("", 0)
    assert sorted(out.splitlines()) == [f"1 {_iso(1_000_300)}", "2 NONE", "3 NONE", "4 N/A", f"5 {_iso(1_000_030)}"]
