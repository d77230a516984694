"""The controller's durable state: one SQLite database in WAL mode.

``jobs`` has a column per ``JobRecord`` field (same names, for SQL filters
and for people with the sqlite3 shell) and the same values packed once more
in ``record`` (a marshalled tuple in field order): the read-only commands
turn rows into records from that one column, ten thousand in a few
milliseconds, with nothing but sqlite3. The controller is the only writer;
readers never block it.

Controller-only columns follow the record's (see ``INTERNAL``); ``requests``
holds each job's ``JobRequest`` as JSON (an array's tasks share their array's);
``steps`` mirrors ``StepRecord``; ``meta`` holds the next job id and the
submit counter; ``bids`` the Mithril bids placed for jobs (``sflow.mithril.bids``).

Text that is not UTF-8 (a job name, a path: SLURM takes any bytes) lives in
Python as str decoded with surrogateescape; SQLite's driver accepts only UTF-8,
so such a value is stored as a BLOB of its original bytes and read back as str.
"""

from __future__ import annotations

import dataclasses
import json
import marshal
import operator
import os
import sqlite3

from sflow.mithril import bids
from sflow.queue import health
from sflow.queue.paths import backup_path, db_path
from sflow.records import JOB_FIELDS, JobRecord, StepRecord, job_row

RECORD_FIELDS = JOB_FIELDS
_record_values = operator.attrgetter(*RECORD_FIELDS)  # a record's fields as a tuple, in one call
STEP_FIELDS = tuple(f.name for f in dataclasses.fields(StepRecord) if f.name != "extra")
# What the packed tuples are laid out as; a different layout is read from the columns.
LAYOUT = ",".join(RECORD_FIELDS)
ACTIVE_STATES = ("PENDING", "RUNNING", "COMPLETING", "SUSPENDED", "CONFIGURING")

INTERNAL = {
    "record": "BLOB",  # marshal.dumps of the record's values, in RECORD_FIELDS order
    "seq": "INTEGER",  # submission order: SLURM's priority/basic counts it down
    "token": "TEXT",  # the submitting client's idempotency token
    "nice": "INTEGER DEFAULT 0",
    "alloc": "TEXT",  # the Allocation as JSON while the job holds resources
    "launch": "TEXT",  # NULL, 'intent' (resources taken, process not yet known) or 'launched'
    "launch_time": "REAL",
    "pid": "INTEGER",  # the batch step's wrapper, leader of the job's process group
    "pid_start": "TEXT",  # its kernel start time, so a reused pid is never mistaken for it
    "pgid": "INTEGER",
    "status_path": "TEXT",  # where the wrapper writes the exit status
    "end_state": "TEXT",  # CANCELLED/TIMEOUT...: what to record once the processes are gone
    "kill_at": "REAL",  # when SIGKILL follows the SIGTERM already sent
    "signal_done": "INTEGER DEFAULT 0",  # --signal already delivered this run
    "pending_indices": "TEXT",  # an array's indices not yet started, JSON list
    "expected_start": "REAL",  # the planner's estimate for a pending job
    "begin_time": "REAL",  # not eligible before (--begin, scontrol update, the requeue delay)
    "plan": "TEXT",  # what the job's backend planned at submission (JSON), placed as it is
}


def _sql_type(field: dataclasses.Field) -> str:
    text = str(field.type).replace(" ", "")
    for prefix, sql in (("int", "INTEGER"), ("float", "REAL"), ("bool", "INTEGER"), ("str", "TEXT")):
        if text.startswith(prefix):
            return sql
    return "TEXT"


