#!/usr/bin/env python3
"""Record every long-option spelling real sbatch, srun and salloc accept into golden/option_spellings.json.

    python3 compat/record_spellings.py

The man pages leave out aliases (``--tasks-per-node``, ``--cpu_bind``...), so
the names are found by asking each command's getopt_long itself: a walk over
prefixes (``--x=1 --usage``) answers "unrecognized" (no name starts so),
"ambiguous" (several do) or accepts it, and the walk goes one character deeper
under every prefix that is not unrecognized. A name is a spelling when getopt
names it in its own messages, or when it is a leaf of the walk. Its argument
kind comes from ``--name=1`` ("doesn't allow an argument": none) and
``--name --bogus1 --bogus2`` (the next word taken as its value: required).

For every prefix the golden file also keeps getopt's answer (the option it
resolves to, or the possibilities it lists as ambiguous), so the tests check
sflow's prefix matching too. Nothing is submitted: every probe stops in getopt,
at --usage, or at an empty script on stdin.
"""

from __future__ import annotations

import json
import os
import re
import string
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from recorder import clean_env, ensure_slurm  # noqa: E402

OUT = os.path.join(HERE, "golden", "option_spellings.json")
COMMANDS = ["sbatch", "srun", "salloc"]
ALPHABET = string.ascii_lowercase + string.digits + "-_"
AMBIGUOUS = re.compile(r"option '--[^']*' is ambiguous; possibilities:((?: '--[^']+')+)")
NO_ARGUMENT = re.compile(r"option '--([^']+)' doesn't allow an argument")
NEEDS_ARGUMENT = re.compile(r"option '--([^']+)' requires an argument")
UNRECOGNIZED = re.compile(r"unrecognized option '--([^']*)'")


def run(command: str, args: list[str]) -> str:
    done = subprocess.run([f"/usr/bin/{command}", *args], capture_output=True, stdin=subprocess.DEVNULL,
                          env=clean_env(), cwd="/tmp", timeout=30)
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


def probe(command: str, prefix: str) -> dict:
    """getopt's answer for ``--prefix``: unrecognized, ambiguous (with its list) or an option."""
    out = run(command, [f"--{prefix}=1", "--usage"])
    unrecognized = UNRECOGNIZED.search(out)
    if unrecognized and unrecognized.group(1) == f"{prefix}=1" or unrecognized and unrecognized.group(1) == prefix:
        return {"outcome": "unrecognized"}
    ambiguous = AMBIGUOUS.search(out)
    if ambiguous:
        return {"outcome": "ambiguous", "possibilities": re.findall(r"'--([^']+)'", ambiguous.group(1))}
    none = NO_ARGUMENT.search(out)
    if none:
        return {"outcome": "option", "name": none.group(1), "arg": "none"}
    taken = run(command, [f"--{prefix}", "--bogus1", "--bogus2"])
    if "unrecognized option '--bogus1'" in taken:
        return {"outcome": "option", "name": None, "arg": "optional"}
    # Taking the next word as its value: the option needs one. Alone at the end, getopt names it.
    named = NEEDS_ARGUMENT.search(run(command, [f"--{prefix}"]))
    return {"outcome": "option", "name": named.group(1) if named else None, "arg": "required"}


def short_options(command: str) -> dict[str, str]:
    """The one-letter options: "required" when the next word is taken as the value, else "none"
    (a short option with an optional value takes it only when attached)."""
    found = {}
    for char in string.ascii_letters + string.digits:
        done = subprocess.run([f"/usr/bin/{command}", f"-{char}", "--bogus1", "--bogus2"], capture_output=True,
                              stdin=subprocess.DEVNULL, env=clean_env(), cwd="/tmp", timeout=30)
        out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        if f"invalid option -- '{char}'" not in out:
            # -h, -V and the like answer at once and exit 0.
            alone = "unrecognized option '--bogus1'" in out or done.returncode == 0
            found[char] = "none" if alone else "required"
    return found


def walk(command: str) -> dict[str, dict]:
    answers: dict[str, dict] = {}
    frontier = list(ALPHABET[:-2])
    with ThreadPoolExecutor(8) as pool:
        while frontier:
            results = list(pool.map(lambda p: probe(command, p), frontier))
            nxt = []
            for prefix, answer in zip(frontier, results):
                if answer["outcome"] == "unrecognized":
                    continue
                answers[prefix] = answer
                nxt += [prefix + c for c in ALPHABET]
            frontier = nxt
    return answers


def spellings(answers: dict[str, dict]) -> dict[str, str]:
    """The full names among the prefixes, with their argument kind."""
    names = {}
    for prefix, answer in answers.items():
        if answer["outcome"] != "option":
            continue
        leaf = not any(other != prefix and other.startswith(prefix) for other in answers)
        if answer["name"] == prefix or leaf:
            names[prefix] = answer["arg"]
        elif answer["name"] is None:
            # An optional-argument option reached by a prefix that also leads further: a name only
            # if no single name below it could be what getopt resolved it to.
            below = {p for p in answers if p.startswith(prefix) and p != prefix}
            leaves = [p for p in below if not any(o != p and o.startswith(p) for o in answers)]
            if len(leaves) > 1 or any(answers[leaf]["arg"] != answer["arg"] for leaf in leaves):
                names[prefix] = answer["arg"]
    return dict(sorted(names.items()))


def main() -> None:
    ensure_slurm()
    data = {}
    for command in COMMANDS:
        answers = walk(command)
        names = spellings(answers)
        prefixes = {p: a for p, a in sorted(answers.items()) if p not in names}
        data[command] = {"names": names, "prefixes": prefixes, "short": short_options(command)}
        print(f"{command}: {len(names)} spellings, {len(prefixes)} prefixes", file=sys.stderr)
    with open(OUT, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")


if __name__ == "__main__":
    main()
