"""SLURM's time forms (--begin, --deadline, sacct -S/-E) against sbatch 22.05's own answers.

compat/golden/sbatch.json's ``time-*`` cases: a refused time must carry SLURM's
"Invalid time specification (pos=N)" line, and an accepted one must come out
as the EligibleTime SLURM gave it, read with the recording's submit time as now.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

import pytest

from sflow.errors import SflowError, render
from sflow.slurm import values
from sflow.slurm.request import parse_sbatch
from sflow.views.sacct import _parse_time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = [r for r in json.load(open(os.path.join(ROOT, "compat", "golden", "sbatch.json")))
          if r["name"].startswith(("time-ok-", "time-bad-", "time-deadline-"))]
QUERY = json.load(open(os.path.join(ROOT, "compat", "golden", "query.json")))


def _text(record: dict) -> str:
    return record["input"]["args"][0].partition("=")[2]


@pytest.mark.parametrize("record", [r for r in GOLDEN if r["exit_code"]], ids=lambda r: r["name"])
def test_refused_time_says_where_slurm_stopped(record, tmp_path):
    (tmp_path / "job.sh").write_text(record["input"]["script"])
    with pytest.raises(SflowError) as caught:
        parse_sbatch(["--hold", *record["input"]["args"], "job.sh"], env={"PATH": "/usr/bin:/bin"},
                     cwd=str(tmp_path), script_text=record["input"]["script"], user="root", uid=0, gid=0, host="vm")
    assert caught.value.exit_code == record["exit_code"]
    assert render("sbatch", caught.value) + "\n" == record["stderr"]


@pytest.mark.parametrize("record", [r for r in GOLDEN if r.get("times")], ids=lambda r: r["name"])
def test_accepted_time_is_slurms(record):
    submitted = datetime.fromisoformat(record["times"]["SubmitTime"])
    eligible = record["times"]["EligibleTime"]
    # sbatch reads the clock a moment before slurmctld stamps the submission.
    results = [values.parse_time(_text(record), submitted - timedelta(seconds=lag)) for lag in (0, 1)]
    if eligible == "Unknown":  # not in the future: no begin time at all
        assert any(result <= submitted for result in results)
    else:
        assert datetime.fromisoformat(eligible) in results


def test_sacct_reads_times_in_the_past():
    now = datetime(2026, 12, 3, 8, 0, 2).timestamp()

    def at(text: str) -> str:
        return datetime.fromtimestamp(_parse_time(text, now)).isoformat()

    assert at("01:00") == "2026-12-03T01:00:00"
    assert at("midnight") == "2026-12-03T00:00:00"
    assert at("0101") == "2026-01-01T00:00:00"
    assert at("12/03-07:00") == "2026-12-03T07:00:00"
    assert at("tomorrow") == "2026-12-04T00:00:00"
    assert at("now-1 hours") == "2026-12-03T07:00:02"


def test_sacct_refuses_as_slurm_does():
    runs = [run for case in QUERY if case["name"] == "sacct-time-positions" for run in case["runs"]]
    assert runs
    for run in runs:
        if not run["stderr"].startswith("Invalid time"):
            continue
        text = run["argv"][-1]
        with pytest.raises(SflowError) as caught:
            _parse_time(text)
        assert render("sacct", caught.value) + "\n" == run["stderr"]
        assert caught.value.exit_code == run["exit_code"]


@pytest.mark.parametrize("text", ["12²5", "1²/05", "١٢:00x"])
def test_digits_outside_ascii_are_refused_not_crashed_on(text):
    with pytest.raises(values.InvalidTime):
        values.parse_time(text, now=datetime(2026, 1, 1))
