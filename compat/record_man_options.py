#!/usr/bin/env python3
"""Snapshot the option names of SLURM's man pages into golden/man_options.json.

    python3 compat/record_man_options.py     (needs the slurm-client man pages)

The test suite checks that compat/options.toml knows every one of them.
"""

import gzip
import json
import os
import re
import subprocess

COMMANDS = ["sbatch", "srun", "salloc", "squeue", "scancel", "sacct", "sinfo", "scontrol"]
# sacct's man page puts these options' arguments on the next line.
ARGUMENT_ON_NEXT_LINE = {"sacct": {"format", "starttime", "partition", "qos", "timelimit-max", "timelimit-min"}}
HEADER = re.compile(r"^       (?:-([A-Za-z0-9]) ?,\s*)?--([a-zA-Z][\w-]*)(\[?=|\s|$)(.*)$")


def man_text(command: str) -> str:
    with gzip.open(f"/usr/share/man/man1/{command}.1.gz", "rb") as handle:
        roff = handle.read()
    out = subprocess.run(["groff", "-man", "-Tutf8"], input=roff, capture_output=True).stdout
    return subprocess.run(["col", "-b"], input=out, capture_output=True).stdout.decode()


def options(command: str) -> dict:
    found = {}
    for line in man_text(command).splitlines():
        match = HEADER.match(line)
        if match:
            short, long, sep, rest = match.groups()
            arg = "optional" if sep == "[=" else "required" if sep == "=" else "none"
            if long in ARGUMENT_ON_NEXT_LINE.get(command, ()):
                arg = "required"
            found.setdefault(long, {"short": short, "arg": arg})
            for alias in re.findall(r", --([a-z][\w-]*)=", rest):
                found.setdefault(alias, {"short": None, "arg": arg})
        elif re.match(r"^       -m,\s+--distribution", line):
            found.setdefault("distribution", {"short": "m", "arg": "required"})
    return found


def main():
    data = {command: options(command) for command in COMMANDS}
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "man_options.json")
    with open(out, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")


if __name__ == "__main__":
    main()
