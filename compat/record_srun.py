#!/usr/bin/env python3
"""Record what real SLURM 22.05's srun prints for compat/cases/srun.toml, and its help texts.

    python3 compat/record_srun.py [--only NAME ...]

Needs the running reference SLURM (/usr/bin/srun). Each case's argv runs in a fresh
directory, reading the case's ``stdin`` if it has one; stdout, stderr and the exit code go to compat/golden/srun.json (job ids and
times turned into placeholders). ``srun --help`` and ``--usage`` go to compat/help.toml,
which sflow prints as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile

from recorder import load_toml

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "cases", "srun.toml")
OUT = os.path.join(HERE, "golden", "srun.json")
HELP = os.path.join(HERE, "help.toml")
SRUN = "/usr/bin/srun"
_PLACEHOLDERS = [(re.compile(r"\b\d{5,}\b"), "<jobid>"),
                 (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"), "<time>")]


def scrub(text: str) -> str:
    for pattern, word in _PLACEHOLDERS:
        text = pattern.sub(word, text)
    return text


def record(case: dict) -> dict:
    with tempfile.TemporaryDirectory() as work:
        done = subprocess.run([SRUN, *case["argv"]], cwd=work, capture_output=True, text=True, timeout=120,
                              env={**os.environ, **case.get("env", {})}, input=case.get("stdin"))
    recorded = {"argv": case["argv"], "env": case.get("env", {}), "stdout": scrub(done.stdout),
                "stderr": scrub(done.stderr), "exit_code": done.returncode}
    if "stdin" in case:
        recorded["stdin"] = case["stdin"]
    return recorded


def record_help() -> None:
    texts = {flag: subprocess.run([SRUN, f"--{flag}"], capture_output=True, text=True).stdout
             for flag in ("help", "usage")}
    with open(HELP, "w") as handle:
        handle.write("# srun's --help and --usage as SLURM 22.05 prints them (compat/record_srun.py).\n\n[srun]\n")
        for flag, text in texts.items():
            assert "'''" not in text
            handle.write(f"{flag} = '''\n{text}'''\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", help="case names to record again (help: the help texts)")
    args = parser.parse_args()
    cases = load_toml(CASES)["case"]
    golden = {}
    if os.path.exists(OUT):
        with open(OUT) as handle:
            golden = json.load(handle)
    if not args.only or "help" in args.only:
        record_help()
    for case in cases:
        if args.only and case["name"] not in args.only:
            continue
        golden[case["name"]] = record(case)
    with open(OUT, "w") as handle:
        json.dump(golden, handle, indent=1, sort_keys=True)
        handle.write("\n")


if __name__ == "__main__":
    main()
