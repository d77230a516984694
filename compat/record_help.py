#!/usr/bin/env python3
"""Record the help and usage texts of real SLURM 22.05's squeue, sinfo, sacct and scancel.

    python3 compat/record_help.py

Writes compat/help_texts.toml: for each command, the exact stdout of ``--help``,
``--usage`` (and sacct's ``--helpformat``). sflow prints these texts as they
are, so a script that reads them sees what it would see on a SLURM cluster.
"""

from __future__ import annotations

import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "help_texts.toml")
TEXTS = {
    "squeue": ("help", "usage"),
    "sinfo": ("help", "usage"),
    "sacct": ("help", "usage", "helpformat"),
    "scancel": ("help", "usage"),
}


def record(command: str, option: str) -> str:
    done = subprocess.run([f"/usr/bin/{command}", f"--{option}"], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "LANG": "C"}, cwd="/tmp", timeout=60)
    if "'''" in done.stdout:
        raise SystemExit(f"{command} --{option}: text not storable as a TOML literal string")
    return done.stdout


def main() -> None:
    lines = ["# What real SLURM 22.05 prints for --help and --usage (and sacct --helpformat),",
             "# recorded by compat/record_help.py; sflow prints these texts as they are.", ""]
    for command, options in TEXTS.items():
        lines.append(f"[{command}]")
        for option in options:
            # A literal multi-line string keeps tabs and backslashes; its first newline is dropped.
            lines.append(f"{option} = '''\n{record(command, option)}'''")
        lines.append("")
    with open(OUT, "w") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    main()
