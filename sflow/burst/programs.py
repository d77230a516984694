"""slurmctld's power-saving programs: ``sflow-burst-resume``, ``-suspend``, ``-resume-fail``.

Each records what slurmctld asked as one row in the burst store (one transaction),
makes sure the burst service runs (started detached when nobody holds its lock),
nudges it, and exits 0: slurmctld waits for nothing, and the service does the slow
work (bids, SSH, scontrol). Bad input is one ``PROGRAM: error: ...`` line and exit 1.

Only the standard library and the store are imported here: these run on every
power-state change, and a resume's latency is a job's start-up latency.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time

from sflow.burst import store
from sflow.burst.settings import BurstError, load
from sflow.daemon import start_detached

PROGRAM_NAMES = {"resume": "sflow-burst-resume", "suspend": "sflow-burst-suspend",
                 "resume_fail": "sflow-burst-resume-fail"}
LOCK_NAME = "service.lock"
WAKE_NAME = "wake"
LOG_NAME = "service.log"
# slurmctld removes SLURM_RESUME_FILE once the program exits: its content is copied, not its name.
RESUME_FILE_MAX = 16 << 20


def lock_path(state_dir: str) -> str:
    return os.path.join(state_dir, LOCK_NAME)


def wake_path(state_dir: str) -> str:
    return os.path.join(state_dir, WAKE_NAME)


def read_resume_file(path: str | None) -> dict | None:
    """SLURM_RESUME_FILE's JSON (SLURM 22.05 and later); None when slurmctld gave none."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(RESUME_FILE_MAX)
    except OSError as err:
        raise BurstError(f"cannot read SLURM_RESUME_FILE {path}: {err.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise BurstError(f"SLURM_RESUME_FILE {path} is not JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs", []), list):
        raise BurstError(f"SLURM_RESUME_FILE {path} has no jobs list")
    return data


def service_running(state_dir: str) -> bool:
    """Whether a service holds the state directory's lock."""
    try:
        fd = os.open(lock_path(state_dir), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return True
        raise
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


def start_service(config: str, state_dir: str) -> None:
    """``flow burst serve``'s loop in its own session, detached from slurmctld's child."""
    env = dict(os.environ)
    env["SFLOW_BURST_CONFIG"] = os.path.abspath(config)
    start_detached("sflow.burst.service", state_dir, os.path.join(state_dir, LOG_NAME), env)


def nudge(state_dir: str) -> None:
    """Wake a running service now rather than at its next tick; nothing if none listens."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"!", wake_path(state_dir))
    except OSError:
        pass


def record(kind: str, argv: list[str], environ=None) -> int:
    """The program's work; raises ``BurstError`` for what slurmctld's log should say."""
    env = os.environ if environ is None else environ
    if len(argv) != 1 or not argv[0].strip():
        raise BurstError("expected one argument: the nodes, as a hostlist")
    hostlist = argv[0].strip()
    settings = load(None, env)
    payload = read_resume_file(env.get("SLURM_RESUME_FILE")) if kind == "resume" else None
    try:
        conn = store.open_store(settings.state_dir)
        try:
            seq = store.add_request(conn, kind, hostlist, payload, time.time())
        finally:
            conn.close()
    except (OSError, store.StoreError) as err:
        raise BurstError(f"cannot record the request in {store.db_path(settings.state_dir)}: {err}") from None
    if not service_running(settings.state_dir):
        start_service(settings.path, settings.state_dir)
    nudge(settings.state_dir)
    return seq


def _main(kind: str, argv: list[str] | None = None) -> int:
    name = PROGRAM_NAMES[kind]
    try:
        record(kind, sys.argv[1:] if argv is None else argv)
    except BurstError as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"{name}: error: {err.strerror or err}", file=sys.stderr)
        return 1
    return 0


def resume(argv: list[str] | None = None) -> int:
    return _main("resume", argv)


def suspend(argv: list[str] | None = None) -> int:
    return _main("suspend", argv)


def resume_fail(argv: list[str] | None = None) -> int:
    return _main("resume_fail", argv)


def resume_main() -> None:
    sys.exit(resume())


def suspend_main() -> None:
    sys.exit(suspend())


def resume_fail_main() -> None:
    sys.exit(resume_fail())


__all__ = ["PROGRAM_NAMES", "nudge", "read_resume_file", "record", "resume", "resume_fail", "service_running",
           "start_service", "suspend"]