def _schema() -> list[str]:
    record_cols = []
    for f in dataclasses.fields(JobRecord):
        col = f"{f.name} {_sql_type(f)}"
        record_cols.append(col + " PRIMARY KEY" if f.name == "job_id" else col)
    internal_cols = [f"{name} {sql}" for name, sql in INTERNAL.items()]
    step_cols = [f"{f.name} {_sql_type(f)}" for f in dataclasses.fields(StepRecord) if f.name != "extra"]
    return [
        f"CREATE TABLE IF NOT EXISTS jobs ({', '.join(record_cols + internal_cols)})",
        "CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state)",
        "CREATE INDEX IF NOT EXISTS jobs_array ON jobs(array_job_id)",
        "CREATE INDEX IF NOT EXISTS jobs_end ON jobs(end_time)",  # sacct's window: what ended since
        "CREATE UNIQUE INDEX IF NOT EXISTS jobs_token ON jobs(token)",
        f"CREATE TABLE IF NOT EXISTS steps ({', '.join(step_cols)}, extra TEXT, "
        "PRIMARY KEY (job_id, step_id))",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
        # Requests are big (the exported environment): kept apart so job rows stay small to scan.
        "CREATE TABLE IF NOT EXISTS requests (job_id INTEGER PRIMARY KEY, request TEXT NOT NULL)",
        *bids.SCHEMA,  # Mithril bids, written before each create call (sflow/mithril/bids.py)
    ]


# ------------------------------------------------------------------ connections


def open_db(home: str) -> sqlite3.Connection:
    """The controller's connection: schema ensured, WAL, explicit transactions."""
    return open_db_at(db_path(home))


def open_db_at(path: str) -> sqlite3.Connection:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: an acknowledged submission survives a power cut too, not just a crash.
    conn.execute("PRAGMA synchronous=FULL")
    for statement in _schema():
        conn.execute(statement)
    _migrate(conn)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Add columns a newer JobRecord has; repack rows packed with another layout."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    wanted = [(f.name, _sql_type(f)) for f in dataclasses.fields(JobRecord)]
    wanted += list(INTERNAL.items())
    for name, sql in wanted:
        if name not in have:
            conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {sql}")
    bids.migrate(conn)
    if "request" in have:  # requests were kept in the jobs table once
        conn.execute("INSERT OR IGNORE INTO requests (job_id, request) "
                     "SELECT job_id, request FROM jobs WHERE request IS NOT NULL")
    if get_meta(conn, "layout") != LAYOUT:
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(f"SELECT {', '.join(RECORD_FIELDS)} FROM jobs").fetchall()
        for row in rows:
            job = _from_columns(row)
            conn.execute("UPDATE jobs SET record = ? WHERE job_id = ?", (pack(job), job.job_id))
        set_meta(conn, "layout", LAYOUT)
        conn.execute("COMMIT")


def reader(home: str) -> sqlite3.Connection | None:
    """A connection for the read-only commands; None when nothing was ever submitted.

    A store missing or unreadable although jobs were queued raises ``health.StoreDamaged``.
    """
    path = db_path(home)
    try:
        empty = os.stat(path).st_size == 0
    except FileNotFoundError:
        empty = True
    if empty:
        if health.had_jobs(home):
            raise health.damaged(home, health.describe_file(path) or "is empty")
        return None
    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA query_only=1")
        # Reads the schema, which a damaged header or an emptied file fails (the first query would anyway).
        conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
    except sqlite3.OperationalError as err:
        if "no such table" not in str(err) or health.had_jobs(home):
            conn.close()
            raise _damage(home, err) from None
    except sqlite3.DatabaseError as err:
        conn.close()
        raise _damage(home, err) from None
    return conn


def _damage(home: str, err: sqlite3.Error) -> Exception:
    if isinstance(err, sqlite3.OperationalError) and "no such table" not in str(err):
        return err  # locked, busy...: not damage
    return health.damaged(home, health.describe_file(db_path(home)) or health.describe_error(err))


def backup(conn: sqlite3.Connection, home: str) -> None:
    """Copy the store to ``sflow.db.bak`` (a consistent snapshot; replaced atomically)."""
    target = backup_path(home)
    partial = target + ".tmp"
    try:
        copy = sqlite3.connect(partial, isolation_level=None)
        try:
            conn.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            copy.close()
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, target)
    except BaseException:
        try:
            os.unlink(partial)
        except OSError:
            pass
        raise


def _conn(conn_or_home) -> tuple[sqlite3.Connection | None, bool]:
    if isinstance(conn_or_home, sqlite3.Connection):
        return conn_or_home, False
    return reader(conn_or_home), True


# ------------------------------------------------------------------ meta


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def set_meta(conn: sqlite3.Connection, key: str, value) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))


