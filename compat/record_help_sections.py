#!/usr/bin/env python3
"""Record which heading each option sits under in real sbatch's and salloc's --help.

    python3 compat/record_help_sections.py

Writes compat/help_sections.toml: per command, its headings in order and the long
options listed under each. sflow's --help groups the option table the same way.
"""

from __future__ import annotations

import os
import re
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "help_sections.toml")
COMMANDS = ["sbatch", "salloc"]
# The sections sflow writes itself, with the help/usage/version lines.
OWN = {"Help options:", "Other options:"}
OPTION = re.compile(r"^  (?:-\w,? +| {4})--([\w-]+)")


def sections(command: str) -> list[tuple[str, list[str]]]:
    text = subprocess.run([f"/usr/bin/{command}", "--help"], capture_output=True, text=True).stdout
    found: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.split("(")[0].rstrip().endswith(":") and not line.startswith("Usage"):
            found.append((line, []))
        elif found:
            match = OPTION.match(line)
            if match and match.group(1) not in found[-1][1]:
                found[-1][1].append(match.group(1))
    return [(title, names) for title, names in found if title not in OWN]


def main() -> None:
    lines = ["# Headings of SLURM 22.05's --help and the options under each, recorded by",
             "# compat/record_help_sections.py. Options not named here go under the first heading.", ""]
    for command in COMMANDS:
        for title, names in sections(command):
            lines += [f"[[{command}]]", f"title = {title!r}".replace("'", '"'),
                      "options = [" + ", ".join(f'"{n}"' for n in names) + "]", ""]
    with open(OUT, "w") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    main()
