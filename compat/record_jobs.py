#!/usr/bin/env python3
"""Record what real SLURM 22.05 does over a job's life: the cases in compat/cases/jobs.toml.

    sudo python3 compat/record_jobs.py [--only NAME ...]

Needs a running SLURM with accounting (``../shared/slurm/start-slurm.sh`` brings
one up; this script calls it when ``sinfo`` does not answer). Each case is a
list of steps played in a fresh working directory under /tmp/sflow-golden/jobs:

  { run = [argv] }                 run a command (``/usr/bin/<argv[0]>``) and record
                                   its stdout, stderr and exit code
                                   (``quiet = true``: run it without recording)
  { wait = "ended" }               until every job submitted so far (or ``jobs``) has
                                   left squeue's active states and sacct shows it ended
  { wait = "running" }             until squeue shows those jobs RUNNING
  { wait = "accounting" }          until sacct has caught up with the controller (SLURM's
                                   lags a few seconds; sflow's never does)
  { wait = "file", path = "x" }    until the file exists in the working directory
  { until = [argv], expect = "s" } until the command's stdout contains ``s``
  { sleep = 0.5 }
  { files = true }                 record the names and contents of the files the jobs wrote

Arguments may name jobs as ``{J}``, ``{J+1}``, ...: ids relative to the case's
first submission (cases run one at a time, so a case's ids are consecutive).
Output is normalised by ``normalise`` below, which tests/test_golden_jobs.py
applies to sflow's output too; a case's ``mask`` lists regular expressions
for what legitimately varies between two runs of that case (group 1, or the
whole match, becomes ``{*}``). A case with ``deviation = "why"`` is a known
difference sflow keeps; the test reports it as an expected failure.
Results go to compat/golden/jobs.json.
"""

from __future__ import annotations

import os
import pwd
import grp
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable

from recorder import clean_env, load_toml, record_main

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "cases", "jobs.toml")
OUT = os.path.join(HERE, "golden", "jobs.json")
WORK = "/tmp/sflow-golden/jobs"

