#!/usr/bin/env python3
"""Record what real SLURM 22.05's squeue, sinfo, sacct and scancel print for compat/cases/query.toml.

    python3 compat/record_query.py [--only CASE ...]

Needs the running reference SLURM. Each command runs as user nobody (sflow's users
are not root; nobody has no jobs, so the listings do not depend on the queue) with
the case's environment variables, and compat/golden/query.json keeps argv, env,
stdout, stderr and exit_code of each.
"""

from __future__ import annotations

import os
import pwd
import subprocess

from recorder import clean_env, load_toml, record_main

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "cases", "query.toml")
OUT = os.path.join(HERE, "golden", "query.json")
NOBODY = pwd.getpwnam("nobody")


def run(argv: list[str], env: dict) -> dict:
    done = subprocess.run(argv, executable=f"/usr/bin/{argv[0]}", capture_output=True, text=True, cwd="/tmp",
                          env={**clean_env(env), "USER": "nobody", "LOGNAME": "nobody", "HOME": "/tmp"},
                          user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[], timeout=60)
    return {"argv": argv, "stdout": done.stdout, "stderr": done.stderr, "exit_code": done.returncode}


def record(case: dict) -> dict:
    env = case.get("env", {})
    return {"name": case["name"], "env": env, "dump_only": case.get("dump_only", False),
            "runs": [run(argv, env) for argv in case["commands"]]}


def main() -> None:
    record_main(__doc__, load_toml(CASES)["case"], OUT, record, lambda r, secs: f"{len(r['runs'])} commands")


if __name__ == "__main__":
    main()
