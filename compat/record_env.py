#!/usr/bin/env python3
"""Record the SLURM environment real SLURM gives batch scripts and srun tasks.

    python3 compat/record_env.py        (as root, with ../shared/slurm/start-slurm.sh's cluster up)

Each case in CASES runs as a real job that dumps ``env`` from the batch
script and from every srun task; the SLURM variables (and the GPU ones) go to
compat/golden/env.json with the job id, directory and user turned into
placeholders. The tests build the same jobs with sflow's environment table.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = "/tmp/sflow-golden/env"
KEEP = re.compile(r"^(SLURM_|SLURMD_|CUDA_VISIBLE_DEVICES|GPU_DEVICE_ORDINAL|ROCR_VISIBLE_DEVICES|ZE_AFFINITY_MASK|ENVIRONMENT$|TMPDIR$|HOSTNAME$)")

CASES = {
    "nodes2-tasks-per-node2-gpus": ["-N2", "--ntasks-per-node=2", "--gpus-per-node=2", "-c", "1", "-J", "probe"],
    "ntasks3": ["-n3", "-J", "three"],
    "plain": ["-J", "plain"],
    "cpus-per-task2": ["-c2", "-J", "cpt"],
    "mem-and-time": ["--mem=1G", "-t", "5", "-J", "memtime"],
    "array": ["--array=2-4:2", "-J", "arr"],
    "export-none": ["--export=NONE", "-J", "exp"],
}
SCRIPT = """#!/bin/bash
env | sort > batch.env
/usr/bin/srun bash -c 'env | sort > task.$SLURM_PROCID.env'
"""


def record(name: str, args: list[str]) -> dict:
    work = os.path.join(WORK, name)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    with open(os.path.join(work, "job.sh"), "w") as handle:
        handle.write(SCRIPT)
    out = subprocess.run(["/usr/bin/sbatch", "--wait", "--parsable", *args, "job.sh"], cwd=work,
                         capture_output=True, text=True)
    job_id = out.stdout.strip().split(";")[0]
    time.sleep(0.5)
    subs = [(work, "{cwd}"), (job_id, "{job_id}")]

    def load(path: str) -> dict:
        env = {}
        for line in open(path):
            key, _, value = line.rstrip("\n").partition("=")
            if KEEP.match(key):
                for real, placeholder in subs:
                    value = value.replace(real, placeholder)
                env[key] = value
        return env

    if "--array" in " ".join(args):
        # One element is enough: the last one keeps the array's own id.
        pass
    tasks = sorted(f for f in os.listdir(work) if f.startswith("task."))
    return {"args": args, "batch": load(os.path.join(work, "batch.env")),
            "tasks": [load(os.path.join(work, t)) for t in tasks]}


def main() -> None:
    results = {name: record(name, args) for name, args in CASES.items()}
    with open(os.path.join(HERE, "golden", "env.json"), "w") as handle:
        json.dump(results, handle, indent=1, sort_keys=True)
        handle.write("\n")


if __name__ == "__main__":
    main()
