#!/usr/bin/env python3
"""Record which jobs real SLURM 22.05's sacct selects in a time window, into compat/golden/sacct_window.json.

    python3 compat/record_sacct_window.py

Needs the running reference SLURM. As user nobody: a job that completed, one left running, and
jobs cancelled while pending: held (never eligible), held then released, waiting for resources
(behind the running one: -N4 --exclusive), eligible only in an hour (--begin), and waiting on a
dependency never satisfied. Marks are taken between the submissions, the release and the
cancellations, and sacct is asked with its default window, explicit -S/-E windows around those
marks, -s, -a, --name, -u and -j. Each run keeps argv, exit_code, the time it ran ("now") and
only the lines of these jobs (sacct -a lists everyone's); "jobs" keeps each job's id, name and
its Submit/Eligible/Start/End/State as sacct shows them, so a test can rebuild them.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import time
from datetime import datetime

from recorder import clean_env, ensure_slurm

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "golden", "sacct_window.json")
NOBODY = pwd.getpwnam("nobody")
WORK = "/tmp/sflow-record-sacct-window"
FIELDS = "JobIDRaw,JobName,State,Submit,Eligible,Start,End"
FACTS = "JobIDRaw,JobName,Submit,Eligible,Start,End,State"


def run(argv: list[str]) -> dict:
    done = subprocess.run(argv, executable=f"/usr/bin/{argv[0]}", capture_output=True, text=True, cwd=WORK,
                          env={**clean_env(), "USER": "nobody", "LOGNAME": "nobody", "HOME": "/tmp"},
                          user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[], timeout=120)
    return {"argv": argv, "stdout": done.stdout, "stderr": done.stderr, "exit_code": done.returncode}


def submit(case: str, *options: str, script: str = "sleep 600") -> str:
    out = run(["sbatch", "--parsable", "-J", f"sacctwin-{case}", "-o", "/dev/null", *options, "--wrap", script])
    if out["exit_code"]:
        raise SystemExit(f"{case}: {out['stderr']}")
    return out["stdout"].strip().split(";")[0]


def squeue(job: str, form: str) -> str:
    return run(["squeue", "-h", "-j", job, "-o", form])["stdout"].strip()


def poll(condition, what: str, tries: int = 600) -> None:
    for _ in range(tries):
        if condition():
            return
        time.sleep(0.5)
    raise SystemExit(f"gave up waiting for {what}")


def mark() -> str:
    """This second as sacct reads it back, a second after the last event and before the next."""
    time.sleep(1.5)
    stamp = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    time.sleep(1.5)
    return stamp


def main() -> None:
    ensure_slurm()
    os.makedirs(WORK, exist_ok=True)
    os.chmod(WORK, 0o777)
    jobs: dict[str, str] = {}
    try:
        record(jobs)
    finally:
        if jobs:
            subprocess.run(["/usr/bin/scancel", *jobs.values()])


def record(jobs: dict[str, str]) -> None:
    marks = {"before": mark()}
    jobs["completed"] = submit("completed", script="true")
    poll(lambda: not squeue(jobs["completed"], "%T"), "the completed job to end")
    jobs["running"] = submit("running")
    poll(lambda: squeue(jobs["running"], "%T") == "RUNNING", "the running job to start")
    marks["running"] = mark()
    jobs["resources"] = submit("resources", "-N4", "--exclusive")  # the running job holds a node
    jobs["held"] = submit("held", "--hold")
    jobs["released"] = submit("released", "--hold", "-N4", "--exclusive")
    jobs["begin"] = submit("begin", "--begin=now+1hour")
    jobs["dependency"] = submit("dependency", f"--dependency=afterok:{jobs['running']}")
    marks["submitted"] = mark()
    subprocess.run(["/usr/bin/scontrol", "release", jobs["released"]], check=True)
    poll(lambda: squeue(jobs["released"], "%r") not in ("JobHeldUser", "JobHeldAdmin", ""), "the release")
    marks["released"] = mark()
    cancelled = [jobs[case] for case in ("resources", "held", "released", "begin", "dependency")]
    for job in cancelled:
        if squeue(job, "%T") != "PENDING":
            raise SystemExit(f"job {job} is no longer pending")
    subprocess.run(["/usr/bin/scancel", *cancelled], check=True)
    ids = ",".join(jobs.values())
    # Accounting reaches slurmdbd a little late: wait until it has every cancellation.
    poll(lambda: [state.split()[0] for state in run(["sacct", "-X", "-n", "-P", "-j", ",".join(cancelled), "-o",
                                                      "State"])["stdout"].splitlines()]
         == ["CANCELLED"] * len(cancelled), "accounting of the cancellations")
    marks["cancelled"] = mark()
    names = ",".join(f"sacctwin-{case}" for case in jobs)
    window = ["-o", FIELDS, "-P", "-X"]
    queries = {
        "default": ["sacct", *window],
        "default-steps": ["sacct", "-o", FIELDS, "-P"],
        "since-before": ["sacct", *window, "-S", marks["before"]],
        "since-before-until-now": ["sacct", *window, "-S", marks["before"], "-E", "now"],
        "until-submitted": ["sacct", *window, "-S", marks["before"], "-E", marks["submitted"]],
        "until-released": ["sacct", *window, "-S", marks["before"], "-E", marks["released"]],
        "since-released": ["sacct", *window, "-S", marks["released"]],
        "since-cancelled": ["sacct", *window, "-S", marks["cancelled"]],
        "until-running": ["sacct", *window, "-S", marks["before"], "-E", marks["running"]],
        "state-ca": ["sacct", *window, "-s", "CA"],
        "state-ca-since-before": ["sacct", *window, "-s", "CA", "-S", marks["before"]],
        "state-ca-window": ["sacct", *window, "-s", "CA", "-S", marks["before"], "-E", "now"],
        "state-pd-window": ["sacct", *window, "-s", "PD", "-S", marks["before"], "-E", "now"],
        "state-r": ["sacct", *window, "-s", "R"],
        "state-cd-window": ["sacct", *window, "-s", "CD", "-S", marks["before"], "-E", "now"],
        "allusers": ["sacct", *window, "-a"],
        "name": ["sacct", *window, f"--name={names}"],
        "name-since-before": ["sacct", *window, f"--name={names}", "-S", marks["before"]],
        "user": ["sacct", *window, "-u", "nobody"],
        "jobs": ["sacct", *window, "-j", ids],
        "jobs-held": ["sacct", *window, "-j", jobs["held"]],
        "jobs-state-ca": ["sacct", *window, "-j", ids, "-s", "CA"],
        "jobs-state-pd": ["sacct", *window, "-j", ids, "-s", "PD"],
        "jobs-window": ["sacct", *window, "-j", ids, "-S", marks["before"], "-E", "now"],
        "jobs-until-submitted": ["sacct", *window, "-j", ids, "-S", marks["before"], "-E", marks["submitted"]],
    }
    runs = {}
    ours = set(jobs.values())
    for name, argv in queries.items():
        now = time.time()
        out = run(argv)
        lines = out["stdout"].splitlines()
        out["stdout"] = "".join(f"{line}\n" for line in lines[:1] + [
            line for line in lines[1:] if line.split("|")[0].split(".")[0] in ours])
        runs[name] = {**out, "now": now}
    facts = run(["sacct", "-X", "-n", "-P", "-j", ids, "-o", FACTS])["stdout"]
    by_id = {line.split("|")[0]: line.split("|") for line in facts.splitlines()}
    recorded = {case: dict(zip(FACTS.split(","), by_id[job])) for case, job in jobs.items()}
    with open(OUT, "w") as handle:
        json.dump({"jobs": recorded, "marks": marks, "runs": runs}, handle, indent=1, sort_keys=True)
        handle.write("\n")


if __name__ == "__main__":
    main()
