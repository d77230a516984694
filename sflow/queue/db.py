"""Reading the queue's database: see ``sflow.queue.store`` (this name is kept for its importers)."""

from __future__ import annotations

from sflow.queue.paths import db_path
from sflow.queue.store import read_jobs, read_steps, reader


def connect(home: str, *, readonly: bool = True):
    """A connection for reading (the controller alone writes, through ``store.open_db``)."""
    conn = reader(home)
    if conn is None:
        raise FileNotFoundError(db_path(home))
    return conn


__all__ = ["connect", "db_path", "read_jobs", "read_steps", "reader"]
