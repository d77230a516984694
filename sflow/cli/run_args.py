"""``flow run``'s command line: sbatch's options, the ``#SFLOW`` options, and a script or a command.

``flow run [OPTIONS] SCRIPT [ARGS...]`` is sbatch's form. ``flow run [OPTIONS] "COMMAND" [OPTIONS]``
(a first argument that is no file and holds a space) and ``flow run [OPTIONS] -- COMMAND...``
run a command as ``--wrap`` does. The ``#SFLOW`` options (``--limit-price``, ``--instance-type``
or ``-i``, ``--region``, ...) may come anywhere before the script; they reach the submission as
their ``SFLOW_*`` variables, set over the user's own, which gives SLURM's precedence: the command
line over the environment over the script's directives.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field

from sflow.errors import SlurmError
from sflow.slurm.options import Option, table

# flow run's own short option: -i is --instance-type here (sbatch's --input keeps its long name).
SHORT = {"i": "instance-type"}


@dataclass
class RunArgs:
    sbatch_args: list[str]  # what sbatch parses: its options, then --wrap=COMMAND or the script and its arguments
    sflow_env: dict[str, str] = field(default_factory=dict)  # SFLOW_* variables from the #SFLOW options given
    dry_run: bool = False  # flow run's own flags, wherever they came
    as_json: bool = False


def split_run_args(args: list[str], cwd: str | None = None) -> RunArgs:
    sflow, sbatch = table("sflow"), table("sbatch")
    result = RunArgs([])
    command: str | None = None
    i = 0

    def take_value(option: Option, spelling: str, inline: str | None) -> str | None:
        nonlocal i
        if option.arg == "none":
            if inline is not None:
                raise SlurmError(f"option '--{spelling}' doesn't allow an argument", 255)
            return None
        if inline is not None:
            return inline
        if i >= len(args):
            raise SlurmError(f"option '--{spelling}' requires an argument", 255)
        i += 1
        return args[i - 1]

    def set_sflow(option: Option, spelling: str, inline: str | None) -> None:
        value = take_value(option, spelling, inline)
        result.sflow_env[option.env_for("sflow")] = "1" if value is None else value

    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            if command is not None or i >= len(args):
                raise SlurmError("-- must be followed by the command to run", 255)
            command = shlex.join(args[i:])
            break
        if arg in ("--dry-run", "--json"):
            setattr(result, "dry_run" if arg == "--dry-run" else "as_json", True)
            continue
        if arg.startswith("--"):
            name, has_value, value = arg[2:].partition("=")
            inline = value if has_value else None
            ours = sflow.match_long_prefix(name)
            if sflow.by_long(name) is not None or (ours and not sbatch.match_long_prefix(name)):
                if len(ours) > 1:
                    result.sbatch_args.append(arg)  # ambiguous: sbatch's getopt says so in its words
                    continue
                set_sflow(ours[0][1], ours[0][0], inline)
                continue
            theirs = sbatch.match_long_prefix(name)
            if len(theirs) == 1 and theirs[0][1].arg == "required" and not has_value and i < len(args):
                arg = f"{arg}={args[i]}"  # joined: only the script then does not start with '-'
                i += 1
            result.sbatch_args.append(arg)
            continue
        if arg.startswith("-") and arg != "-":
            if arg[1] in SHORT:
                option = sflow.by_long(SHORT[arg[1]])
                set_sflow(option, option.long, arg[2:] or None)
                continue
            for j, char in enumerate(arg[1:], start=1):
                option = sbatch.by_short(char)
                if option is None or option.arg == "none":
                    continue
                if option.arg == "required" and j == len(arg) - 1 and i < len(args):
                    arg += args[i]  # the option's value is the next word: joined, as for long ones
                    i += 1
                break
            result.sbatch_args.append(arg)
            continue
        if command is None and " " in arg and not os.path.exists(os.path.join(cwd or os.getcwd(), arg)):
            command = arg  # flow run "python train.py" -i 8xh100: options may follow the command
            continue
        if command is not None:
            raise SlurmError(f"a command to run takes no further arguments: {arg} (quote the whole command)", 255)
        result.sbatch_args += args[i - 1:]  # the script and its arguments
        return result
    if command is not None:
        result.sbatch_args.append(f"--wrap={command}")
    return result
