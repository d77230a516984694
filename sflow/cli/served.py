"""The controller's process, hosting the drop-in commands for the native client (``run``).

``python3 -m sflow.cli.served`` is the controller (``sflow.queue.controller``) with one request
more, ``run``: the queue knows nothing of the commands, so they are added here, at the edge.

A shim is a whole CPython start-up (tens of milliseconds) for a command that then works
for a few. The native client (``native/sflow-client.c``) is a small C program that sends
what the shim's process would have had (argv, environment, working directory, whether
its standard streams are terminals, and its standard input when asked for it); the
controller runs the command's own ``main(argv)`` here, with those, and answers the bytes
the command wrote, in the order a shim would have written them, and its exit code.

Whatever cannot be done the same way here is answered ``shim``, and the client runs the
Python shim instead, so a command behaves the same whichever way it ran:

- a peer whose uid or gid is not the controller's own (root included): every file the
  command opens and every ``os.getuid()`` it asks is then the peer's own, as in a shim;
- a command other than sbatch, squeue, scancel, sacct, sinfo and scontrol;
- what repeats (``squeue``/``sinfo --iterate``), and ``scontrol requeue``, which shields its own process from the requeue's SIGTERM;
- a command that reads its standard input, except sbatch's script (asked for with
  ``need_stdin``, then sent by the client), or that asks the controller for what it cannot
  answer in the middle of a turn (``shutdown``, a Mithril market still being fetched...);
  whatever such a command had changed is undone with the turn's savepoint;
- ``SFLOW_DEBUG`` (a traceback is wanted), a state directory other than this controller's.

Wire shape (one JSON line each way, the reply's line followed by the bytes it announces):
``{"op": "run", "wire": 2, "command", "argv": [b64...], "env": [b64 of NAME=VALUE...], "cwd": b64,
"tty": [stdin, stdout, stderr], "stdin": b64?}`` -> ``{"ok": true, "ran": true, "wire": 2, "exit_code",
"writes": [[fd, length], ...]}`` then the writes' bytes, raw, one after the other; or ``{"ok": true,
"shim": WHY}`` or ``{"ok": true, "need_stdin": true}``. The output (a listing of 9,000 jobs is a
megabyte) is neither encoded nor scanned on either side: the client reads the lengths it is told.
``wire`` is this shape's version, on both sides: a client and a controller that are not of one
version run the shim, never mis-read each other.

``sbatch --wait`` runs here too without holding the loop: the command stops where it would
wait, and its answer comes in two replies. The first, ``{"ok": true, "ran": true, "more": true,
"wait_for": [JOB], "writes"}``, is sent after the submission's COMMIT with what the shim has
written by then ("Submitted batch job N"); the second, ``{"ok": true, "ran": true,
"exit_code", "writes"}``, when the job (every task of an array) has ended, as the ``wait``
request is answered. A client that loses the controller in between waits as the shim does
(``python3 -m sflow.cli.shims --wait JOB``), never submitting again. Argv, environment and paths
travel as base64: they are any bytes, and the C side then needs no UTF-8 of its own.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from binascii import a2b_base64
from functools import cached_property

from sflow.backends.base import Deferred
from sflow.cli.shims import run_main
from sflow.errors import SflowError
from sflow.queue import client, controller, ops
from sflow.queue.server import Trailing
from sflow.slurm.getopt import getopt
from sflow.statedir import home_path

COMMANDS = ("sbatch", "squeue", "scancel", "sacct", "sinfo", "scontrol")
# What a command run here may ask of the controller: answered at once, within the turn.
IN_TURN_OPS = ("submit", "cancel", "hold", "release", "update", "top", "partition", "ping", "jobs", "usage")
WIRE = 2  # the version of the run request's and reply's shape (see above)
SHIM_BUFFER = 8192  # a shim's stdout, when not a terminal, reaches its fd in blocks of this size


class _NeedShim(BaseException):
    """Only the Python shim can run this command the same way (BaseException: no command's
    ``except Exception`` may take it for an error of its own)."""


class _Wait(BaseException):
    """The command waits for these jobs' end (sbatch --wait): answered later, not in this turn."""

    def __init__(self, job_ids: list[int]):
        super().__init__(job_ids)
        self.job_ids = job_ids


class _NeedStdin(BaseException):
    """The command reads its standard input, which the client sends only when asked."""


class _Sink(io.RawIOBase):
    """One of the command's file descriptors: what reaches it, in order with the other one's."""

    def __init__(self, writes: list, fd: int, tty: bool):
        self.writes, self.fd, self.tty = writes, fd, tty

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.tty

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no file descriptor of the client's here")

    def write(self, data) -> int:
        if data:
            self.writes.append((self.fd, bytes(data)))
        return len(data)


class _Stdin(io.TextIOBase):
    """The client's standard input: whether it is a terminal is known; reading it asks for it."""

    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        raise _NeedStdin

    def read(self, size=-1):
        raise _NeedStdin

    def readline(self, size=-1):
        raise _NeedStdin

    @property
    def buffer(self):
        raise _NeedStdin


