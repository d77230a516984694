"""Durable records of the Mithril bids placed for jobs: one row per bid.

The tables (``bids``, ``bid_keys``) are this module's; they live in the
SQLite file of whoever runs the capacity (sflow's controller applies
``SCHEMA`` and ``migrate`` when it opens its store).

A row is written, with its idempotency key, in the transaction that decides
to bid, and committed *before* the create call is made: a controller killed
while the call is in flight retries it with the same key after a restart,
and the service answers with the bid it already has. Rows are never deleted;
one whose bid is gone has ``ended`` set, so the table doubles as the history
of a job's runs and what each cost.

A spot bid's instances carry a dead-man switch (``sflow.mithril.deadman``)
with an API key made for that bid alone: its row in ``bid_keys`` (the key's
unique name) is committed with the bid's, before the key is asked for; the
key's id and secret are committed before the bid's create is sent (the secret
is in its startup script, and a retried create must send the same body; the
store is readable by its owner only). The key is revoked after the bid is
deleted; ``revoked`` records that Mithril confirmed it, and the secret is
dropped then.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS bids ("
    " idempotency_key TEXT PRIMARY KEY,"  # sent with the create; the same on every retry
    " job_id INTEGER NOT NULL,"
    " run INTEGER NOT NULL,"  # the job's restart count when the bid was placed
    " bid_id TEXT,"  # Mithril's id, once the create was answered
    " status TEXT NOT NULL,"  # Placing, then Mithril's own: Open, Allocated, Preempting, Terminated
    " plan TEXT NOT NULL,"  # what was bid for (JSON): instance type, region, quantity, limit
    " limit_cents INTEGER NOT NULL,"  # per instance-hour
    " price_cents INTEGER,"  # what each instance pays per hour now (the clearing price, at most the limit)
    " instances TEXT,"  # JSON list: fid, name, status, ssh, running_since, ended
    " created REAL NOT NULL,"
    " started REAL,"  # when the job started on the bid's instances
    " accrued_to REAL,"  # cost is counted up to this time
    " cost_cents REAL NOT NULL DEFAULT 0,"  # clearing price x billed instance time, fractional cents
    " cost_final INTEGER NOT NULL DEFAULT 0,"  # cost_cents is what Mithril billed, read after the delete
    " must_delete INTEGER NOT NULL DEFAULT 0,"  # delete it; retried until Mithril confirms
    " outcome TEXT,"  # how the run on it ended: COMPLETED, PREEMPTED, CANCELLED...
    " error TEXT,"  # the last failure the service reported for it
    " ended REAL)",  # the bid is gone (deleted, confirmed)
    "CREATE INDEX IF NOT EXISTS bids_job ON bids(job_id)",
    # The commands ask whether any bid is live (sflow.queue.watchdog): answered without a scan of the history.
    "CREATE INDEX IF NOT EXISTS bids_live ON bids(ended) WHERE ended IS NULL",
    "CREATE TABLE IF NOT EXISTS bid_keys ("
    " idempotency_key TEXT PRIMARY KEY,"  # the bid's
    " name TEXT NOT NULL,"  # the key's name at Mithril, unique: a key whose answer was lost is found by it
    " expires REAL NOT NULL,"  # the key's expires_at
    " watch TEXT NOT NULL,"  # JSON: the lease and deadline the bid's watcher gets (sflow.mithril.deadman)
    " key_fid TEXT,"  # Mithril's id, once the create was answered
    " secret TEXT,"  # until the key is revoked
    " created REAL NOT NULL,"
    " revoked REAL)",  # Mithril confirmed the key is deleted
]

COLUMNS = ("idempotency_key", "job_id", "run", "bid_id", "status", "plan", "limit_cents", "price_cents",
           "instances", "created", "started", "accrued_to", "cost_cents", "must_delete", "outcome", "error",
           "ended", "cost_final")


@dataclass
class BidRow:
    idempotency_key: str
    job_id: int
    run: int
    status: str
    plan: dict
    limit_cents: int
    created: float
    bid_id: str | None = None
    price_cents: int | None = None
    instances: list = field(default_factory=list)
    started: float | None = None
    accrued_to: float | None = None
    cost_cents: float = 0.0
    must_delete: bool = False
    outcome: str | None = None
    error: str | None = None
    ended: float | None = None
    cost_final: bool = False

    @property
    def live(self) -> bool:
        """Still to be watched or deleted."""
        return self.ended is None

    @property
    def cost_settled(self) -> bool:
        """Its cost will not change: the bid is gone and its billing record was read (a reservation
        is paid up front; a bid never placed cost nothing)."""
        return self.ended is not None and (self.cost_final or self.bid_id is None
                                           or self.plan.get("capacity") == "reserved")

    @property
    def name(self) -> str:
        """The bid's name at Mithril (its instances are named after it); an array task's is in its plan."""
        return self.plan.get("name") or f"sflow-{self.job_id}" + (f"r{self.run}" if self.run else "")

    def values(self) -> list:
        return [self.idempotency_key, self.job_id, self.run, self.bid_id, self.status, json.dumps(self.plan),
                self.limit_cents, self.price_cents, json.dumps(self.instances), self.created, self.started,
                self.accrued_to, self.cost_cents, int(self.must_delete), self.outcome, self.error, self.ended,
                int(self.cost_final)]

    @classmethod
    def from_row(cls, row) -> "BidRow":
        data = dict(zip(COLUMNS, row))
        data["plan"] = json.loads(data["plan"])
        data["instances"] = json.loads(data["instances"] or "[]")
        data["must_delete"] = bool(data["must_delete"])
        data["cost_final"] = bool(data["cost_final"])
        return cls(**data)


@dataclass
class KeyRow:
    """The API key of one bid's dead-man switch."""

    idempotency_key: str
    name: str
    expires: float
    watch: dict
    created: float
    key_fid: str | None = None
    secret: str | None = field(default=None, repr=False)
    revoked: float | None = None

    def __post_init__(self):
        if isinstance(self.watch, str):
            self.watch = json.loads(self.watch)


