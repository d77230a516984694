"""The store's two faults a user must hear about plainly: a full disk and a damaged database.

A full disk fails the request that needed the space, with SLURM's wording,
and nothing else: the controller rolls the turn back and keeps watching its
jobs. A store that is missing, empty or unreadable while the jobs' files (``jobs/``)
show that jobs were queued is never replaced by an empty queue in silence:
every command refuses and points at ``flow doctor`` (``sflow.queue.doctor``).

Light on purpose (``os``, ``sqlite3``): the read-only commands import it.
"""

from __future__ import annotations

import errno
import os
import sqlite3

from sflow.errors import SlurmError
from sflow.queue import paths

# SLURM's ESLURM_WRITING_TO_FILE: what sbatch prints when slurmctld cannot write a new job's state.
SUBMIT_FAILED = "Batch job submission failed: I/O error writing script/environment to file"
SQLITE_MAGIC = b"SQLite format 3\x00"
# The command a request comes from, for the prefix of its error line.
_COMMAND_OF = {"submit": "sbatch", "cancel": "scancel", "hold": "scontrol", "release": "scontrol",
               "requeue": "scontrol", "update": "scontrol", "step_start": "srun", "step_end": "srun",
               "finish_allocation": "salloc"}


class StoreDamaged(SlurmError):
    """The store is missing or unreadable although jobs were queued."""


def is_disk_full(err: BaseException | None) -> bool:
    """ENOSPC/EDQUOT from the OS, or SQLITE_FULL, here or in what it was raised from."""
    seen = 0
    while err is not None and seen < 4:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(err, sqlite3.Error) and (getattr(err, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                                               or "disk is full" in str(err)):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def disk_full_reply(op: str | None, home: str) -> dict:
    """The reply to a request whose changes could not be written for want of space."""
    command = _COMMAND_OF.get(op or "", "sflow")
    if command == "sbatch":
        text = f"sbatch: error: {SUBMIT_FAILED}\nsbatch: error: {paths.no_space(home)}\n"
    else:
        text = f"{command}: error: Unable to save job state: {paths.no_space(home)}\n"
    return {"ok": False, "stderr": text, "exit_code": 1}


# ------------------------------------------------------------------ damage


def job_dir_ids(home: str) -> list[int]:
    """The ids of the jobs with files under ``home``/jobs (a job's directory, its kept script
    ``<id>.script``, or both): each one a job the store once held."""
    try:
        names = os.listdir(os.path.join(home, "jobs"))
    except OSError:
        return []
    stems = (name.removesuffix(paths.SCRIPT_SUFFIX) for name in names)
    return sorted({int(stem) for stem in stems if stem.isdecimal()})


def backup_jobs(home: str) -> int:
    """How many jobs the backup holds (0 when there is none or it cannot be read)."""
    path = paths.backup_path(home)
    if not os.path.exists(path):
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def had_jobs(home: str) -> bool:
    """The jobs' files or the backup show that jobs were queued here."""
    return bool(job_dir_ids(home)) or backup_jobs(home) > 0


def damaged(home: str, what: str) -> StoreDamaged:
    ids = job_dir_ids(home)
    if ids:
        evidence = f", but the files of {len(ids)} job{'' if len(ids) == 1 else 's'} in jobs/ (up to job {ids[-1]}) show jobs were queued"
    elif backup_jobs(home):
        evidence = f", but its backup ({paths.backup_path(home)}) shows jobs were queued"
    else:
        evidence = ""
    return StoreDamaged(
        f"sflow's job store {paths.db_path(home)} {what}{evidence}; refusing to go on without it\n"
        "Run 'flow doctor' to see what can be recovered and 'flow doctor --repair' to restore the queue "
        "(docs/controller.md, \"A damaged store\")")


def describe_file(path: str) -> str | None:
    """What is wrong with the database file at a glance (None: it looks like SQLite)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return "is missing"
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if not head:
        return "is empty"
    if head != SQLITE_MAGIC:
        return "is not an SQLite database (its header is damaged)"
    return None


def describe_error(err: sqlite3.Error) -> str:
    return f"cannot be read ({err})"


def check(home: str) -> None:
    """Raise ``StoreDamaged`` when the store cannot be the queue that the jobs' files show.

    For the controller's start, before it opens (and would create) the database.
    """
    path = paths.db_path(home)
    problem = describe_file(path)
    if problem is None:
        try:
            conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            try:
                row = conn.execute("SELECT value FROM meta WHERE key = 'next_job_id'").fetchone()
                # A store that never committed a job has no counter yet: directories beside it are
                # then what a first submission killed before its commit left (never acknowledged).
                row = row or (None if conn.execute("SELECT 1 FROM jobs LIMIT 1").fetchone() else ("",))
            finally:
                conn.close()
        except sqlite3.OperationalError as err:
            if is_disk_full(err):
                raise
            problem = "holds no jobs table" if "no such table" in str(err) else describe_error(err)
        except sqlite3.DatabaseError as err:
            problem = describe_error(err)
        else:
            problem = None if row is not None else "holds no job counter"
    if problem is not None and had_jobs(home):
        raise damaged(home, problem)


__all__ = ["SUBMIT_FAILED", "StoreDamaged", "check", "damaged", "disk_full_reply", "had_jobs", "is_disk_full",
           "job_dir_ids"]
