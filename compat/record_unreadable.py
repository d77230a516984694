#!/usr/bin/env python3
"""Record what real SLURM 22.05's commands do when their state cannot be read.

    sudo python3 compat/record_unreadable.py

SLURM's client-side state is slurm.conf; sflow's is ``$SFLOW_HOME``. Each
command runs with ``SLURM_CONF`` inside a directory nobody may enter, as root
without the capabilities that bypass file permissions (``setpriv``), so the
kernel refuses as it would for an ordinary user. SLURM retries for 60 s before
giving up, so the commands run side by side. Results go to
compat/golden/unreadable_state.json, the directory replaced by ``{dir}``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

from recorder import clean_env, ensure_slurm

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "golden", "unreadable_state.json")
COMMANDS = [["squeue"], ["sbatch", "--wrap", "true"], ["scancel", "1"], ["sacct"], ["scontrol", "show", "job"],
            ["sinfo"], ["srun", "true"]]
NO_BYPASS = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def record(argv: list[str], directory: str) -> dict:
    env = clean_env({"SLURM_CONF": os.path.join(directory, "slurm.conf")})
    done = subprocess.run([*NO_BYPASS, f"/usr/bin/{argv[0]}", *argv[1:]], env=env, cwd="/tmp",
                          capture_output=True, text=True, timeout=180)
    # setpriv runs the command by its full path; SLURM names itself after argv[0]'s basename.
    return {"argv": argv, "stdout": done.stdout.replace(directory, "{dir}"),
            "stderr": done.stderr.replace(directory, "{dir}"), "exit_code": done.returncode}


def main() -> None:
    ensure_slurm()
    directory = tempfile.mkdtemp(prefix="sflow-golden-unreadable-")
    shutil.copy("/etc/slurm/slurm.conf", directory)
    os.chmod(directory, 0)
    try:
        with ThreadPoolExecutor(len(COMMANDS)) as pool:
            results = list(pool.map(lambda argv: record(argv, directory), COMMANDS))
    finally:
        os.chmod(directory, 0o700)
        shutil.rmtree(directory)
    with open(OUT, "w") as handle:
        json.dump(results, handle, indent=1, sort_keys=True)
        handle.write("\n")


if __name__ == "__main__":
    main()
