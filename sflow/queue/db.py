"""The controller's durable state: one SQLite database in WAL mode.

The ``jobs`` table's first columns mirror ``sflow.records.JobRecord`` in
order, so the read-only commands (squeue, sacct, scontrol) turn rows into
records with plain sqlite3 and no validation layer. The controller alone
writes; readers never block it (WAL).
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3

from sflow.records import JobRecord, StepRecord

RECORD_FIELDS = [f.name for f in dataclasses.fields(JobRecord)]
_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT", bool: "INTEGER"}

# Controller-only columns after the record's.
EXTRA_COLUMNS = {
    "request": "TEXT",  # the JobRequest as JSON
    "alloc": "TEXT",  # the Allocation as JSON while running
    "pid": "INTEGER",  # the batch wrapper (process group) while running
    "pid_start": "TEXT",  # its kernel start time, to tell a reused pid
    "pending_indices": "TEXT",  # an array's indices not yet started, JSON
    "kill_at": "REAL",  # when SIGKILL follows the SIGTERM already sent
    "end_state": "TEXT",  # the state to record once the processes are gone
    "signal_sent": "INTEGER",  # --signal already delivered
    "job_dir": "TEXT",
}


def _column_type(field: dataclasses.Field) -> str:
    text = str(field.type)
    for name, sql in (("int", "INTEGER"), ("float", "REAL"), ("bool", "INTEGER"), ("str", "TEXT")):
        if text.startswith(name):
            return sql
    return "TEXT"


def _schema() -> str:
    columns = [f"{f.name} {_column_type(f)}" + (" PRIMARY KEY" if f.name == "job_id" else "")
               for f in dataclasses.fields(JobRecord)]
    columns += [f"{name} {sql}" for name, sql in EXTRA_COLUMNS.items()]
    return (
        f"CREATE TABLE IF NOT EXISTS jobs ({', '.join(columns)});\n"
        "CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);\n"
        "CREATE INDEX IF NOT EXISTS jobs_array ON jobs(array_job_id);\n"
        "CREATE TABLE IF NOT EXISTS steps (job_id INTEGER, step_id TEXT, name TEXT, state TEXT,"
        " start_time REAL, end_time REAL, nodelist TEXT, num_nodes INTEGER, num_tasks INTEGER,"
        " num_cpus INTEGER, exit_code INTEGER, exit_signal INTEGER, PRIMARY KEY (job_id, step_id));\n"
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);\n"
    )


def db_path(home: str) -> str:
    return os.path.join(home, "sflow.db")


def connect(home: str, *, readonly: bool = False) -> sqlite3.Connection:
    path = db_path(home)
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        return conn
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash, which is what we face
    conn.executescript(_schema())
    os.chmod(path, 0o600)
    return conn


_SELECT = f"SELECT {', '.join(RECORD_FIELDS)} FROM jobs"
_BOOL_FIELDS = [i for i, f in enumerate(dataclasses.fields(JobRecord)) if _column_type(f) == "INTEGER"
                and str(f.type).startswith("bool")]


def _record(row) -> JobRecord:
    job = JobRecord(*row)
    for index in _BOOL_FIELDS:
        name = RECORD_FIELDS[index]
        setattr(job, name, bool(getattr(job, name)))
    return job


def read_jobs(home_or_conn, where: str = "", params: tuple = ()) -> list[JobRecord]:
    """Every job (or those matching ``where``), oldest first. Missing database: none."""
    conn = home_or_conn
    if isinstance(home_or_conn, str):
        if not os.path.exists(db_path(home_or_conn)):
            return []
        conn = connect(home_or_conn, readonly=True)
    rows = conn.execute(f"{_SELECT} {('WHERE ' + where) if where else ''} ORDER BY job_id", params).fetchall()
    return [_record(row) for row in rows]


def read_steps(home_or_conn, job_ids: list[int] | None = None) -> list[StepRecord]:
    conn = home_or_conn
    if isinstance(home_or_conn, str):
        if not os.path.exists(db_path(home_or_conn)):
            return []
        conn = connect(home_or_conn, readonly=True)
    sql = ("SELECT job_id, step_id, name, state, start_time, end_time, nodelist, num_nodes, num_tasks, "
           "num_cpus, exit_code, exit_signal FROM steps")
    rows = conn.execute(sql).fetchall()
    steps = [StepRecord(*row) for row in rows]
    if job_ids is not None:
        wanted = set(job_ids)
        steps = [s for s in steps if s.job_id in wanted]
    return steps


def insert_job(conn: sqlite3.Connection, job: JobRecord, **extra) -> None:
    values = dataclasses.asdict(job)
    values.update(extra)
    names = list(values)
    conn.execute(f"INSERT INTO jobs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                 [values[n] for n in names])


def update_job(conn: sqlite3.Connection, job_id: int, **changes) -> None:
    if not changes:
        return
    sets = ", ".join(f"{name} = ?" for name in changes)
    conn.execute(f"UPDATE jobs SET {sets} WHERE job_id = ?", [*changes.values(), job_id])


def next_job_id(conn: sqlite3.Connection, first: int) -> int:
    """The next id, inside the caller's transaction: ids are never reused or skipped twice."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'next_job_id'").fetchone()
    top = conn.execute("SELECT MAX(job_id) FROM jobs").fetchone()[0] or 0
    job_id = max(int(row[0]) if row else first, first, top + 1)
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_job_id', ?)", (str(job_id + 1),))
    return job_id


def upsert_step(conn: sqlite3.Connection, step: StepRecord) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO steps VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (step.job_id, step.step_id, step.name, step.state, step.start_time, step.end_time, step.nodelist,
         step.num_nodes, step.num_tasks, step.num_cpus, step.exit_code, step.exit_signal),
    )
