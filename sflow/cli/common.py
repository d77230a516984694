"""What the drop-in commands share: where state lives, and who is asking.

``call`` and ``reader`` import their side of the queue when first used: the commands that
read the store never load the socket client, and sbatch and scancel never load the store
(sqlite3 and its modules).
"""

from __future__ import annotations

import errno
import os
import sys

from sflow.errors import SlurmError
from sflow.queue.paths import home as state_home
from sflow.users import name_of


def home() -> str:
    """The state directory, or SLURM's kind of error when this user cannot use it (as SLURM's
    commands stop when they cannot read slurm.conf): never an empty answer from a store not read."""
    try:
        path = state_home()
    except FileExistsError as err:  # a file stands where the directory would be
        raise _unusable(err.filename or "", os.strerror(errno.ENOTDIR)) from None
    except OSError as err:  # it could not be made
        raise _unusable(err.filename or "", err.strerror) from None
    # Readers need write access too: SQLite's WAL readers write the shared-memory index.
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise _unusable(path, os.strerror(errno.EACCES))
    return path


def _unusable(path: str, why: str):
    return SlurmError(f"Unable to use the sflow state directory {path} (SFLOW_HOME): {why}")


def call(op: str, **payload) -> dict:
    """One request to the controller, started on demand; an unreachable one is a SLURM-style error."""
    # deferred: the socket client (~0.6 ms) stays off the path of the commands that only read
    from sflow.queue.client import (ControllerFailed, ControllerOutOfSpace, ControllerUnavailable, ControllerUnsafe,
                                    call as rpc_call)

    try:
        return rpc_call(home(), op, **payload)
    except ControllerOutOfSpace as err:
        if op == "submit":
            from sflow.queue.health import SUBMIT_FAILED  # deferred: sqlite3 with it, on this error path only

            raise SlurmError(f"{SUBMIT_FAILED}\n{err}") from None
        raise SlurmError(str(err)) from None
    except (ControllerFailed, ControllerUnsafe) as err:
        raise SlurmError(str(err)) from None
    except ControllerUnavailable as err:
        raise SlurmError(f"Unable to contact slurm controller (connect failure): {err}") from None


def emit(reply: dict) -> int:
    """Print a controller reply's stdout/stderr; return its exit code."""
    # SLURM's commands say their warnings and -v listings while they work, before the answer.
    if reply.get("stderr"):
        sys.stderr.write(reply["stderr"])
        sys.stderr.flush()
    if reply.get("stdout"):
        sys.stdout.write(reply["stdout"])
    sys.stdout.flush()
    return 0 if reply.get("ok") else reply.get("exit_code", 1)


def whoami() -> tuple[str, int]:
    uid = os.getuid()
    return name_of(uid) or os.environ.get("USER", str(uid)), uid


def reader():
    """The store, read straight from its database (no round trip): records, never SQL."""
    from sflow.queue.reader import Reader  # deferred: sqlite3 and the store (~10 ms) stay off sbatch's path

    return Reader(home())