def next_job_id(conn: sqlite3.Connection, first_job_id: int) -> int:
    """Allocate one job id inside the caller's transaction (committed with the job, or not at all)."""
    stored = get_meta(conn, "next_job_id")
    top = conn.execute("SELECT MAX(job_id) FROM jobs").fetchone()[0] or 0
    job_id = max(int(stored) if stored else first_job_id, first_job_id, top + 1)
    set_meta(conn, "next_job_id", job_id + 1)
    return job_id


def next_seq(conn: sqlite3.Connection) -> int:
    seq = int(get_meta(conn, "submit_seq") or 0) + 1
    set_meta(conn, "submit_seq", seq)
    return seq


def next_job_id_and_seq(conn: sqlite3.Connection, first_job_id: int) -> tuple[int, int]:
    """``next_job_id`` and ``next_seq`` at once: one statement reads both counters, one writes them."""
    stored, seq, top = conn.execute(
        "SELECT (SELECT value FROM meta WHERE key = 'next_job_id'), (SELECT value FROM meta WHERE key = 'submit_seq'), "
        "(SELECT MAX(job_id) FROM jobs)").fetchone()
    job_id = max(int(stored) if stored else first_job_id, first_job_id, (top or 0) + 1)
    seq = int(seq or 0) + 1
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_job_id', ?), ('submit_seq', ?)",
                 (str(job_id + 1), str(seq)))
    return job_id, seq


# ------------------------------------------------------------------ jobs


def _cell(value):
    """A value SQLite's driver accepts: text outside UTF-8 becomes a BLOB of its bytes."""
    if type(value) is str and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape")
    return value


def _cells(values) -> list:
    # ASCII text and numbers, nearly every value, pass as they are without a call each.
    return [value if type(value) is not str or value.isascii() else _cell(value) for value in values]


def _uncell(value):
    return value.decode("utf-8", "surrogateescape") if type(value) is bytes else value


def pack(job: JobRecord) -> bytes:
    return marshal.dumps(_record_values(job))


_BOOL_FIELDS = tuple(f.name for f in dataclasses.fields(JobRecord) if _sql_type(f) == "INTEGER"
                     and str(f.type).startswith("bool"))


def _from_columns(row, names=None) -> JobRecord:
    """A record from its columns: all of them in order, or only ``names`` (the rest take their defaults)."""
    values = map(_uncell, row)
    job = JobRecord(*values) if names is None else JobRecord(**dict(zip(names, values)))
    for name in _BOOL_FIELDS:
        setattr(job, name, bool(getattr(job, name)))
    return job


def _where(job_ids, states, where) -> tuple[str, list]:
    clauses, params = [], []
    if job_ids is not None:
        ids = [int(i) for i in job_ids]
        clauses.append(f"(job_id IN ({','.join('?' * len(ids))}) OR array_job_id IN ({','.join('?' * len(ids))}))"
                       if ids else "0")
        params += ids + ids
    if states is not None:
        states = list(states)
        clauses.append(f"state IN ({','.join('?' * len(states))})" if states else "0")
        params += states
    if where:
        clauses.append(f"({where})")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def failed_read(err: sqlite3.DatabaseError, home: str | None = None) -> list:
    """A read that failed: nothing from a store never made; else the damage, named (without
    ``home``, for a caller's own connection, SQLite's own error)."""
    if isinstance(err, sqlite3.OperationalError) and "no such table" in str(err) \
            and not (home is not None and health.had_jobs(home)):
        return []
    if home is not None:
        raise _damage(home, err) from None
    raise err


def read_jobs(conn_or_home, where: str | None = None, params: tuple | list = (), *,
              job_ids=None, states=None) -> list[JobRecord]:
    """Job records, by job id; ``job_ids`` also matches every task of those arrays.

    ``conn_or_home`` is a sqlite3 connection or the sflow home directory (no
    database yet: no jobs). ``where``/``params``: an extra SQL condition on the
    record columns.
    """
    return _read_jobs(conn_or_home, where, params, job_ids, states, rows=False)


def read_job_rows(conn_or_home, where: str | None = None, params: tuple | list = (), *,
                  job_ids=None, states=None) -> list[tuple]:
    """``read_jobs``, each job as its row of ``RECORD_FIELDS`` (``records.job_row``): the packed
    tuple as it is, a third of the time of building its record."""
    return _read_jobs(conn_or_home, where, params, job_ids, states, rows=True)


