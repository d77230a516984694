"""Talking to the controller: one JSON object per line over a unix socket.

On the path of every shim, so it imports only json, os, socket and time. The
first command that finds no controller starts one (double fork, so no caller
is left with a zombie); the controller's lock file makes racing starters end
up with exactly one. A submission carries a random token, so resending it
after a controller died mid-request can never queue the job twice.

Nothing is sent before the other end is known to be this user's own
controller: the socket's directory in /tmp must be ours alone (``paths``), and
the process that holds the socket must run as us (SO_PEERCRED). A submission's
environment leaves out sflow's credentials unless the job exports them by name
(``sflow.credentials``).
"""

from __future__ import annotations

import json
import os
import sys
import time

# The C module, not ``socket``: socket.py's enums and selectors cost ~2.5 ms of
# start-up on every shim call, and a unix stream socket needs none of them.
import _socket as socket

from sflow.daemon import start_detached
from sflow.queue import paths

socket_path = paths.socket_path
START_TIMEOUT = 20.0
# Linux's value; struct ucred is three ints: pid, uid, gid.
SO_PEERCRED = getattr(socket, "SO_PEERCRED", 17)
_UCRED_SIZE = 12


# The token of one sbatch run of the native client (native/sflow-client.c), in its environment: the
# submission it names is made once, whether the controller or the Python shim it falls back to sends it.
RESEND_TOKEN = "SFLOW_RESEND_TOKEN"

# Set by the controller while it runs a command for the native client (``sflow.cli.served``):
# that command's requests are handled there and then, in the same process.
in_process = None


class ControllerUnavailable(Exception):
    """The controller could not be reached or started."""


class ControllerFailed(ControllerUnavailable):
    """The controller refused to start; the message says why (a bad slurm.conf...)."""


class ControllerOutOfSpace(ControllerFailed):
    """The controller could not start: the disk holding its state is full."""


class ControllerUnsafe(Exception):
    """The socket could be another user's: nothing was sent, and nothing will be until it is fixed."""


def peer_uid(sock: "socket.socket") -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, SO_PEERCRED, _UCRED_SIZE)
    return int.from_bytes(creds[4:8], sys.byteorder)


def _connect(home: str) -> "socket.socket":
    try:
        path = paths.socket_path(home)
    except paths.UnsafeSocketDirectory as err:
        raise ControllerUnsafe(str(err)) from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        uid = peer_uid(sock)
    except OSError:
        sock.close()
        raise
    if uid != os.getuid():
        sock.close()
        raise ControllerUnsafe(f"refusing to use {path}: the process listening there runs as uid {uid}, "
                               f"not as you (uid {os.getuid()})")
    return sock


def start_controller(home: str) -> None:
    """Start a controller for ``home`` in its own session, detached from this process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["SFLOW_HOME"] = home
    if env.get("SFLOW_CONF"):  # the controller runs in its home, not in the caller's directory
        env["SFLOW_CONF"] = os.path.abspath(env["SFLOW_CONF"])
    # The controller, hosting the drop-in commands for the native client (sflow.cli.served).
    start_detached("sflow.cli.served", home, paths.log_path(home), env)


def _failure(home: str) -> str | None:
    try:
        with open(paths.failure_path(home)) as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def connect(home: str | None = None, start: bool = True, timeout: float = START_TIMEOUT) -> "socket.socket":
    home = home or paths.home()
    try:
        return _connect(home)
    except OSError:
        if not start:
            raise ControllerUnavailable("the sflow controller is not running") from None
    try:
        os.unlink(paths.failure_path(home))  # a previous failure is not this start's
    except OSError:
        pass
    start_controller(home)
    started = first = time.monotonic()
    deadline = started + timeout
    delay = 0.002
    while True:
        try:
            return _connect(home)
        except OSError:
            now = time.monotonic()
            failure = _failure(home)
            if failure:
                raise ControllerFailed(failure) from None
            # On a full disk the controller may not even be able to say why it failed;
            # it would not answer in time anyway, and waiting out the deadline helps no one.
            if now - first > 0.25 and paths.out_of_space(home):
                raise ControllerOutOfSpace(paths.no_space(home)) from None
            if now > deadline:
                raise ControllerUnavailable(
                    f"the sflow controller did not start (see {paths.log_path(home)})") from None
            if now - started > 1.0:
                # The one started may have found a predecessor still holding the lock
                # on its way out; starting another is harmless (the lock keeps one).
                start_controller(home)
                started = now
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def _exchange(sock: "socket.socket", message: dict, timeout: float | None) -> dict | None:
    sock.settimeout(timeout)
    sock.sendall(json.dumps(message).encode() + b"\n")
    chunks = []
    while True:
        data = sock.recv(1 << 16)
        if not data:
            break
        chunks.append(data)
        if data.endswith(b"\n"):
            break
    text = b"".join(chunks)
    return json.loads(text) if text.strip() else None


def call(home: str | None, op: str, start: bool = True, timeout: float | None = None, **payload) -> dict:
    """Send one request and return the controller's reply (a dict with ``ok``).

    A controller that vanishes before answering (killed, or exiting idle) is
    started again and asked again; submissions are deduplicated by token.
    """
    message = {"op": op, **payload}
    if op == "submit":
        if "token" not in message:
            # The native client's token when it ran this shim after losing the controller's answer.
            message["token"] = os.environ.get(RESEND_TOKEN) or os.urandom(12).hex()
        if message.get("env"):
            message["env"] = {k: v for k, v in message["env"].items() if k != RESEND_TOKEN}
            from sflow import credentials  # deferred: only submissions pay for it (~0.2 ms)

            message["env"] = credentials.submission_env(message["env"], message.get("argv") or [],
                                                        message.get("script"))
    if in_process is not None:  # a command the controller runs itself: asking its own socket would never be answered
        return in_process(message)
    home = home or paths.home()
    for attempt in range(5):
        sock = connect(home, start=start)
        try:
            reply = _exchange(sock, message, timeout)
        except (ConnectionError, BrokenPipeError):
            reply = None
        except socket.timeout:
            raise ControllerUnavailable("the sflow controller did not answer in time") from None
        finally:
            sock.close()
        if reply is not None:
            return reply
        if op == "shutdown":
            return {"ok": True}
        time.sleep(0.05 * (attempt + 1))
    raise ControllerUnavailable("the sflow controller closed the connection")


def wait(home: str | None, job_ids: list[int], poll: float = 1.0) -> dict:
    """Block until every job named (each task, for an array) has ended; the controller's summary."""
    while True:
        try:
            return call(home, "wait", job_ids=list(job_ids))
        except ControllerUnavailable:
            time.sleep(poll)


__all__ = ["ControllerFailed", "ControllerOutOfSpace", "ControllerUnavailable", "ControllerUnsafe", "call", "connect", "socket_path", "start_controller", "wait"]
