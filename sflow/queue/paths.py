"""Where the controller keeps its state, under ``home()``.

Standard library ``os`` and ``stat`` only: every shim imports this on its way to the
socket. ``home``, the state directory, is ``sflow.statedir``'s, named here too.
"""

from __future__ import annotations

import os
import stat  # already loaded by os

from sflow.statedir import home, home_path

DB_NAME = "sflow.db"
SOCKET_NAME = "ctl.sock"
LOCK_NAME = "ctl.lock"
PID_NAME = "ctl.pid"
LOG_NAME = "controller.log"
# AF_UNIX paths are limited to 108 bytes; beyond this the socket lives in /tmp.
_MAX_SOCKET_PATH = 100
RUNTIME_ROOT = "/tmp"


class UnsafeSocketDirectory(Exception):
    """The socket's directory in /tmp could be another user's: nothing is sent through it."""

    def __init__(self, directory: str, why: str):
        super().__init__(f"refusing to use {directory} for the sflow controller's socket: {why}")
        self.directory = directory


def db_path(home: str) -> str:
    return os.path.join(home, DB_NAME)


def socket_path(home: str) -> str:
    path = os.path.join(home, SOCKET_NAME)
    if len(path.encode()) <= _MAX_SOCKET_PATH:
        return path
    import hashlib  # deferred: only a home too long for a socket path pays for it

    digest = hashlib.sha1(os.path.abspath(home).encode()).hexdigest()[:16]
    return os.path.join(private_runtime_dir(), f"{digest}.sock")


def private_runtime_dir() -> str:
    """``/tmp/sflow-<uid>``, made 0700; refused when it already exists and another user could
    have placed it (not ours, a symlink, group or other bits set): a listener there would hear
    every request."""
    uid = os.getuid()
    directory = os.path.join(RUNTIME_ROOT, f"sflow-{uid}")
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as err:
        raise UnsafeSocketDirectory(directory, err.strerror or str(err)) from None
    info = os.lstat(directory)  # lstat: a symlink is judged itself, never followed
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeSocketDirectory(directory, "it is a symbolic link")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeSocketDirectory(directory, "it is not a directory")
    if info.st_uid != uid:
        raise UnsafeSocketDirectory(directory, f"it is owned by uid {info.st_uid}, not by you (uid {uid})")
    if info.st_mode & 0o077:
        raise UnsafeSocketDirectory(
            directory, f"its mode is {stat.S_IMODE(info.st_mode):04o}, open to other users (it must be 0700)")
    return directory


def lock_path(home: str) -> str:
    return os.path.join(home, LOCK_NAME)


def pid_path(home: str) -> str:
    return os.path.join(home, PID_NAME)


def failure_path(home: str) -> str:
    """Why the last controller could not start (a bad slurm.conf...), for the command that started it."""
    return os.path.join(home, "controller.failed")


def log_path(home: str) -> str:
    return os.path.join(home, LOG_NAME)


def backup_path(home: str) -> str:
    """The controller's last good copy of the store, for ``flow doctor --repair``."""
    return os.path.join(home, DB_NAME + ".bak")


# Below this much free space SQLite cannot commit a transaction (a WAL frame is a page
# plus its header, and a submission writes several pages) nor the controller start.
_MIN_FREE_BYTES = 64 * 1024


def no_space(home: str) -> str:
    return f"No space left on device for the job state in {home}"


def out_of_space(home: str) -> bool:
    """The filesystem holding ``home`` is (nearly) full for this user."""
    try:
        st = os.statvfs(home)
    except OSError:
        return False
    blocks = st.f_bfree if os.getuid() == 0 else st.f_bavail  # root may use the reserved blocks
    return blocks * st.f_frsize < _MIN_FREE_BYTES


def hosts_path(home: str) -> str:
    """The /etc/hosts a local job's processes see: the virtual nodes' names, then the machine's."""
    return os.path.join(home, "hosts")


def job_dir(home: str, job_id: int) -> str:
    """The job's own directory, made when it starts: the executor's files."""
    return os.path.join(home, "jobs", str(job_id))


def kept_script_path(home: str, job_id: int) -> str:
    """The script as submitted, kept beside the job's directory from its submission on."""
    return os.path.join(home, "jobs", f"{job_id}{SCRIPT_SUFFIX}")


SCRIPT_SUFFIX = ".script"
