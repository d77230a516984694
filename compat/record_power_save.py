#!/usr/bin/env python3
"""Record how real SLURM 22.05 powers CLOUD nodes up and down, into compat/golden/power_save.json.

    sudo python3 compat/record_power_save.py [--only CASE ...]

Each case starts a private cluster (tests/burst/cloud_slurm.py: cluster burst,
base1 plus cloud[1-2], State=CLOUD, partition cloud; it does not touch the
reference SLURM), whose ResumeProgram / SuspendProgram / ResumeFailProgram
record how they are called. It writes per case:

  calls      per program, each call's argv (argv[0] as <program>) and
             environment; SLURM_RESUME_FILE's path as <resume_file>, the
             harness directory as <dir>, job ids as <job_id>
  resume_file  the JSON text ResumeProgram read from SLURM_RESUME_FILE, parsed,
             job ids as <job_id>
  timeline   per cloud node, each distinct (sinfo %t, scontrol State, Reason)
             seen while the case ran, in order (polled every 0.2 s: a state
             shorter than that may be missing; sinfo and scontrol run one
             after the other, so an entry may join two moments, as
             ["mix", "IDLE+CLOUD"] does)
  commands   argv, exit code, stdout, stderr of the scontrol commands the case
             runs, and jobs' (JobState, Reason, Restarts) when it matters
  config     the timings the cluster ran with
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from recorder import only_arg, record_cases  # noqa: E402
from tests.burst.cloud_slurm import CloudSlurm, calls, missing, wait_for, write_program  # noqa: E402

OUT = os.path.join(HERE, "golden", "power_save.json")
FIRST_JOB = 700001  # job ids that cannot be mistaken for anything else when replaced by <job_id>
TIMINGS = {"suspend_time": 5, "suspend_timeout": 5, "resume_timeout": 10}
CASES = [
    {"name": "resume_cycle", "doc": "a 2-node job boots cloud[1-2], runs, they power down after SuspendTime; "
                                    "then a 1-task job on one node (mix#)"},
    {"name": "resume_fail", "doc": "ResumeProgram never boots the node: ResumeTimeout, ResumeFailProgram, requeue"},
    {"name": "power_down_force", "doc": "scontrol update State=POWER_DOWN_FORCE on a node running a job"},
    {"name": "down", "doc": "scontrol update State=DOWN on a powered-down and on a powered-up cloud node"},
]


class Timeline:
    """Distinct node states, as sinfo and scontrol show them, sampled while waiting."""

    def __init__(self, slurm: CloudSlurm):
        self.slurm = slurm
        self.seen: dict[str, list] = {n: [] for n in slurm.cloud_nodes}

    def sample(self) -> None:
        states = self.slurm.node_states()
        for name in self.slurm.cloud_nodes:
            shown = self.slurm.show_node(name)
            entry = [states[name][0], shown.get("State", ""), shown.get("Reason", "").split(" [")[0]]
            if not self.seen[name] or self.seen[name][-1] != entry:
                self.seen[name].append(entry)

    def until(self, predicate, timeout: float, what: str):
        def step():
            self.sample()
            return predicate()
        result = wait_for(step, timeout, what)
        self.sample()  # the state that ended the wait
        return result


def _normalise(text: str, slurm: CloudSlurm, job_ids: list[str]) -> str:
    text = text.replace(slurm.dir, "<dir>")
    for job_id in job_ids:
        text = re.sub(rf"\b{job_id}\b", "<job_id>", text)
    return text


def _calls(slurm: CloudSlurm, programs: dict[str, str], job_ids: list[str]) -> dict:
    out = {}
    for role, path in programs.items():
        out[role] = []
        for call in calls(path):
            env = {k: ("<resume_file>" if k == "SLURM_RESUME_FILE" else _normalise(v, slurm, job_ids))
                   for k, v in sorted(call["env"].items())}
            entry = {"argv": ["<program>", *call["argv"][1:]], "env": env, "uid": call["uid"], "cwd": call["cwd"]}
            if "resume_file" in call:
                parsed = json.loads(call["resume_file"])
                for job in parsed.get("jobs", []):
                    job["job_id"] = "<job_id>" if str(job["job_id"]) in job_ids else job["job_id"]
                entry["resume_file"] = parsed
                entry["resume_file_text"] = _normalise(call["resume_file"], slurm, job_ids)
            out[role].append(entry)
    return out


def _command(slurm: CloudSlurm, *argv: str) -> dict:
    done = slurm.run(*argv)
    return {"argv": list(argv), "exit_code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def _job(slurm: CloudSlurm, job_id: str) -> dict:
    job = slurm.job(job_id)
    return {k: job.get(k) for k in ("JobState", "Reason", "Restarts", "NodeList", "BatchFlag", "Requeue")}


def _cluster(root: str, boot: bool) -> tuple[CloudSlurm, dict]:
    programs = {"ResumeProgram": write_program(root, "resume", "boot" if boot else None),
                "SuspendProgram": write_program(root, "suspend", "stop"),
                "ResumeFailProgram": write_program(root, "resume_fail")}
    slurm = CloudSlurm(root, resume_program=programs["ResumeProgram"], suspend_program=programs["SuspendProgram"],
                       resume_fail_program=programs["ResumeFailProgram"], extra_conf=f"FirstJobId={FIRST_JOB}\n",
                       **TIMINGS)
    return slurm, programs


def _powered_down(slurm: CloudSlurm, *names: str):
    return lambda: all(slurm.node_states()[n][0] == "idle~" for n in names)


def record_resume_cycle(slurm: CloudSlurm, line: Timeline) -> tuple[dict, list[str]]:
    job = slurm.run("sbatch", "--parsable", "-p", "cloud", "-N2", "--ntasks-per-node=2", "--wrap",
                    "srun sleep 2", check=True).stdout.strip()
    line.until(lambda: slurm.job(job).get("JobState") == "COMPLETED", 90, "the 2-node job")
    line.until(_powered_down(slurm, "cloud1", "cloud2"), 60, "power down")
    small = slurm.run("sbatch", "--parsable", "-p", "cloud", "-N1", "-n1", "--wrap", "sleep 2",
                      check=True).stdout.strip()
    line.until(lambda: slurm.job(small).get("JobState") == "COMPLETED", 90, "the 1-task job")
    line.until(_powered_down(slurm, "cloud1", "cloud2"), 60, "power down")
    return {}, [job, small]


def record_resume_fail(slurm: CloudSlurm, line: Timeline) -> tuple[dict, list[str]]:
    job = slurm.run("sbatch", "--parsable", "-p", "cloud", "-N1", "--wrap", "true", check=True).stdout.strip()
    line.until(lambda: calls(os.path.join(slurm.dir, "resume_fail")), 60, "ResumeFailProgram")
    line.until(lambda: slurm.job(job).get("JobState") == "PENDING", 30, "the requeue")
    after = {"job_after_fail": _job(slurm, job)}
    for _ in range(10):  # what follows: the node stays down~, the job waits (sampled for 2 s)
        line.sample()
        time.sleep(0.2)
    after["job_later"] = _job(slurm, job)
    slurm.run("scancel", job)
    return after, [job]


def record_power_down_force(slurm: CloudSlurm, line: Timeline) -> tuple[dict, list[str]]:
    job = slurm.run("sbatch", "--parsable", "-p", "cloud", "-N1", "-w", "cloud1", "--wrap", "sleep 120",
                    check=True).stdout.strip()
    line.until(lambda: slurm.job(job).get("JobState") == "RUNNING", 90, "the job to run")
    command = _command(slurm, "scontrol", "update", "NodeName=cloud1", "State=POWER_DOWN_FORCE",
                       "Reason=instance preempted")
    job_right_after = _job(slurm, job)
    line.until(_powered_down(slurm, "cloud1"), 60, "power down")
    result = {"commands": [command], "job_right_after": job_right_after, "job_after": _job(slurm, job)}
    slurm.run("scancel", job)
    return result, [job]


def record_down(slurm: CloudSlurm, line: Timeline) -> tuple[dict, list[str]]:
    line.sample()
    on_powered_down = _command(slurm, "scontrol", "update", "NodeName=cloud2", "State=DOWN", "Reason=gone")
    slurm.boot_node("cloud1")
    line.until(lambda: slurm.node_states()["cloud1"][0] == "idle", 60, "cloud1 to register")
    on_powered_up = _command(slurm, "scontrol", "update", "NodeName=cloud1", "State=DOWN", "Reason=gone")
    for _ in range(40):  # SuspendTime and then some: does a DOWN cloud node power down by itself?
        line.sample()
        time.sleep(0.2)
    return {"commands": [on_powered_down, on_powered_up]}, []


def record(case: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="power_save.") as tmp:
        root = os.path.join(tmp, "slurm")
        slurm, programs = _cluster(root, boot=case["name"] != "resume_fail")
        with slurm:
            line = Timeline(slurm)
            result, job_ids = globals()[f"record_{case['name']}"](slurm, line)
            result = json.loads(_normalise(json.dumps(result), slurm, job_ids))
            result.update(doc=case["doc"], name=case["name"], timeline=line.seen, config=TIMINGS,
                          calls=_calls(slurm, programs, job_ids))
    return result


def note(result: dict, seconds: float) -> str:
    return f"{seconds:.0f}s, " + ", ".join(f"{n}: {' > '.join(s[0] for s in v)}" for n, v in result["timeline"].items())


if __name__ == "__main__":
    only = only_arg(__doc__)
    if missing():
        sys.exit(f"record_power_save: {missing()}")
    record_cases(CASES, OUT, only, record, note)
