"""Talking to the controller: one JSON line out, one back, over a unix socket.

Import-light on purpose (json, os, socket, subprocess): every shim uses it. The
first command that finds no controller starts one; a lock file makes sure two
racing starters still end up with one controller.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

SOCKET_NAME = "ctl.sock"


class ControllerUnavailable(Exception):
    """The controller could not be reached or started."""


def socket_path(home: str) -> str:
    return os.path.join(home, SOCKET_NAME)


def _connect(home: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path(home))
    except OSError:
        sock.close()
        raise
    return sock


def _start(home: str) -> None:
    log = os.open(os.path.join(home, "controller.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    env = dict(os.environ)
    env["SFLOW_HOME"] = home
    # The controller must not inherit a job's identity when started from inside one.
    for name in [n for n in env if n.startswith("SLURM_")]:
        del env[name]
    try:
        subprocess.Popen([sys.executable, "-m", "sflow.queue.daemon"], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, start_new_session=True, close_fds=True, env=env,
                         cwd=home)
    finally:
        os.close(log)


def connect(home: str, start: bool = True, timeout: float = 20.0) -> socket.socket:
    try:
        return _connect(home)
    except OSError:
        if not start:
            raise ControllerUnavailable("the sflow controller is not running") from None
    _start(home)
    deadline = time.monotonic() + timeout
    delay = 0.005
    while time.monotonic() < deadline:
        try:
            return _connect(home)
        except OSError:
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
    raise ControllerUnavailable(f"the sflow controller did not start (see {home}/controller.log)")


def call(home: str, op: str, start: bool = True, **payload) -> dict:
    """Send one request and return the controller's reply (a dict with "ok")."""
    sock = connect(home, start=start)
    try:
        sock.sendall(json.dumps({"op": op, **payload}).encode() + b"\n")
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            if data.endswith(b"\n"):
                break
    finally:
        sock.close()
    if not chunks:
        raise ControllerUnavailable("the sflow controller closed the connection")
    return json.loads(b"".join(chunks))
