"""Which jobs sacct's time windows select, against real SLURM 22.05 (compat/golden/sacct_window.json).

The recording's jobs (completed, running, and cancelled while pending: held, held then released,
waiting for resources, --begin an hour ahead, a dependency never satisfied) are rebuilt as sflow
stores them, and each recorded sacct command must list the same jobs, in the same order.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime

import pytest

from conftest import ROOT
from sflow.records import JobRecord
from sflow.views.sacct import sacct_main

GOLDEN = json.load(open(os.path.join(ROOT, "compat", "golden", "sacct_window.json")))


@pytest.fixture(autouse=True)
def recorded_zone(monkeypatch):
    """The recording's times are its machine's local time, UTC."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _when(text: str) -> float | None:
    return None if text in ("Unknown", "None") else datetime.fromisoformat(text).timestamp()


def _record(facts: dict) -> JobRecord:
    """The job as sflow's store keeps it: a job ended while pending has its end as start and no node."""
    start, end = _when(facts["Start"]), _when(facts["End"])
    return JobRecord(job_id=int(facts["JobIDRaw"]), name=facts["JobName"], user="nobody", uid=65534, gid=65534,
                     partition="debug", state=facts["State"].split()[0], reason="None",
                     submit_time=_when(facts["Submit"]), eligible_time=_when(facts["Eligible"]),
                     start_time=start if start is not None else end, end_time=end,
                     nodelist="node1" if start is not None else "", work_dir="/tmp", command="(null)")


def _listed(stdout: str) -> list[str]:
    """The job ids a parsable listing shows (its steps' lines left out)."""
    return [line.split("|")[0] for line in stdout.splitlines()[1:] if "." not in line.split("|")[0]]


@pytest.mark.parametrize("name", sorted(GOLDEN["runs"]))
def test_sacct_selects_the_jobs_slurm_does(name):
    run = GOLDEN["runs"][name]
    jobs = [_record(facts) for facts in GOLDEN["jobs"].values()]
    out, err, code = sacct_main(run["argv"][1:], jobs, [], now=run["now"], user="nobody")
    assert (err, code) == (run["stderr"], run["exit_code"])
    assert _listed(out) == _listed(run["stdout"])


def test_the_recording_covers_the_cases():
    # What the cases show in SLURM 22.05: a default window leaves out the jobs never eligible and
    # the one eligible only in an hour, -j names them all, -s CA counts any job cancelled in its window.
    ids = {case: facts["JobIDRaw"] for case, facts in GOLDEN["jobs"].items()}
    listed = lambda name: {case for case, job in ids.items() if job in _listed(GOLDEN["runs"][name]["stdout"])}  # noqa: E731
    assert listed("default") == {"completed", "running", "resources", "released"}
    assert listed("jobs") == set(ids)
    assert listed("state-ca-window") == {"resources", "held", "released", "begin", "dependency"}
    assert listed("state-ca") == set()
