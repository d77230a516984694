"""Entry points of the drop-in SLURM commands (sbatch, squeue, ...).

Kept lean on purpose: pipelines call these in tight loops, so this module
imports only the standard library and the errors every command renders, and
each command's module is imported only when that command runs.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module

from sflow.errors import SflowError, render


def _run(command: str) -> None:
    # Names, paths and values are any bytes, held as str with surrogateescape: print
    # them as the bytes they were, as SLURM does.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    code = run_main(command, sys.argv[1:])
    sys.stdout.flush()
    if command in READS_THE_STORE:
        _revive()
    sys.exit(code or 0)


def run_main(command: str, argv: list[str]) -> int:
    """The command's ``main(argv)``, its errors rendered as SLURM's: its exit code, never a traceback.

    The controller runs commands for the native client through this too, so both paths say the same.
    """
    try:
        code = import_module(f"sflow.cli.cmd_{command}").main(argv)
    except SflowError as err:
        print(render(command, err), file=sys.stderr)
        code = getattr(err, "exit_code", 1)
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # The reader went away (``squeue | head``): not an error worth a word.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    except Exception as err:  # never a traceback for a user
        if os.environ.get("SFLOW_DEBUG"):
            raise
        print(f"{command}: error: internal error: {type(err).__name__}: {err} "
              "(set SFLOW_DEBUG=1 for the traceback)", file=sys.stderr)
        code = 1
    return code


# These read SQLite and never reach the controller, so they would not notice it died.
READS_THE_STORE = ("squeue", "sacct", "sinfo", "scontrol", "sstat", "seff")


def _revive() -> None:
    """Start a controller killed while jobs run or bids are live (see sflow.queue.watchdog)."""
    try:
        # deferred: only the commands that read the store revive a controller
        from sflow.queue.paths import home
        from sflow.queue.watchdog import revive

        revive(home())
    except Exception:  # supervision must never turn a good answer into a failure
        if os.environ.get("SFLOW_DEBUG"):
            raise


COMMANDS = ("sbatch", "srun", "salloc", "squeue", "scancel", "sacct", "sstat", "seff", "sinfo", "scontrol")


def sbatch() -> None:
    _run("sbatch")


def srun() -> None:
    _run("srun")


def salloc() -> None:
    _run("salloc")


def squeue() -> None:
    _run("squeue")


def scancel() -> None:
    _run("scancel")


def sacct() -> None:
    _run("sacct")


def sstat() -> None:
    _run("sstat")


def seff() -> None:
    _run("seff")


def sinfo() -> None:
    _run("sinfo")


def scontrol() -> None:
    _run("scontrol")


def _wait_again(job_id: str) -> None:
    """sbatch --wait's wait, for a native client whose controller went away after it had
    submitted: waits as the shim's own sbatch does (a new controller, asked again), never submits."""
    from sflow.cli import cmd_sbatch  # deferred: as each command's module

    try:
        code = cmd_sbatch.wait_for(int(job_id))
    except SflowError as err:
        print(render("sbatch", err), file=sys.stderr)
        code = getattr(err, "exit_code", 1)
    except KeyboardInterrupt:
        code = 130
    except Exception as err:  # as run_main: never a traceback for a user
        if os.environ.get("SFLOW_DEBUG"):
            raise
        print(f"sbatch: error: internal error: {type(err).__name__}: {err} "
              "(set SFLOW_DEBUG=1 for the traceback)", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    # ``python3 -m sflow.cli.shims COMMAND ARGS...``: what the native client runs when the
    # controller cannot run the command for it.
    if len(sys.argv) == 3 and sys.argv[1] == "--wait":
        _wait_again(sys.argv[2])
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print("usage: python3 -m sflow.cli.shims COMMAND [ARGS...]", file=sys.stderr)
        sys.exit(2)
    sys.argv = sys.argv[1:]
    _run(sys.argv[0])
