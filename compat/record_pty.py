#!/usr/bin/env python3
"""Record what real SLURM 22.05's ``srun --pty`` does, on a terminal and off one.

    python3 compat/record_pty.py [--only NAME ...]

Needs the running reference SLURM. Each case of CASES runs its command on a
fresh pseudo-terminal (pexpect) and plays its steps, recording what each step
printed (prompts, escape codes, carriage returns and process ids taken out),
srun's exit code, and for a ``job_id`` step the job's state in sacct once it
ended; a case with ``terminal = False`` runs with pipes instead. Results go to
compat/golden/pty.json. tests/test_srun_pty.py plays the same cases (``play``)
against sflow's commands and compares.

Steps:
  {"send": LINE}                    type LINE, record its output up to the next prompt
  {"send": LINE, "wait_for": TEXT,  then, once TEXT was printed, press Ctrl-KEY
   "control": KEY}
  {"resize": [ROWS, COLS]}          srun's terminal changes size
  {"send": LINE, "job_id": True}    LINE prints the job id: keep it (recorded as <jobid>)
  {"send": LINE, "end": True}       the last line: record the output up to srun's end
  "record": False                   on any step: play it, record nothing
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time

from recorder import clean_env, record_main

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "golden", "pty.json")
SLURM = {name: f"/usr/bin/{name}" for name in ("srun", "salloc", "sacct")}
SIZE = (33, 101)
SHELL = ["bash", "--norc", "--noprofile"]
# The foreground command Ctrl-C and Ctrl-Z are pressed at: it says it runs once it is in the foreground.
FOREGROUND = "sh -c 'echo st\"\"arted; exec sleep 100'"
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}

CASES = [
    {"name": "shell", "argv": ["-t2", "--pty", *SHELL], "prompt": "P> ", "steps": [
        {"send": "stty size"},
        {"send": "tput cols"},
        {"send": "echo TERM=$TERM"},
        {"send": "case $- in *m*) echo job control;; esac"},
        {"send": "env | grep ^SLURM_PTY_WIN | sort"},
        {"send": "tty >/dev/null && echo on a terminal"},
        {"send": "echo $SLURM_JOB_ID", "job_id": True},
        {"send": "sleep 100 &"},
        {"send": "jobs"},
        {"resize": [40, 120]},
        {"send": "stty size"},
        {"send": FOREGROUND, "wait_for": "started", "control": "c"},
        {"send": "echo rc=$?"},
        {"send": FOREGROUND, "wait_for": "started", "control": "z"},
        {"send": "jobs"},
        {"send": "bg %2"},
        {"send": "kill -9 %1 %2; wait", "record": False},
        {"send": "exit 3", "end": True},
    ]},
    {"name": "shell-exit-0", "argv": ["-t2", "--pty", *SHELL], "prompt": "P> ", "steps": [
        {"send": "echo $SLURM_JOB_ID", "job_id": True},
        {"send": "exit", "end": True},
    ]},
    {"name": "killed", "argv": ["-t2", "--pty", "bash", "-c", "kill -9 $$"]},
    {"name": "two-tasks", "argv": ["-t2", "-n2", "--pty", "bash", "-c",
                                   "echo rank=$SLURM_PROCID $(tty) $TERM; exit $SLURM_PROCID"]},
    {"name": "two-tasks-fail", "argv": ["-t2", "-n2", "--pty", "bash", "-c", "echo rank=$SLURM_PROCID; exit 5"]},
    {"name": "label", "argv": ["-t2", "-l", "--pty", "bash", "-c", "echo hi"]},
    {"name": "in-salloc", "command": "salloc", "argv": ["-t2", "-N1", *SHELL], "prompt": "O> ", "steps": [
        {"send": "PS1='I> ' {srun} --pty bash --norc --noprofile", "prompt": "I> "},
        {"send": "stty size", "prompt": "I> "},
        {"send": FOREGROUND, "wait_for": "started", "control": "c", "prompt": "I> "},
        {"send": "exit 4"},
        {"send": "echo srun=$?"},
        {"send": "{squeue} -h -j $SLURM_JOB_ID -o %T"},
        {"send": "exit", "end": True, "record": False},
    ]},
    {"name": "not-a-terminal", "terminal": False, "argv": ["-t2", "--pty", "tty"]},
    {"name": "with-output", "terminal": False, "argv": ["-t2", "-o", "out", "--pty", "true"]},
    {"name": "with-input", "terminal": False, "argv": ["-t2", "-i", "none", "--pty", "true"]},
]

_NOISE = re.compile(r"\x1b\[\?2004[hl]|\x1b\[K|\r")
_MASKS = [(re.compile(r"^(\[\d+\]) \d+$", re.M), r"\1 <pid>"), (re.compile(r"/dev/pts/\d+"), "/dev/pts/<n>"),
          (re.compile(r"\b\d{5,}\b"), "<jobid>")]


def clean(text: str) -> str:
    text = _NOISE.sub("", text)
    for pattern, word in _MASKS:
        text = pattern.sub(word, text)
    return text


def _job_state(sacct: str, job_id: str, env: dict) -> str:
    """``State ExitCode`` of the job once sacct shows it ended (SLURM's accounting lags a few seconds)."""
    deadline = time.monotonic() + 90
    line = ""
    while time.monotonic() < deadline:
        done = subprocess.run([sacct, "-n", "-X", "-P", "-j", job_id, "-o", "State,ExitCode"],
                              capture_output=True, text=True, env=env)
        line = done.stdout.strip()
        if line.split("|")[0].split(" ")[0] in ENDED:
            return line.replace("|", " ")
        time.sleep(0.5)
    return line


def play(case: dict, commands: dict, env: dict, cwd: str) -> dict:
    """Play ``case`` with ``commands`` (srun, salloc, sacct, squeue paths): what it printed, step by step."""
    import pexpect

    command = commands[case.get("command", "srun")]
    if not case.get("terminal", True):
        done = subprocess.run([command, *case["argv"]], capture_output=True, text=True, env=env, cwd=cwd,
                              stdin=subprocess.DEVNULL, timeout=120)
        return {"name": case["name"], "argv": case["argv"], "stdout": clean(done.stdout), "stderr": clean(done.stderr),
                "exit_code": done.returncode}
    env = {**env, "PS1": case.get("prompt", "P> ")}
    child = pexpect.spawn(command, case["argv"], env=env, cwd=cwd, encoding="utf-8", codec_errors="replace",
                          dimensions=SIZE, timeout=60)
    outputs, job_id = [], None
    try:
        if case.get("steps"):
            child.expect_exact(case["prompt"])
        else:
            child.expect(pexpect.EOF)
            outputs.append(clean(child.before))
        for step in case.get("steps", []):
            if "resize" in step:
                child.setwinsize(*step["resize"])
                time.sleep(1)  # bash redraws its prompt when told; let that pass before typing on
                continue
            line = step["send"].format(**commands)
            child.sendline(line)
            child.expect_exact(line + "\r\n")
            if "wait_for" in step:
                child.expect_exact(step["wait_for"])
                shown = child.before + child.after
                time.sleep(0.2)
                child.sendcontrol(step["control"])
            else:
                shown = ""
            if step.get("end"):
                child.expect(pexpect.EOF)
            else:
                child.expect_exact(step.get("prompt", case["prompt"]))
            shown += child.before
            if step.get("job_id"):
                job_id = _NOISE.sub("", shown).strip()
            if step.get("record", True):
                outputs.append(clean(shown))
    finally:
        child.close(force=True)
    recorded = {"name": case["name"], "argv": case["argv"], "outputs": outputs, "exit_code": child.exitstatus}
    if job_id and case.get("command", "srun") == "srun":
        recorded["job"] = _job_state(commands["sacct"], job_id, env)
    return recorded


def record(case: dict) -> dict:
    with tempfile.TemporaryDirectory() as work:
        env = clean_env({"TERM": "xterm-256color"})
        return play(case, {**SLURM, "squeue": "/usr/bin/squeue"}, env, work)


if __name__ == "__main__":
    record_main(__doc__, CASES, OUT, record, lambda result, took: f"exit {result['exit_code']} in {took:.1f}s")
