"""What the recorders share: the reference SLURM, a clean environment, and golden files of named cases.

Imported by name from compat/ (a script's own directory is on sys.path, and
tests put compat/ there before importing a recorder).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import subprocess
import sys
import time
from typing import Callable

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
START = os.path.join(HERE, "..", "..", "shared", "slurm", "start-slurm.sh")


def load_toml(path: str) -> dict:
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def ensure_slurm() -> None:
    """Bring up the reference SLURM unless it already answers."""
    if subprocess.run(["/usr/bin/sinfo", "-h"], capture_output=True).returncode != 0:
        subprocess.run(["bash", START], check=True)


def clean_env(extra: dict | None = None) -> dict:
    """The fixed environment SLURM's commands run with, plus ``extra``."""
    user = pwd.getpwuid(os.getuid())
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": user.pw_dir, "USER": user.pw_name,
           "LOGNAME": user.pw_name, "LANG": "C", "SHELL": "/bin/bash"}
    env.update(extra or {})
    return env


def only_arg(doc: str) -> list[str] | None:
    """The names given with ``--only`` on the command line (None: record every case)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="record only these cases (others are kept)")
    return parser.parse_args().only


def record_cases(cases: list[dict], out: str, only: list[str] | None, record: Callable[[dict], dict],
                 note: Callable[[dict, float], str]) -> None:
    """Record each case into ``out`` (a JSON list by name); with ``only``, the other cases keep their last
    recording, so re-recording a few leaves the file otherwise as it was.

    ``note`` says on stderr how a case went, from its result and the seconds it took.
    """
    existing = {}
    if only and os.path.exists(out):
        existing = {r["name"]: r for r in json.load(open(out))}
    results = []
    for case in cases:
        if only and case["name"] not in only:
            if case["name"] in existing:
                results.append(existing[case["name"]])
            continue
        started = time.monotonic()
        results.append(record(case))
        print(f"{case['name']}: {note(results[-1], time.monotonic() - started)}", file=sys.stderr)
    with open(out, "w") as handle:
        json.dump(results, handle, indent=1, sort_keys=True, ensure_ascii=False)
        handle.write("\n")


def record_main(doc: str, cases: list[dict], out: str, record: Callable[[dict], dict],
                note: Callable[[dict, float], str]) -> None:
    """A recorder's command line: ``--only``, the reference SLURM brought up, then ``record_cases``."""
    only = only_arg(doc)
    ensure_slurm()
    record_cases(cases, out, only, record, note)