def _stream(sink: _Sink, line_buffering: bool) -> io.TextIOWrapper:
    # As CPython sets up a shim's streams: UTF-8 with surrogateescape (shims.py), stderr
    # line-buffered, stdout line-buffered only on a terminal.
    return io.TextIOWrapper(io.BufferedWriter(sink, SHIM_BUFFER), encoding="utf-8", errors="surrogateescape",
                            line_buffering=line_buffering)


def _text(data: str) -> str:
    return a2b_base64(data).decode("utf-8", "surrogateescape")


def _environment(entries: list[str]) -> dict[bytes, bytes]:
    """The client's environment as ``os.environ`` holds one: its names and values, as bytes."""
    env: dict[bytes, bytes] = {}
    for entry in entries:
        name, sep, value = a2b_base64(entry).partition(b"=")
        if sep and name:
            env.setdefault(name, value)  # as CPython reads a process's environment: the first of a name wins
    return env


class _Environment:
    """``os.environ`` showing another environment for a while.

    Its mapping is swapped, not rewritten: putting back and taking out each variable costs a system
    call each, twice per request, and every ``os.environ`` (also the one bound as a default argument)
    stays the object the command reads. The process's own C environment stays the controller's but
    for TZ, which the C library's localtime reads."""

    def __init__(self, data: dict[bytes, bytes]):
        self.data = data

    def __enter__(self):
        self.saved = os.environ._data
        tz = os.environ.get("TZ")
        os.environ._data = self.data
        self.tz = tz if os.environ.get("TZ") != tz else _SAME
        if self.tz is not _SAME:
            _set_tz(os.environ.get("TZ"))  # times are shown in the client's zone

    def __exit__(self, *exc) -> None:
        os.environ._data = self.saved
        if self.tz is not _SAME:
            _set_tz(self.tz)


_SAME = object()


def _why_not(ctl, conn, command: str, argv: list[str], env: dict, cwd: str) -> str | None:
    """Why this command must run as the Python shim, or None."""
    if command not in COMMANDS:
        return f"{command} is not run in the controller"
    if conn.uid != os.getuid() or conn.gid != os.getgid():
        return "the peer is not the controller's own uid and gid"
    if env.get("SFLOW_DEBUG"):
        return "SFLOW_DEBUG wants a traceback"
    home = os.path.join(cwd, home_path(env))
    # The same path is the same directory; another spelling of it is resolved (a few lstat each).
    if os.path.normpath(home) != ctl.home and os.path.realpath(home) != os.path.realpath(ctl.home):
        return "another state directory"
    if command not in ("squeue", "sinfo", "scontrol"):
        return None  # no option of the others' is run elsewhere
    try:
        parsed = getopt(command, argv)
    except SflowError:
        return None  # the command says what is wrong with its command line, here as anywhere
    if command in ("squeue", "sinfo") and any(option.long == "iterate" for option, _ in parsed.options):
        return "--iterate repeats until killed"
    if command == "scontrol" and parsed.positionals and parsed.positionals[0].lower() in ("requeue", "requeuehold"):
        return "scontrol requeue outlives the SIGTERM it may bring"
    return None


class _Turn:
    """The requests a command run here makes, answered in this turn's transaction."""

    def __init__(self, ctl, conn, environ: dict[bytes, bytes]):
        self.ctl, self.conn, self.given = ctl, conn, environ
        self.changed = False  # a request changed something: a command given up must undo it

    @cached_property
    def environ(self) -> dict[str, str]:
        """The command's environment as str, for sbatch to hand to its job (os.environ would decode
        it entry by entry at each reading)."""
        return {name.decode("utf-8", "surrogateescape"): value.decode("utf-8", "surrogateescape")
                for name, value in self.given.items()}

    def __call__(self, message: dict) -> dict:
        op = message.get("op")
        if op == "wait" and self.changed:
            raise _Wait([int(i) for i in message.get("job_ids") or []])
        if op not in IN_TURN_OPS:
            raise _NeedShim
        # As it would have crossed the socket: nothing the command holds is shared with the controller.
        # A submission is plain strings, lists and numbers, and its reply is made afresh: no copy needed.
        fresh = op == "submit"
        message = dict(message) if fresh else json.loads(json.dumps(message))
        try:
            reply = ops.dispatch_within(self.ctl, self.conn, message)
        except Deferred:
            raise _NeedShim from None
        self.changed = True
        return reply if fresh else json.loads(json.dumps(reply))


def run(ctl, conn, msg: dict) -> dict:
    if msg.get("wire") != WIRE:
        return {"ok": True, "shim": "a client of another version"}
    command = str(msg.get("command") or "")
    try:
        argv = [_text(a) for a in msg.get("argv") or []]
        env = _environment(msg.get("env") or [])
        cwd = _text(msg.get("cwd") or "")
    except (ValueError, TypeError):
        return {"ok": True, "shim": "a request this controller cannot read"}
    with _Environment(env):
        why = _why_not(ctl, conn, command, argv, os.environ, cwd)
        if why is not None:
            return {"ok": True, "shim": why}
        return _run_here(ctl, conn, msg, command, argv, cwd, env)