def _read_jobs(conn_or_home, where, params, job_ids, states, rows: bool) -> list:
    conn, close = _conn(conn_or_home)
    if conn is None:
        return []
    try:
        clause, args = _where(job_ids, states, where)
        args += list(params)
        if get_meta(conn, "layout") == LAYOUT:
            blobs = conn.execute(f"SELECT record FROM jobs{clause} ORDER BY job_id", args).fetchall()
            if rows:  # packed from a record of this layout: exactly its fields, in order
                return _unpack(blobs)
            loads, n = marshal.loads, len(RECORD_FIELDS)
            return [JobRecord(*loads(blob)[:n]) for (blob,) in blobs]
        # A store a controller of an older sflow still holds may lack newer fields: they take their defaults.
        have = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
        names = [name for name in RECORD_FIELDS if name in have]
        found = conn.execute(f"SELECT {', '.join(names)} FROM jobs{clause} ORDER BY job_id", args).fetchall()
        partial = names if len(names) < len(RECORD_FIELDS) else None
        jobs = [_from_columns(row, partial) for row in found]
        return [job_row(job) for job in jobs] if rows else jobs
    except sqlite3.DatabaseError as err:
        return failed_read(err, conn_or_home if close else None)
    finally:
        if close:
            conn.close()


# The rows of the last long read, by their packed bytes: the warm controller lists the same ended
# jobs again and again, and a row found here costs a lookup instead of an unmarshal (a thirtieth
# of the time). Keyed by content, never stale; bounded, as it outlives the read.
ROWS_KEPT = (1000, 20_000)  # fewer rows than this are not worth keeping, more would cost too much memory
_rows_by_packed: dict[bytes, tuple] = {}


def _unpack(blobs: list[tuple[bytes]]) -> list[tuple]:
    global _rows_by_packed
    known, loads = _rows_by_packed, marshal.loads
    rows = [known.get(blob) or loads(blob) for (blob,) in blobs]  # a row is never an empty tuple
    if ROWS_KEPT[0] <= len(rows) <= ROWS_KEPT[1]:
        _rows_by_packed = {blob: row for (blob,), row in zip(blobs, rows)}
    return rows


_RECORD_COLUMNS = ", ".join(RECORD_FIELDS)
_RECORD_MARKS = ", ".join("?" * len(RECORD_FIELDS))
_RECORD_SETS = ", ".join(f"{name} = ?" for name in RECORD_FIELDS)


def insert_job(conn: sqlite3.Connection, job: JobRecord, **internal) -> None:
    names = list(internal)
    values = _record_values(job)
    conn.execute(
        f"INSERT INTO jobs ({_RECORD_COLUMNS}, record{''.join(', ' + n for n in names)}) "
        f"VALUES ({_RECORD_MARKS}, ?{', ?' * len(names)})",
        [*_cells(values), marshal.dumps(values), *_cells(internal.values())],
    )


def update_job(conn: sqlite3.Connection, job: JobRecord, **internal) -> None:
    """Write the whole record back (and any controller-only columns given)."""
    sets = _RECORD_SETS + ", record = ?" + "".join(f", {name} = ?" for name in internal)
    values = _record_values(job)
    conn.execute(f"UPDATE jobs SET {sets} WHERE job_id = ?",
                 [*_cells(values), marshal.dumps(values), *_cells(internal.values()), job.job_id])


def set_internal(conn: sqlite3.Connection, job_id: int, **internal) -> None:
    if internal:
        conn.execute(f"UPDATE jobs SET {', '.join(f'{n} = ?' for n in internal)} WHERE job_id = ?",
                     [*_cells(internal.values()), job_id])


def read_internal(conn: sqlite3.Connection, where: str, params=(), columns=tuple(INTERNAL)) -> list[tuple]:
    """(record, *columns) rows for the controller, record already unpacked."""
    names = [c for c in columns if c != "record"]
    rows = conn.execute(
        f"SELECT {_RECORD_COLUMNS}{''.join(', ' + n for n in names)} FROM jobs WHERE {where} ORDER BY job_id",
        list(params)).fetchall()
    n = len(RECORD_FIELDS)
    return [(_from_columns(row[:n]), *map(_uncell, row[n:])) for row in rows]


