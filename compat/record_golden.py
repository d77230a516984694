#!/usr/bin/env python3
"""Record how real SLURM 22.05's sbatch parses the cases in compat/cases/sbatch.toml.

    sudo python3 compat/record_golden.py [--only NAME ...]

Needs a running SLURM (``../shared/slurm/start-slurm.sh`` brings one up; this
script calls it when ``sbatch`` does not answer). Each case runs in a fresh
working directory with a fixed environment, as ``/usr/bin/sbatch --hold ...``
(so nothing runs); the submitted job is read back with ``scontrol show job -o``
and cancelled. Results go to compat/golden/sbatch.json with the parts that
change between recordings replaced by placeholders:

  {job_id}  the job's id (also inside paths)     {cwd}   the working directory
  {dep1}..  ids of held anchor jobs a case uses  {user} {uid} {gid}
  {time}    timestamps                           {host}  the submit host:sid

A case with ``times = true`` also keeps its SubmitTime and EligibleTime as they were.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from recorder import clean_env, load_toml, record_main  # noqa: E402
from slurm_show import parse_show_line  # noqa: E402

WORK = "/tmp/sflow-golden/work"
CASES = os.path.join(HERE, "cases", "sbatch.toml")
OUT = os.path.join(HERE, "golden", "sbatch.json")
TIME_KEYS = {"SubmitTime", "EligibleTime", "AccrueTime", "StartTime", "EndTime", "LastSchedEval",
             "PreemptEligibleTime", "PreemptTime", "SuspendTime", "Deadline"}
SUBMITTED = re.compile(r"Submitted batch job (\d+)")


def submit_anchor() -> str:
    out = subprocess.run(["/usr/bin/sbatch", "--hold", "--parsable", "--wrap", "true"],
                         capture_output=True, text=True, cwd="/tmp", check=True).stdout
    return out.strip().split(";")[0]


def normalise(text: str, subs: list[tuple[str, str]]) -> str:
    for real, placeholder in subs:
        if real:
            text = text.replace(real, placeholder)
    return text.replace("/usr/bin/sbatch:", "sbatch:")


def record(case: dict) -> dict:
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(os.path.join(WORK, "sub"))
    with open(os.path.join(WORK, "in.txt"), "w") as handle:
        handle.write("input\n")
    anchors = [submit_anchor() for _ in range(case.get("deps", 0))]

    def fill(text: str) -> str:
        for i, job in enumerate(anchors, start=1):
            text = text.replace(f"{{dep{i}}}", job)
        return text

    argv = ["/usr/bin/sbatch", "--hold", *[fill(a) for a in case.get("args", [])]]
    stdin = b""
    script = case.get("script")
    if script is not None:
        if case.get("stdin"):
            stdin = fill(script).encode()
        else:
            with open(os.path.join(WORK, "job.sh"), "w", newline="") as handle:
                handle.write(fill(script))
            argv += ["job.sh", *case.get("script_args", [])]
    run = subprocess.run(argv, input=stdin, capture_output=True, cwd=WORK, env=clean_env(case.get("env", {})))
    stdout, stderr = run.stdout.decode(), run.stderr.decode()
    job_id = None
    match = SUBMITTED.search(stdout)
    if match:
        job_id = match.group(1)
    user = pwd.getpwuid(os.getuid())
    subs = [(job_id or "", "{job_id}")] + [(a, f"{{dep{i}}}") for i, a in enumerate(anchors, 1)]
    subs += [(WORK, "{cwd}")]
    job = None
    times = None
    if job_id:
        shown = subprocess.run(["/usr/bin/scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
        job = parse_show_line(shown.splitlines()[0])
        if case.get("times"):  # the time parser's cases: replayed with the same now
            times = {key: job.get(key) for key in ("SubmitTime", "EligibleTime")}
        for key in TIME_KEYS & job.keys():
            if job[key] not in ("Unknown", "None", "N/A"):
                job[key] = "{time}"
        if "AllocNode:Sid" in job:
            job["AllocNode:Sid"] = "{host}"
        job = {k: normalise(v, subs) for k, v in job.items()}
        for key in ("UserId", "GroupId"):
            job[key] = re.sub(r"^[^(]*\((\d+)\)$", "{user}({uid})" if key == "UserId" else "{group}({gid})", job[key])
        if job.get("Account") == user.pw_name:
            job["Account"] = "{user}"
        subprocess.run(["/usr/bin/scancel", job_id])
    for anchor in anchors:
        subprocess.run(["/usr/bin/scancel", anchor])
    return {
        "name": case["name"],
        "input": case,
        "exit_code": run.returncode,
        "stdout": normalise(stdout, subs),
        "stderr": normalise(stderr, subs),
        "job": job,
        **({"times": times} if times else {}),
    }


def main() -> None:
    record_main(__doc__, load_toml(CASES)["case"], OUT, record, lambda result, seconds: f"exit {result['exit_code']}")


if __name__ == "__main__":
    main()