def _run_here(ctl, conn, msg: dict, command: str, argv: list[str], cwd: str, env: dict[bytes, bytes]) -> dict:
    """The command run here, in its environment: its writes and exit code, or why the shim must."""
    tty = [bool(t) for t in (list(msg.get("tty") or []) + [False] * 3)[:3]]
    stdin = msg.get("stdin")
    writes: list[tuple[int, bytes]] = []
    turn = _Turn(ctl, conn, env)
    effects = len(ctl.after_commit)
    saved_streams, saved_argv = (sys.stdin, sys.stdout, sys.stderr), sys.argv
    saved_cwd = os.getcwd()
    given_stdin = None
    waiting = None
    try:
        os.chdir(cwd)
    except (OSError, ValueError):
        return {"ok": True, "shim": "its working directory cannot be entered here"}
    try:
        if stdin is not None:
            given_stdin = io.TextIOWrapper(io.BytesIO(a2b_base64(stdin)), encoding="utf-8", errors="surrogateescape")
        sys.stdin = given_stdin or _Stdin(tty[0])
        sys.stdout = _stream(_Sink(writes, 1, tty[1]), line_buffering=tty[1])
        sys.stderr = _stream(_Sink(writes, 2, tty[2]), line_buffering=True)
        sys.argv = [command, *argv]
        client.in_process = turn
        try:
            code = _exit_code(run_main(command, argv) or 0)
        except SystemExit as done:
            code = _exit_code(done.code)
        sys.stdout.flush()
        sys.stderr.flush()
    except _Wait as wait:
        # What reached the client's descriptors before the wait is written now; what the shim
        # still held in its buffers reaches them when it exits, after the wait.
        waiting, before = wait.job_ids, len(writes)
        sys.stdout.flush()
        sys.stderr.flush()
    except (_NeedShim, _NeedStdin) as given_up:
        if turn.changed:
            del ctl.after_commit[effects:]
            refused = ops.Refused("")
            # Undone with the request's savepoint by the controller; the client runs the shim.
            refused.reply = _given_up(command, given_up, tty[0])
            raise refused from None
        return _given_up(command, given_up, tty[0])
    finally:
        client.in_process = None
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        sys.argv = saved_argv
        os.chdir(saved_cwd)
    if waiting is not None:
        return _wait_later(ctl, conn, waiting, writes[:before], writes[before:])
    return {"ok": True, "ran": True, "wire": WIRE, "exit_code": code, "writes": _wire(writes)}


def _set_tz(zone: str | None) -> None:
    """Times shown in this zone (the C library's localtime reads TZ from the process's environment)."""
    if zone is None:
        os.unsetenv("TZ")
    else:
        os.putenv("TZ", zone)
    time.tzset()


def _wire(writes: list[tuple[int, bytes]]) -> Trailing:
    """The writes as the reply's ``[[fd, length], ...]``, their bytes sent raw after its line; consecutive
    writes to one descriptor as one (fewer system calls on the client's side)."""
    runs: list[list[int]] = []
    for fd, data in writes:
        if runs and runs[-1][0] == fd:
            runs[-1][1] += len(data)
        else:
            runs.append([fd, len(data)])
    lengths = ", ".join(f"[{fd}, {length}]" for fd, length in runs)
    return Trailing(f"[{lengths}]", b"".join(data for _, data in writes))


def _wait_later(ctl, conn, job_ids: list[int], before: list, after: list) -> dict:
    """The first line of sbatch --wait's answer; the second is owed until the jobs have ended."""
    def ended(summary: dict) -> dict:
        # sbatch's main returns wait_for's code, made the process's exit status.
        return {"ok": True, "ran": True, "wire": WIRE, "exit_code": _exit_code(int(summary.get("exit_code", 1))),
                "writes": _wire(after)}

    def owe() -> None:  # once the submission is committed: a turn undone owes nothing
        ctl.waiters.append((conn, job_ids, ended))
        conn.deferred += 1

    ctl.after_commit.append(owe)
    return {"ok": True, "ran": True, "wire": WIRE, "more": True, "wait_for": job_ids, "writes": _wire(before)}


def _given_up(command: str, given_up: BaseException, stdin_tty: bool) -> dict:
    if isinstance(given_up, _NeedStdin) and command == "sbatch" and not stdin_tty:
        return {"ok": True, "need_stdin": True}  # the script piped to sbatch: the client sends it and asks again
    return {"ok": True, "shim": "only the Python shim can run this the same way"}


def _exit_code(code) -> int:
    """What ``sys.exit(code)`` makes the process's exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def main() -> int:
    ops.HANDLERS["run"] = run
    return controller.main()


if __name__ == "__main__":
    sys.exit(main())