def save_request(conn: sqlite3.Connection, job_id: int, text: str) -> None:
    conn.execute("INSERT OR REPLACE INTO requests (job_id, request) VALUES (?, ?)", (job_id, text))


def load_request(conn: sqlite3.Connection, job_id: int) -> str | None:
    row = conn.execute("SELECT request FROM requests WHERE job_id = ?", (job_id,)).fetchone()
    return row[0] if row else None


# ------------------------------------------------------------------ steps


_STEP_BLOBS = " OR ".join(f"typeof({f.name}) = 'blob'" for f in dataclasses.fields(StepRecord)
                          if f.name in STEP_FIELDS and _sql_type(f) == "TEXT")
# More job ids than this are read as the range they span, then picked: one query, not a long IN list.
IDS_AS_RANGE = 500


def read_steps(conn_or_home, job_ids=None, usage: bool = True) -> list[StepRecord]:
    """Step records (``batch`` and srun steps), by job id and start; without ``usage``, ``extra``
    holds only ``cancelled_by``."""
    conn, close = _conn(conn_or_home)
    if conn is None:
        return []
    picked = None
    try:
        # Last, whether a text of the row was stored as a BLOB (not UTF-8): only such rows are decoded
        # value by value.
        sql = f"SELECT {', '.join(STEP_FIELDS)}, extra, {_STEP_BLOBS} FROM steps"
        args: list = []
        if job_ids is not None:
            ids = [int(i) for i in job_ids]
            if len(ids) > IDS_AS_RANGE:
                sql += " WHERE job_id BETWEEN ? AND ?"
                args, picked = [min(ids), max(ids)], set(ids)
            else:
                sql += f" WHERE job_id IN ({','.join('?' * len(ids))})" if ids else " WHERE 0"
                args = ids
        rows = conn.execute(sql + " ORDER BY job_id, start_time", args).fetchall()
    except sqlite3.DatabaseError as err:
        return failed_read(err, conn_or_home if close else None)
    finally:
        if close:
            conn.close()
    if picked is not None:
        rows = [row for row in rows if row[0] in picked]
    loads = json.loads
    if usage:
        return [StepRecord(*(map(_uncell, row[:-2]) if row[-1] else row[:-2]), extra=loads(row[-2]) if row[-2] else {})
                for row in rows]
    return [StepRecord(*(map(_uncell, row[:-2]) if row[-1] else row[:-2]), extra=_cancelled_by(row[-2]))
            for row in rows]


def _cancelled_by(extra: str | None) -> dict:
    if not extra or '"cancelled_by"' not in extra:
        return {}
    return {"cancelled_by": json.loads(extra)["cancelled_by"]}


# ------------------------------------------------------------------ bids


def read_bids(home: str, job_id: int) -> list[bids.BidRow]:
    """Every Mithril bid a job has had, oldest first, for the read-only commands."""
    conn = reader(home)
    if conn is None:
        return []
    try:
        return bids.of_job(conn, job_id)
    finally:
        conn.close()


def save_step(conn: sqlite3.Connection, step: StepRecord) -> None:
    values = [getattr(step, name) for name in STEP_FIELDS]
    conn.execute(
        f"INSERT OR REPLACE INTO steps ({', '.join(STEP_FIELDS)}, extra) "
        f"VALUES ({', '.join('?' * len(STEP_FIELDS))}, ?)",
        [*_cells(values), json.dumps(step.extra) if step.extra else None],
    )


def delete_steps(conn: sqlite3.Connection, job_id: int) -> None:
    conn.execute("DELETE FROM steps WHERE job_id = ?", (job_id,))


__all__ = [
    "ACTIVE_STATES", "INTERNAL", "RECORD_FIELDS", "backup", "delete_steps", "failed_read", "insert_job", "next_job_id",
    "next_job_id_and_seq", "next_seq", "open_db",
    "load_request", "read_bids", "read_internal", "read_job_rows", "read_jobs", "read_steps", "reader", "save_request",
    "save_step",
    "set_internal", "update_job",
]
