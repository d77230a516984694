"""docs/options.md, written from compat/options.toml (the one table of options).

    python3 -m sflow.slurm.options_doc > docs/options.md

A test checks that the committed page equals what this prints, so the page
cannot drift from the table the parsers read.
"""

from __future__ import annotations

import sys

from sflow.slurm.options import all_options

COMMANDS = ("sbatch", "srun", "salloc", "squeue", "scancel", "sacct", "sinfo", "scontrol", "sflow")
STATUS_WORDS = {"supported": "supported", "ignored": "accepted, ignored with a warning", "rejected": "rejected"}


def _names(option) -> str:
    long = " ".join(f"`--{name}`" for name in (option.long, *option.aliases))
    return f"`-{option.short}`, {long}" if option.short else long


def _meaning(option) -> str:
    if option.status == "supported":
        return f"sets `{option.field}`" if option.field else ""
    return option.note.replace("|", "\\|")


def render() -> str:
    options = all_options()
    lines = [
        "# Options",
        "",
        "Every option of the SLURM 22.05 commands that sflow knows, from `compat/options.toml`",
        "(the table the parsers, `--help` and the tests read; this page is generated from it by",
        "`python3 -m sflow.slurm.options_doc`).",
        "",
        "- **supported**: parsed exactly as SLURM parses it, and acted on.",
        "- **accepted, ignored with a warning**: parsed and validated as SLURM does, then ignored,",
        "  with a one-line warning on stderr saying why (scripts written for a real cluster still run).",
        "- **rejected**: refused with a clear error saying why; sflow cannot honour it.",
        "",
    ]
    for command in COMMANDS:
        mine = sorted((o for o in options if command in o.commands), key=lambda o: o.long)
        if not mine:
            continue
        counts = {s: sum(1 for o in mine if o.status == s) for s in STATUS_WORDS}
        lines += [f"## {command}", "",
                  f"{len(mine)} options: " + ", ".join(f"{n} {STATUS_WORDS[s]}" for s, n in counts.items() if n),
                  "", "| option | status | what it does in sflow |", "| --- | --- | --- |"]
        lines += [f"| {_names(o)} | {STATUS_WORDS[o.status]} | {_meaning(o)} |" for o in mine]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render())
