"""The submitting side's facts, gathered once: who, where, with what environment."""

from __future__ import annotations

import os
import sys
from typing import Callable

from sflow.errors import SlurmError
from sflow.queue import client
from sflow.slurm.getopt import getopt
from sflow.users import name_of


def identity() -> dict:
    uid = os.getuid()
    user = name_of(uid) or os.environ.get("USER", str(uid))
    return {"user": user, "uid": uid, "gid": os.getgid(), "host": os.uname().nodename.split(".")[0]}


def read_stdin_script() -> str | None:
    """The script piped to sbatch, or None when stdin is a terminal (sbatch then errors)."""
    if sys.stdin is None or sys.stdin.isatty():
        return None
    data = sys.stdin.buffer.read()
    return data.decode("utf-8", errors="surrogateescape")


def read_script_file(path: str, cwd: str) -> str:
    """A script named on the command line, read as the submitting user from where they stand."""
    full = path if os.path.isabs(path) else os.path.join(cwd, path)
    if os.path.isdir(full):
        return ""  # sbatch reads nothing from a directory: "Batch script is empty!"
    try:
        with open(full, "rb") as handle:
            data = handle.read()
    except OSError:
        raise SlurmError(f"Unable to open file {path}") from None
    return data.decode("utf-8", errors="surrogateescape")


def read_script(argv: list[str], cwd: str, stdin: Callable[[], str | None] = read_stdin_script) -> str | None:
    """The text of the script ``sbatch ARGV`` submits: the file it names, else what is piped in.

    None when there is nothing to read: ``--wrap`` makes its own script (and sbatch refuses
    script arguments beside it before reading any), and --help/--usage/--version submit nothing.
    """
    parsed = getopt("sbatch", argv)
    if any(option.field in ("wrap", "help", "usage", "version") for option, _ in parsed.options):
        return None
    if parsed.positionals:
        return read_script_file(parsed.positionals[0], cwd)
    return stdin()


# What CPython's start-up may set LC_CTYPE to when it coerces the C locale (PEP 538).
_COERCED = ("C.UTF-8", "C.utf8", "UTF-8")


def environment() -> dict[str, str]:
    """The environment the user gave this command, to hand to a job.

    CPython may add ``LC_CTYPE`` to its own environment before any of sflow runs
    (coercing the C locale); a job of real sbatch never sees it. The environment
    this process was started with (``/proc/self/environ``) tells whether it was ours.
    """
    if client.in_process is not None:
        # Run in the controller for the native client: the environment it was given, as it came.
        return dict(client.in_process.environ)
    env = dict(os.environ)
    if env.get("LC_CTYPE") in _COERCED:
        try:
            with open("/proc/self/environ", "rb") as handle:
                given = handle.read().split(b"\0")
        except OSError:
            return env
        if not any(item.startswith(b"LC_CTYPE=") for item in given):
            del env["LC_CTYPE"]
    return env

