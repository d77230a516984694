#!/usr/bin/env python3
"""Record what real SLURM 22.05's sacct usage fields and sstat print, into compat/golden/accounting.json.

    python3 compat/record_accounting.py

Needs the running reference SLURM. Jobs run as user nobody with --acctg-freq=1: one that holds
300 MB in its batch step and 200 MB in an srun step, one that burns CPU, one that fails, a
two-node job and an array. sstat is asked about a running job (its batch step, its steps, the
options that change the layout), about a job with no step running but its batch step, and about
finished and unknown jobs; sacct about each finished job's usage fields. Each run keeps argv,
stdout, stderr and exit_code; job ids differ from one recording to the next, so the tests
compare layouts, widths, value forms and messages, not ids. seff is not part of this SLURM's
packages, so its report is not recorded here (see docs/accounting.md).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import time

from recorder import clean_env, ensure_slurm

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "golden", "accounting.json")
NOBODY = pwd.getpwnam("nobody")
WORK = "/tmp/sflow-record-accounting"
FIELDS = "JobID,JobName,State,AllocCPUS,NTasks,Elapsed,CPUTime,TotalCPU,UserCPU,SystemCPU,MaxRSS,AveRSS,MaxVMSize,AveVMSize,MaxRSSNode,MaxRSSTask,AveCPU,MinCPU"

HOLD = ("import time\nb = bytearray({mb} * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
        "time.sleep({secs})\n")
SCRIPTS = {
    "memory": f"#!/bin/bash\npython3 -c '{HOLD.format(mb=300, secs=4)}'\nsrun python3 -c '{HOLD.format(mb=200, secs=8)}'\n",
    "cpu": "#!/bin/bash\npython3 -c 'import time\nt = time.time()\nwhile time.time() - t < 3: pass'\n",
    "failed": "#!/bin/bash\nsleep 1\nexit 3\n",
    "multinode": "#!/bin/bash\nsrun -N2 -n2 sleep 3\n",
    "array": "#!/bin/bash\nsleep 2\n",
    "sleeper": "#!/bin/bash\nsleep 12\n",
}


def run(argv: list[str]) -> dict:
    done = subprocess.run(argv, executable=f"/usr/bin/{argv[0]}", capture_output=True, text=True, cwd=WORK,
                          env={**clean_env(), "USER": "nobody", "LOGNAME": "nobody", "HOME": "/tmp"},
                          user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[], timeout=120)
    return {"argv": argv, "stdout": done.stdout, "stderr": done.stderr, "exit_code": done.returncode}


def submit(name: str, *options: str) -> str:
    path = os.path.join(WORK, f"{name}.sh")
    with open(path, "w") as handle:
        handle.write(SCRIPTS[name])
    os.chmod(path, 0o755)
    out = run(["sbatch", "--parsable", "--acctg-freq=1", "-o", f"{WORK}/{name}-%j.out", *options, path])
    return out["stdout"].strip().split(";")[0]


def wait_gone(job: str) -> None:
    for _ in range(240):
        if not run(["squeue", "-h", "-j", job])["stdout"].strip():
            return
        time.sleep(0.5)


def wait_step(job: str, step: str) -> None:
    for _ in range(120):
        if re.search(rf"^{job}\.{step}\s", run(["squeue", "-h", "-s", "-j", job, "-o", "%i "])["stdout"], re.M):
            return
        time.sleep(0.25)


def main() -> None:
    ensure_slurm()
    os.makedirs(WORK, exist_ok=True)
    os.chmod(WORK, 0o777)
    runs: dict[str, list[dict]] = {}
    memory = submit("memory")
    wait_step(memory, "0")
    time.sleep(3)
    runs["sstat-running"] = [
        run(["sstat", "-j", memory]), run(["sstat", "-a", "-j", memory]), run(["sstat", "-j", f"{memory}.batch"]),
        run(["sstat", "-p", "-j", memory]), run(["sstat", "-P", "-a", "-j", memory]), run(["sstat", "-n", "-j", memory]),
        run(["sstat", "--format=JobID,MaxRSS,AveRSS,MaxVMSize,NTasks", "-j", memory]),
        run(["sstat", "-o", "JobID,AveCPU,MaxRSSNode", "-a", "-P", "-j", memory]),
        run(["sstat", "-n", "-P", "-a", "-o", "jobid,maxrss", "-j", memory]),
        run(["sstat", "-o", "JobID,bogus", "-j", memory]),
    ]
    sleeper = submit("sleeper")
    time.sleep(4)
    runs["sstat-batch-only"] = [run(["sstat", "-j", sleeper]), run(["sstat", "-a", "-j", sleeper]),
                                run(["sstat", "-j", f"{sleeper}.0"])]
    jobs = {"memory": memory, "sleeper": sleeper, "cpu": submit("cpu"), "failed": submit("failed"),
            "multinode": submit("multinode", "-N2", "-n2"), "array": submit("array", "--array=1-2")}
    for job in jobs.values():
        wait_gone(job)
    time.sleep(2)  # accounting catches up with the ends
    runs["sstat-errors"] = [run(["sstat", "-j", memory]), run(["sstat", "-j", "999999"]), run(["sstat"]),
                            run(["sstat", "-j", "abc"])]
    runs["sacct-usage"] = [run(["sacct", "-j", job, "-o", FIELDS]) for job in jobs.values()]
    runs["sacct-usage-parsable"] = [run(["sacct", "-P", "-j", jobs["memory"], "-o", FIELDS]),
                                    run(["sacct", "-j", jobs["memory"], "-o", "JobID,MaxRSS,AveRSS,MaxVMSize", "--noconvert"]),
                                    run(["sacct", "-j", jobs["memory"], "-o", "JobID,MaxRSS,MaxVMSize", "--units=M"])]
    conf = subprocess.run(["/usr/bin/scontrol", "show", "config"], capture_output=True, text=True).stdout
    gather = [line for line in conf.splitlines() if "JobAcctGather" in line or "ProctrackType" in line]
    with open(OUT, "w") as handle:
        json.dump({"jobs": list(jobs), "config": gather, "runs": runs}, handle, indent=1, sort_keys=True)
        handle.write("\n")


if __name__ == "__main__":
    main()
