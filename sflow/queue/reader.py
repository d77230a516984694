"""The read-only commands' one door to the store: records out, never a connection or SQL.

``Reader(home)`` answers what squeue, sacct, sinfo, scontrol and ``flow`` ask of
the controller's database, as ``sflow.records`` values. Each answer opens the
store and closes it again; ``with reader:`` keeps one connection for several
answers (squeue asks for every pending array's indices). No store yet: nothing
to show. A damaged store is named as ``store.reader`` names it.

Light on purpose (``sqlite3``, ``json``): the shims import it on every call.
"""

from __future__ import annotations

import json
import sqlite3

from sflow.queue import store
from sflow.records import AllocatedNode, JobRecord, StepRecord
from sflow.slurm.indexset import IndexSet


class Reader:
    def __init__(self, home: str):
        self.home = home
        self._depth = 0  # nested ``with`` blocks
        self._opened = False
        self._conn: sqlite3.Connection | None = None  # None once opened: no store yet

    def __enter__(self) -> "Reader":
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if not self._depth:
            if self._conn is not None:
                self._conn.close()
            self._opened, self._conn = False, None

    def _read(self, query, empty):
        with self:
            if not self._opened:  # on the first read: a command that reads nothing never opens it
                self._conn, self._opened = store.reader(self.home), True
            if self._conn is None:
                return empty
            try:
                return query(self._conn)
            except sqlite3.DatabaseError as err:
                return store.failed_read(err, self.home) or empty

    # ------------------------------------------------------------ jobs and steps

    def jobs(self, ids=None, states=None, backend: str | None = None, ended_since: float | None = None) -> list[JobRecord]:
        """Job records by job id; ``ids`` also names every task of those arrays; ``ended_since``:
        only jobs not ended before then (the index on end times skips the finished ones)."""
        where, params = _ended_since(ended_since)
        found = self._read(lambda conn: store.read_jobs(conn, where, params, job_ids=ids, states=states), [])
        # Filtered here, not in SQL: a store an older controller holds may lack the column.
        return found if backend is None else [job for job in found if job.backend == backend]

    def job_rows(self, ids=None, ended_since: float | None = None) -> list[tuple]:
        """``jobs``, each as its row of ``records.JOB_FIELDS`` rather than a record (a long
        listing's jobs in a third of the time)."""
        return self._read(lambda conn: store.read_job_rows(conn, *_ended_since(ended_since), job_ids=ids), [])

    def job(self, job_id: int) -> JobRecord | None:
        """That one record (an array's task only by its own id)."""
        found = self._read(lambda conn: store.read_jobs(conn, "job_id = ?", (int(job_id),)), [])
        return found[0] if found else None

    def steps(self, job_ids=None, usage: bool = True) -> list[StepRecord]:
        """Recorded steps (``batch`` and srun's), by job id and start; without ``usage``, a step's
        ``extra`` holds only ``cancelled_by`` (decoding every step's measured usage is most of a
        long listing's time)."""
        return self._read(lambda conn: store.read_steps(conn, job_ids, usage), [])

    # ------------------------------------------------------------ what the controller keeps besides

    def pending_indices(self, job_id: int) -> IndexSet:
        """An array's indices not yet started (empty for any other job)."""
        text = self._read(lambda conn: _column(conn, "pending_indices", job_id), None)
        return IndexSet.from_json(json.loads(text)) if text else IndexSet()

    def allocated_nodes(self) -> list[AllocatedNode]:
        """Every node running (or completing) jobs hold, once per job holding it."""
        def query(conn):
            try:
                rows = conn.execute("SELECT alloc FROM jobs WHERE state IN ('RUNNING', 'COMPLETING') "
                                    "AND alloc IS NOT NULL").fetchall()
            except sqlite3.OperationalError as err:
                return _missing_column(err, [])
            return [AllocatedNode.from_json(node) for (alloc,) in rows for node in json.loads(alloc)["nodes"]]

        return self._read(query, [])

    def request_json(self, job_id: int) -> str | None:
        """The job's ``JobRequest`` as stored (an array task's is its array's)."""
        def query(conn):
            text = store.load_request(conn, job_id)
            if text is None:  # an array task: the request is kept once, under the array's id
                array_job_id = _column(conn, "array_job_id", job_id)
                if array_job_id is not None:
                    text = store.load_request(conn, array_job_id)
            return text

        return self._read(query, None)


def _ended_since(since: float | None) -> tuple[str | None, tuple]:
    """The SQL condition of jobs not ended before ``since`` (the index on end times skips the others)."""
    if since is None:
        return None, ()
    return "end_time IS NULL OR end_time = 0 OR end_time >= ?", (since,)


def _column(conn: sqlite3.Connection, name: str, job_id: int):
    """One controller column of one job; None for no such job, or a store older than the column."""
    try:
        row = conn.execute(f"SELECT {name} FROM jobs WHERE job_id = ?", (int(job_id),)).fetchone()
    except sqlite3.OperationalError as err:
        return _missing_column(err, None)
    return row[0] if row else None


def _missing_column(err: sqlite3.OperationalError, empty):
    if "no such column" in str(err):
        return empty
    raise err


__all__ = ["Reader"]
