"""sbatch's words for the controller's answer to a submission: the answer is data, said at the CLI edge."""

from __future__ import annotations

import json
import time

import pytest

from sflow.cli.render import submission
from sflow.errors import MithrilError, SflowError, SlurmError, UsageError, from_wire, render, to_wire


@pytest.mark.parametrize("err", [
    SlurmError("invalid partition specified: nosuch\nBatch job submission failed: Invalid partition name specified"),
    SlurmError("Invalid --time specification", 255, line=3, source="job.sh", preface=("   ^ here",)),
    UsageError(["sbatch: unrecognized option '--bogus'", "Try \"sbatch --help\" for more information"]),
    MithrilError("mithril: no capacity", status=409, exit_code=2),
    SflowError("plain"),
])
def test_an_error_crosses_the_socket_and_renders_as_it_would_have_here(err):
    back = from_wire(json.loads(json.dumps(to_wire(err))))
    assert type(back) is type(err)
    assert render("sbatch", back) == render("sbatch", err)
    assert getattr(back, "exit_code", 1) == getattr(err, "exit_code", 1)


def test_an_accepted_job_prints_as_sbatch_prints_it():
    said = {"listing": "sbatch: defined options\n", "warnings": ["--mail-type is accepted and ignored"]}
    shown = submission({"ok": True, "job_id": 7, **said, "parsable": False, "quiet": False, "wait": False})
    assert shown == {"ok": True, "stdout": "Submitted batch job 7\n", "exit_code": 0,
                     "stderr": "sbatch: defined options\nsbatch: warning: --mail-type is accepted and ignored\n"}
    assert submission({"ok": True, "job_id": 7, "parsable": True})["stdout"] == "7\n"
    assert submission({"ok": True, "job_id": 7, "parsable": True, "quiet": True})["stdout"] == ""


def test_a_refusal_prints_sbatchs_error_and_exit_code():
    err = SlurmError("Invalid directive found in batch script: x", 255, line=2, source="job.sh")
    assert submission({"ok": False, "error": to_wire(err)}) == {
        "ok": False, "stdout": "", "exit_code": 255,
        "stderr": "sbatch: error: Invalid directive found in batch script: x (job.sh line 2)\n"}
    # The controller's own failures come said already.
    assert submission({"ok": False, "stderr": "sbatch: error: no space\n", "exit_code": 1})["stderr"] == \
        "sbatch: error: no space\n"


def test_test_only_says_when_and_where_or_why_never():
    start = time.mktime((2030, 1, 2, 3, 4, 5, 0, 0, -1))
    answer = {"job_id": 100, "start": start, "cpus": 3, "nodes": "n[1-2]", "partition": "debug"}
    shown = submission({"ok": True, "job_id": None, "listing": "", "warnings": ["w"], "test_only": answer})
    assert shown == {"ok": True, "stdout": "", "exit_code": 0, "stderr": (
        "sbatch: warning: w\n"
        "sbatch: Job 100 to start at 2030-01-02T03:04:05 using 3 processors on nodes n[1-2] in partition debug\n")}
    never = {**answer, "start": None, "nodes": None}  # no start to come, no nodes to name
    year_3000 = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(32503680000))
    assert submission({"ok": True, "test_only": never})["stderr"] == (
        f"sbatch: Job 100 to start at {year_3000} using 3 processors on nodes (null) in partition debug\n")
    refused = submission({"ok": False, "test_only": {"refused": "Requested node configuration is not available"}})
    assert refused == {"ok": False, "stdout": "", "exit_code": 1,
                       "stderr": "allocation failure: Requested node configuration is not available\n"}