# Job states after which nothing more happens to a job (squeue's short forms too).
ACTIVE = {"PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "RESIZING", "SIGNALING",
          "STAGE_OUT", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"}
SUBMITTED = re.compile(r"Submitted batch job (\d+)|^(\d+)(?:;\S*)?$|Job (\d+) to start at", re.M)
JOB_REF = re.compile(r"\{J(?:\+(\d+))?\}")
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
DATE_LINE = re.compile(r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\b")
# Numbers that may be job ids: a case never reaches this many ids past its first.
ID_SPAN = 200
NUMBER = re.compile(r"(?<![\d.])\d{5,}(?![\d])")
WAIT_SECONDS = 60.0
POLL = 0.2
# slurmctld sends the start record of a short job to slurmdbd from a thread that wakes every
# 5 s; until then sacct shows a stand-in row ("allocation", no partition, no array index).
DBD_SETTLE = 6.0


@dataclass
class Who:
    """The identity and place a case ran with, to turn back into placeholders."""

    cwd: str
    user: str
    uid: int
    group: str
    gid: int

    @classmethod
    def current(cls, cwd: str) -> "Who":
        user = pwd.getpwuid(os.getuid())
        try:
            group = grp.getgrgid(os.getgid()).gr_name
        except KeyError:
            group = str(os.getgid())
        return cls(cwd, user.pw_name, user.pw_uid, group, os.getgid())


def _masked(text: str, pattern: str) -> str:
    def hide(match: re.Match) -> str:
        if match.lastindex:
            start, end = match.span(1)
            return match.group(0)[: start - match.start()] + "{*}" + match.group(0)[end - match.start():]
        return "{*}"

    return re.sub(pattern, hide, text)


def normalise(text: str, who: Who, base: int | None, masks: list[str] = ()) -> str:
    """What two runs of a case share: ids relative to the first, no clock, no machine, no user."""
    text = text.replace(who.cwd, "{cwd}")
    for pattern in masks:
        text = _masked(text, pattern)
    text = ISO_TIME.sub("{time}", text)
    text = DATE_LINE.sub("{date}", text)
    text = re.sub(r"(RunTime)=\S+", r"\1={elapsed}", text)
    text = re.sub(r"(AllocNode:Sid)=\S+", r"\1={host}", text)
    # The recording cluster runs several slurmd on one host, a build that names slurmstepd
    # after its node (as sflow does); one slurmd per host says plain "slurmstepd".
    text = re.sub(r"\bslurmstepd-[\w.-]+:", "slurmstepd:", text)
    # A runnable job's priority counts the controller's submissions so far; a held one's is 0.
    text = re.sub(r"(Priority)=\d{6,}", r"\1={priority}", text)
    if base is not None:
        def job_id(match: re.Match) -> str:
            offset = int(match.group(0)) - base
            if 0 <= offset < ID_SPAN:
                return "{J}" if offset == 0 else f"{{J+{offset}}}"
            return match.group(0)

        text = NUMBER.sub(job_id, text)
    text = re.sub(r"\b(UserId)=[^\s(]+\(\d+\)", r"\1={user}({uid})", text)
    text = re.sub(r"\b(GroupId)=[^\s(]+\(\d+\)", r"\1={group}({gid})", text)
    text = re.sub(rf"\bCANCELLED by {who.uid}\b", "CANCELLED by {uid}", text)
    # Names differ in length: the padding around one in a column shrinks to one space a side.
    for name, placeholder in ((who.user, "{user}"), (who.group, "{group}")):
        text = re.sub(rf"( *)(?<![\w/]){re.escape(name)}(?![\w/])( *)",
                      lambda m: " " * bool(m.group(1)) + placeholder + " " * bool(m.group(2)), text)
    return text


@dataclass
class Outcome:
    stdout: str
    stderr: str
    exit_code: int


# Runs one command (argv with placeholders filled) in the case's directory; stdin text or None.
Runner = Callable[[list[str], str], Outcome]


@dataclass
class Play:
    """One case being played: the jobs it submitted and what it recorded."""

    case: dict
    run: Runner
    who: Who
    settle: Callable[[], None] | None = None
    wait_ended: Callable[[list[str]], None] | None = None
    base: int | None = None
    submitted: list[int] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)

    def fill(self, text: str) -> str:
        def ref(match: re.Match) -> str:
            if self.base is None:
                raise RuntimeError(f"{self.case['name']}: {match.group(0)} before any job was submitted")
            return str(self.base + int(match.group(1) or 0))

        return JOB_REF.sub(ref, text).replace("{cwd}", self.who.cwd)

    def norm(self, text: str) -> str:
        return normalise(text, self.who, self.base, self.case.get("mask", []))

    def command(self, argv: list[str], stdin: str | None = None) -> Outcome:
        outcome = self.run([self.fill(a) for a in argv], stdin)
        if argv[0] == "sbatch":
            for match in SUBMITTED.finditer(outcome.stdout + outcome.stderr):
                job = int(next(g for g in match.groups() if g))
                if self.base is None:
                    self.base = job
                if "to start at" not in match.group(0):
                    self.submitted.append(job)
        return outcome

    def jobs(self, step: dict) -> list[str]:
        return [self.fill(j) for j in step["jobs"]] if "jobs" in step else [str(j) for j in self.submitted]

    def poll(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.case.get("wait_seconds", WAIT_SECONDS)
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.case['name']}: gave up waiting for {what}")
            time.sleep(POLL)

    def states(self, ids: list[str]) -> tuple[list[str], list[str]]:
        """(squeue's states, sacct's states) of these jobs, every array task and step included."""
        queue = self.command(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%T"])
        acct = self.command(["sacct", "-n", "-P", "-j", ",".join(ids), "-o", "State"])
        return queue.stdout.split(), [line.split(" ")[0] for line in acct.stdout.splitlines() if line]

    def ended(self, ids: list[str]) -> bool:
        queue, acct = self.states(ids)
        return (not ACTIVE & set(queue)) and bool(acct) and not ACTIVE & set(acct)

    def step(self, step: dict) -> None:
        if "run" in step:
            outcome = self.command(step["run"], step.get("stdin"))
            if not step.get("quiet"):
                self.results.append({"run": step["run"], "stdout": self.norm(outcome.stdout),
                                     "stderr": self.norm(outcome.stderr), "exit_code": outcome.exit_code})
        elif step.get("wait") == "ended":
            ids = self.jobs(step)
            if self.wait_ended is not None:
                self.wait_ended(ids)
            self.poll(f"jobs {ids} to end", lambda: self.ended(ids))
            if self.settle:
                self.settle()
        elif step.get("wait") == "running":
            ids = self.jobs(step)
            self.poll(f"jobs {ids} to run", lambda: set(self.states(ids)[0]) == {"RUNNING"})
        elif step.get("wait") == "accounting":
            if self.settle:
                self.settle()
        elif step.get("wait") == "file":
            path = os.path.join(self.who.cwd, step["path"])
            self.poll(f"file {step['path']}", lambda: os.path.exists(path))
        elif "until" in step:
            self.poll(f"{step['expect']!r} from {step['until']}",
                      lambda: step["expect"] in self.command(step["until"]).stdout)
        elif "sleep" in step:
            time.sleep(step["sleep"])
        elif step.get("files"):
            written = set(self.case.get("write", {}))
            found = {}
            for name in sorted(os.listdir(self.who.cwd)):
                path = os.path.join(self.who.cwd, name)
                if name not in written and os.path.isfile(path):
                    with open(path, errors="replace") as handle:
                        found[self.norm(name)] = self.norm(handle.read())
            self.results.append({"files": found})
        else:
            raise ValueError(f"{self.case['name']}: unknown step {step}")


def play(case: dict, run: Runner, who: Who, settle: Callable[[], None] | None = None,
         wait_ended: Callable[[list[str]], None] | None = None) -> list[dict]:
    """Play a case in ``who.cwd`` (which must exist and be empty); its normalised results.

    ``settle`` runs after each wait for jobs to end, for a recorder whose accounting lags;
    ``wait_ended`` blocks until the jobs named have ended, where the scheduler can say so at
    once (else squeue and sacct are polled).
    """
    for name, text in case.get("write", {}).items():
        with open(os.path.join(who.cwd, name), "w") as handle:
            handle.write(text)
    state = Play(case, run, who, settle, wait_ended)
    try:
        for step in case["steps"]:
            state.step(step)
    finally:  # a case that failed half-way leaves nothing queued
        if state.submitted:
            run(["scancel", *map(str, state.submitted)], None)
    return state.results


def load_cases() -> list[dict]:
    return load_toml(CASES)["case"]


# ------------------------------------------------------------------ real SLURM


def slurm_runner(cwd: str) -> Runner:
    env = clean_env()

    def run(argv: list[str], stdin: str | None) -> Outcome:
        # argv[0] stays the bare name: SLURM prefixes its messages with it.
        done = subprocess.run(argv, executable=f"/usr/bin/{argv[0]}", cwd=cwd, env=env, input=stdin or "",
                              capture_output=True, text=True, timeout=WAIT_SECONDS)
        return Outcome(done.stdout, done.stderr, done.returncode)

    return run


def record(case: dict) -> dict:
    cwd = os.path.join(WORK, case["name"])
    shutil.rmtree(cwd, ignore_errors=True)
    os.makedirs(cwd)
    return {"name": case["name"], "input": case,
            "results": play(case, slurm_runner(cwd), Who.current(cwd), settle=lambda: time.sleep(DBD_SETTLE))}


def main() -> None:
    record_main(__doc__, load_cases(), OUT, record, lambda result, seconds: f"{seconds:.1f} s")


if __name__ == "__main__":
    main()