KEY_COLUMNS = ("idempotency_key", "name", "expires", "watch", "key_fid", "secret", "created", "revoked")


def _upsert(conn: sqlite3.Connection, table: str, columns, values) -> None:
    conn.execute(f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                 list(values))


def _select(conn: sqlite3.Connection, table: str, columns: str, where: str, params) -> list[tuple]:
    """Rows oldest first; none from a store made before ``table`` was."""
    try:
        return conn.execute(f"SELECT {columns} FROM {table} WHERE {where} ORDER BY created, rowid",
                            list(params)).fetchall()
    except sqlite3.OperationalError as err:
        if "no such table" in str(err):
            return []
        raise


def save_key(conn: sqlite3.Connection, row: KeyRow) -> None:
    _upsert(conn, "bid_keys", KEY_COLUMNS,
            [json.dumps(row.watch) if c == "watch" else getattr(row, c) for c in KEY_COLUMNS])


def keys(conn: sqlite3.Connection, where: str = "1", params=()) -> list[KeyRow]:
    rows = _select(conn, "bid_keys", ", ".join(KEY_COLUMNS), where, params)
    return [KeyRow(**dict(zip(KEY_COLUMNS, r))) for r in rows]


def ensure_schema(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        conn.execute(statement)
    migrate(conn)


def migrate(conn: sqlite3.Connection) -> None:
    """Add the columns a newer row has to a store made before them."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(bids)")}
    if have and "cost_final" not in have:
        conn.execute("ALTER TABLE bids ADD COLUMN cost_final INTEGER NOT NULL DEFAULT 0")
        # Bids gone before the billing record was read keep their estimate: not asked for again.
        conn.execute("UPDATE bids SET cost_final = 1 WHERE ended IS NOT NULL")


def save(conn: sqlite3.Connection, row: BidRow) -> None:
    _upsert(conn, "bids", COLUMNS, row.values())


def read(conn: sqlite3.Connection, where: str = "1", params=()) -> list[BidRow]:
    columns = ", ".join(COLUMNS)
    try:
        rows = _select(conn, "bids", columns, where, params)
    except sqlite3.OperationalError as err:
        if "no such column: cost_final" not in str(err):
            raise
        # A store the controller has not migrated yet (readers never write): as migrate() would.
        rows = _select(conn, "bids", columns.replace("cost_final", "ended IS NOT NULL"), where, params)
    return [BidRow.from_row(r) for r in rows]


def live(conn: sqlite3.Connection) -> list[BidRow]:
    return read(conn, "ended IS NULL")


def unsettled(conn: sqlite3.Connection) -> list[BidRow]:
    """Bids deleted whose billing record is still to be read."""
    return [r for r in read(conn, "ended IS NOT NULL AND cost_final = 0 AND bid_id IS NOT NULL")
            if not r.cost_settled]


def any_to_follow(conn: sqlite3.Connection) -> bool:
    """A bid still live, or one whose billing record is still to be read."""
    try:
        if conn.execute("SELECT 1 FROM bids WHERE ended IS NULL LIMIT 1").fetchone() is not None:
            return True
        return bool(unsettled(conn))
    except sqlite3.Error:  # a store from before bids were recorded
        return False


def record_outcome(conn: sqlite3.Connection, job_id: int, run: int, outcome: str) -> None:
    """How a job's run on its bids ended; the first word recorded stays."""
    conn.execute("UPDATE bids SET outcome = ? WHERE job_id = ? AND run = ? AND outcome IS NULL",
                 (outcome, job_id, run))


def job_cost_cents(conn: sqlite3.Connection, job_id: int) -> float | None:
    """What every bid of a job cost, in fractional cents; None when it never had one."""
    total = conn.execute("SELECT SUM(cost_cents), COUNT(*) FROM bids WHERE job_id = ?", (job_id,)).fetchone()
    return float(total[0]) if total and total[1] else None


def of_job(conn: sqlite3.Connection, job_id: int) -> list[BidRow]:
    """Every bid a job has had, oldest first (readers: ``store.read_bids``)."""
    return read(conn, "job_id = ?", (job_id,))


__all__ = ["BidRow", "KeyRow", "SCHEMA", "ensure_schema", "job_cost_cents", "keys", "live", "migrate", "of_job",
           "read", "record_outcome", "save", "save_key", "unsettled"]
