"""``flow doctor``: check the store and, with ``--repair``, rebuild it from what survives.

The repaired store is the controller's last backup (``sflow.db.bak``) with
every row still readable in the damaged file laid over it (those are newer).
A file whose header alone is damaged is read through a copy with the header
rewritten. The damaged files are kept beside it (``sflow.db.damaged-<time>``).
No job id is ever handed out twice: the next id is past every job's files in jobs/.
A pending job that ran after the backup was taken (its directory says so) is
held rather than run again.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import time

from sflow.queue import health, paths, store, watchdog

TABLES = ("jobs", "requests", "steps", "meta", "bids")
# Header fields SQLite needs to read the file (offsets 16-23 and the schema format at 44),
# as every sflow store has them: 4096-byte pages, WAL mode, no reserved bytes.
_HEADER_FIELDS = bytes([0x10, 0x00, 2, 2, 0, 64, 32, 32])


@dataclasses.dataclass
class Report:
    home: str
    problem: str | None = None  # what is wrong with sflow.db (None: nothing found)
    jobs: int = 0  # jobs the store holds (after a repair: the repaired store)
    active: int = 0
    backup: str | None = None  # when the backup was taken, or None
    backup_jobs: int = 0
    job_dirs: list[int] = dataclasses.field(default_factory=list)
    restored: int = 0  # jobs taken from the backup
    salvaged: int = 0  # rows read back from the damaged file
    missing: list[int] = dataclasses.field(default_factory=list)  # jobs' files without a record
    held: list[int] = dataclasses.field(default_factory=list)
    kept: str | None = None  # where the damaged file was moved
    next_job_id: int | None = None

    def lines(self) -> list[str]:
        db = paths.db_path(self.home)
        out = [f"store:   {db}: " + (self.problem or f"ok, {self.jobs} job(s), {self.active} pending or running")]
        if self.backup:
            out.append(f"backup:  {paths.backup_path(self.home)}: {self.backup_jobs} job(s), taken {self.backup}")
        else:
            out.append("backup:  none")
        if self.job_dirs:
            out.append(f"jobs/:   files of {len(self.job_dirs)} job(s), {self.job_dirs[0]} to {self.job_dirs[-1]}")
        if self.kept:
            out.append(f"repaired: {self.restored} job(s) from the backup, {self.salvaged} row(s) read back from "
                       f"the damaged file (kept as {self.kept}); next job id {self.next_job_id}")
        if self.held:
            out.append(f"held:    {_ids(self.held)}: ran after the backup was taken; held so that they do not run "
                       "twice (scontrol release to run them again)")
        if self.missing:
            out.append(f"lost:    {_ids(self.missing)}: files but no record (a submission that failed, or a "
                       "job newer than the backup; its script is in jobs/<id>.script)")
        return out


def _ids(ids: list[int], limit: int = 20) -> str:
    shown = ",".join(str(i) for i in ids[:limit])
    return shown + (f",... ({len(ids)} in all)" if len(ids) > limit else "")


class DoctorError(Exception):
    pass


def _counts(path: str) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        total = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        marks = ",".join("?" * len(store.ACTIVE_STATES))
        active = conn.execute(f"SELECT COUNT(*) FROM jobs WHERE state IN ({marks})", store.ACTIVE_STATES).fetchone()[0]
        return total, active
    finally:
        conn.close()


def _problem(path: str) -> str | None:
    problem = health.describe_file(path)
    if problem is not None:
        return problem
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            result = [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
            conn.execute("SELECT value FROM meta WHERE key = 'next_job_id'").fetchone()
            conn.execute("SELECT COUNT(*) FROM jobs").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        return health.describe_error(err)
    if result != ["ok"]:
        return "fails its integrity check: " + "; ".join(result[:3])
    return None


def inspect(home: str) -> Report:
    report = Report(home, job_dirs=health.job_dir_ids(home))
    db = paths.db_path(home)
    report.problem = _problem(db)
    if report.problem is None:
        report.jobs, report.active = _counts(db)
    bak = paths.backup_path(home)
    if os.path.exists(bak) and _problem(bak) is None:
        report.backup = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(os.stat(bak).st_mtime))
        report.backup_jobs = _counts(bak)[0]
    return report


def _readable_copy(path: str, scratch: str) -> sqlite3.Connection | None:
    """The damaged file opened read-only, through a copy with its header rewritten if need be."""
    if not os.path.exists(path) or os.path.getsize(path) < 100:
        return None
    shutil.copyfile(path, scratch)
    for suffix in ("-wal",):  # committed frames not yet in the main file
        if os.path.exists(path + suffix):
            shutil.copyfile(path + suffix, scratch + suffix)
    with open(scratch, "r+b") as handle:
        head = handle.read(100)
        if head[:16] != health.SQLITE_MAGIC:
            handle.seek(0)
            handle.write(health.SQLITE_MAGIC + _HEADER_FIELDS)
            handle.seek(44)
            handle.write((4).to_bytes(4, "big"))  # schema format 4
            handle.seek(56)
            handle.write((1).to_bytes(4, "big"))  # UTF-8
    try:
        conn = sqlite3.connect(scratch, isolation_level=None)
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.DatabaseError:
        return None


def _salvage(source: sqlite3.Connection, target: sqlite3.Connection) -> int:
    """Copy every row that can be read, table by table; a damaged stretch costs only its rows."""
    copied = 0
    for table in TABLES:
        try:
            columns = [row[1] for row in source.execute(f"PRAGMA table_info({table})")]
            have = {row[1] for row in target.execute(f"PRAGMA table_info({table})")}
        except sqlite3.DatabaseError:
            continue
        columns = [c for c in columns if c in have]
        if not columns:
            continue
        names = ", ".join(columns)
        insert = f"INSERT OR REPLACE INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"
        try:
            cursor = source.execute(f"SELECT {names} FROM {table}")
            while True:
                row = cursor.fetchone()
                if row is None:
                    break
                target.execute(insert, row)
                copied += 1
        except sqlite3.DatabaseError:
            continue  # the rest of this table is unreadable; keep what came before
    return copied


def _hold_rerun(conn: sqlite3.Connection, home: str) -> list[int]:
    """Pending jobs whose directory shows a run that ended after their record was written."""
    held = []
    for job in store.read_jobs(conn, states=["PENDING"]):
        status = os.path.join(paths.job_dir(home, job.job_id), "status")
        try:
            ran = os.stat(status).st_mtime > (job.submit_time or 0)
        except OSError:
            continue
        if ran and not job.held:
            job.held, job.priority, job.reason = True, 0, "JobHeldAdmin"
            store.update_job(conn, job)
            held.append(job.job_id)
    return held


def repair(home: str) -> Report:
    if watchdog.controller_running(home):
        raise DoctorError("the controller is running: stop it first (scontrol shutdown), then repair")
    before = inspect(home)
    db = paths.db_path(home)
    if before.problem is None:
        return before
    stamp = time.strftime("%Y%m%d-%H%M%S")
    fresh = os.path.join(home, f"sflow.db.repair-{stamp}")
    scratch = os.path.join(home, f"sflow.db.scratch-{stamp}")
    report = before
    try:
        target = sqlite3.connect(fresh, isolation_level=None)
        if before.backup:
            source = sqlite3.connect(f"file:{paths.backup_path(home)}?mode=ro", uri=True)
            try:
                source.backup(target)
            finally:
                source.close()
            report.restored = before.backup_jobs
        target.close()
        conn = store.open_db_at(fresh)
        damaged = _readable_copy(db, scratch)
        if damaged is not None:
            conn.execute("BEGIN IMMEDIATE")
            report.salvaged = _salvage(damaged, conn)
            conn.execute("COMMIT")
            damaged.close()
        conn.execute("BEGIN IMMEDIATE")
        top = max([conn.execute("SELECT MAX(job_id) FROM jobs").fetchone()[0] or 0, *before.job_dirs])
        stored = int(store.get_meta(conn, "next_job_id") or 0)
        report.next_job_id = max(stored, top + 1)
        store.set_meta(conn, "next_job_id", report.next_job_id)
        report.held = _hold_rerun(conn, home)
        conn.execute("COMMIT")
        recorded = {row[0] for row in conn.execute("SELECT job_id FROM jobs")}
        recorded |= {row[0] for row in conn.execute("SELECT array_job_id FROM jobs WHERE array_job_id IS NOT NULL")}
        report.missing = [i for i in before.job_dirs if i not in recorded]
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        report.kept = f"sflow.db.damaged-{stamp}"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.replace(db + suffix, os.path.join(home, report.kept + suffix))
        os.replace(fresh, db)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(fresh + suffix):
                os.replace(fresh + suffix, db + suffix)
    finally:
        for path in (fresh, scratch):
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.unlink(path + suffix)
                except OSError:
                    pass
    report.problem = None
    report.jobs, report.active = _counts(db)
    return report


__all__ = ["DoctorError", "Report", "inspect", "repair"]
