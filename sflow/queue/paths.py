"""Where the controller keeps its state, under ``sflow_home()``.

Standard library ``os`` only: every shim imports this on its way to the
socket. ``home`` follows ``sflow.conf.sflow_home`` exactly (a test keeps the
two in step); it is repeated here because ``sflow.conf`` costs several
milliseconds to import.
"""

from __future__ import annotations

import os

DB_NAME = "sflow.db"
SOCKET_NAME = "ctl.sock"
LOCK_NAME = "ctl.lock"
PID_NAME = "ctl.pid"
LOG_NAME = "controller.log"
# AF_UNIX paths are limited to 108 bytes; beyond this the socket lives in /tmp.
_MAX_SOCKET_PATH = 100


def home(env=os.environ) -> str:
    path = env.get("SFLOW_HOME")
    if not path:
        state = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        path = os.path.join(state, "sflow")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def db_path(home: str) -> str:
    return os.path.join(home, DB_NAME)


def socket_path(home: str) -> str:
    path = os.path.join(home, SOCKET_NAME)
    if len(path.encode()) <= _MAX_SOCKET_PATH:
        return path
    import hashlib

    digest = hashlib.sha1(os.path.abspath(home).encode()).hexdigest()[:16]
    directory = os.path.join("/tmp", f"sflow-{os.getuid()}")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return os.path.join(directory, f"{digest}.sock")


def lock_path(home: str) -> str:
    return os.path.join(home, LOCK_NAME)


def pid_path(home: str) -> str:
    return os.path.join(home, PID_NAME)


def failure_path(home: str) -> str:
    """Why the last controller could not start (a bad slurm.conf...), for the command that started it."""
    return os.path.join(home, "controller.failed")


def log_path(home: str) -> str:
    return os.path.join(home, LOG_NAME)


def job_dir(home: str, job_id: int) -> str:
    """The job's own directory: the script as submitted, the executor's status files."""
    return os.path.join(home, "jobs", str(job_id))
