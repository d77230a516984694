"""The burst service's durable state: ``<state_dir>/burst.db``.

- ``requests``: what slurmctld asked, one row per program call, written in one
  transaction by the program and taken in order by the service (``taken`` set
  in the transaction that acts on it, so a crash takes it again).
- ``groups``: one row per bid: the nodes one job got (or one node of no job),
  its owner id being the bid's ``job_id`` in the capacity layer's ``bids``.
- ``nodes``: each cloud node's state as the service sees it, and why.
- the capacity layer's own tables (``sflow.mithril.bids``), in the same file
  so a bid's record and the group that owns it are committed together.

The directory is 0700 and the file 0600: it names instances and their addresses.
Only the standard library and ``bids`` are imported: the programs open it on every call.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass

from sflow.mithril import bids

DB_NAME = "burst.db"
StoreError = sqlite3.Error  # what a caller without sqlite3 of its own catches
KINDS = ("resume", "suspend", "resume_fail")
NODE_STATES = ("resuming", "up", "suspending", "down", "idle")
# planning: waiting for the market; bidding: bid placed, not won; booting: slurmd being started;
# up: every node booted; preempting: under the market's notice, its jobs signalled, requeued at
# ``deadline``; released / preempted: given back; timed_out / failed: given back before SLURM gave up.
GROUP_LIVE = ("planning", "bidding", "booting", "up", "preempting")

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS requests ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " kind TEXT NOT NULL,"  # resume, suspend, resume_fail
    " hostlist TEXT NOT NULL,"  # as slurmctld passed it
    " payload TEXT,"  # JSON: SLURM_RESUME_FILE's content for a resume
    " received REAL NOT NULL,"
    " taken REAL)",
    "CREATE INDEX IF NOT EXISTS requests_untaken ON requests(seq) WHERE taken IS NULL",
    "CREATE TABLE IF NOT EXISTS groups ("
    " owner INTEGER PRIMARY KEY AUTOINCREMENT,"  # the bid's job id in the bids table
    " partition TEXT NOT NULL,"
    " slurm_job INTEGER,"  # the job the nodes were resumed for; NULL: none named
    " nodes TEXT NOT NULL,"  # JSON list of node names, in order
    " request INTEGER NOT NULL,"  # the requests row it came from
    " created REAL NOT NULL,"
    " state TEXT NOT NULL,"
    " reason TEXT,"
    " limit_price TEXT,"  # as the bid was placed
    " cost_cents REAL,"  # what its bid cost, as the capacity layer settled it
    " user TEXT,"
    " account TEXT,"
    " ended REAL,"
    " deadline REAL)",  # preempting: when its jobs are requeued, whether or not they ended
    "CREATE TABLE IF NOT EXISTS nodes ("
    " name TEXT PRIMARY KEY,"
    " partition TEXT NOT NULL,"
    " slurm_job INTEGER,"
    " state TEXT NOT NULL,"  # resuming, up, suspending, down, idle
    " owner INTEGER,"  # the group (bid) it belongs to
    " instance TEXT,"  # Mithril's instance id
    " address TEXT,"  # the instance's SSH destination
    " reason TEXT,"
    " since REAL NOT NULL)",
]


@dataclass
class Request:
    seq: int
    kind: str
    hostlist: str
    payload: dict | None
    received: float
    taken: float | None = None


@dataclass
class Group:
    owner: int
    partition: str
    slurm_job: int | None
    nodes: list
    request: int
    created: float
    state: str
    reason: str | None = None
    limit_price: str | None = None
    cost_cents: float | None = None
    user: str | None = None
    account: str | None = None
    ended: float | None = None
    deadline: float | None = None


@dataclass
class Node:
    name: str
    partition: str
    state: str
    since: float
    slurm_job: int | None = None
    owner: int | None = None
    instance: str | None = None
    address: str | None = None
    reason: str | None = None


GROUP_COLUMNS = ("owner", "partition", "slurm_job", "nodes", "request", "created", "state", "reason", "limit_price",
                 "cost_cents", "user", "account", "ended", "deadline")
NODE_COLUMNS = ("name", "partition", "state", "since", "slurm_job", "owner", "instance", "address", "reason")


def db_path(state_dir: str) -> str:
    return os.path.join(state_dir, DB_NAME)


def connect(state_dir: str) -> sqlite3.Connection:
    """The store, made on first use; autocommit, so every change is inside an explicit BEGIN."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = db_path(state_dir)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # never readable by others, not even at creation
    os.close(fd)
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a request acknowledged to slurmctld survives a power cut
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA + bids.SCHEMA:
            conn.execute(statement)
        if "deadline" not in {row[1] for row in conn.execute("PRAGMA table_info(groups)")}:
            conn.execute("ALTER TABLE groups ADD COLUMN deadline REAL")  # a store of an earlier version
        bids.migrate(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def begin(conn: sqlite3.Connection) -> None:
    """A turn's write transaction (taken at once: the programs write concurrently)."""
    conn.execute("BEGIN IMMEDIATE")


def commit(conn: sqlite3.Connection) -> None:
    conn.execute("COMMIT")


def open_store(state_dir: str) -> sqlite3.Connection:
    conn = connect(state_dir)
    ensure_schema(conn)
    return conn


# ------------------------------------------------------------ requests


def add_request(conn: sqlite3.Connection, kind: str, hostlist: str, payload: dict | None, now: float) -> int:
    """One request, committed before the program exits."""
    if kind not in KINDS:
        raise ValueError(kind)
    conn.execute("BEGIN IMMEDIATE")
    try:
        seq = conn.execute("INSERT INTO requests (kind, hostlist, payload, received) VALUES (?, ?, ?, ?)",
                           (kind, hostlist, None if payload is None else json.dumps(payload), now)).lastrowid
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return seq


def untaken(conn: sqlite3.Connection) -> list[Request]:
    rows = conn.execute("SELECT seq, kind, hostlist, payload, received, taken FROM requests WHERE taken IS NULL "
                        "ORDER BY seq").fetchall()
    return [Request(r[0], r[1], r[2], json.loads(r[3]) if r[3] else None, r[4], r[5]) for r in rows]


def mark_taken(conn: sqlite3.Connection, seq: int, now: float) -> None:
    conn.execute("UPDATE requests SET taken = ? WHERE seq = ?", (now, seq))


# ------------------------------------------------------------ groups


def new_group(conn: sqlite3.Connection, group: Group) -> int:
    values = [getattr(group, c) for c in GROUP_COLUMNS[1:]]
    values[2] = json.dumps(group.nodes)
    group.owner = conn.execute(f"INSERT INTO groups ({', '.join(GROUP_COLUMNS[1:])}) VALUES "
                               f"({', '.join('?' * (len(GROUP_COLUMNS) - 1))})", values).lastrowid
    return group.owner


def save_group(conn: sqlite3.Connection, group: Group) -> None:
    values = [getattr(group, c) for c in GROUP_COLUMNS]
    values[3] = json.dumps(group.nodes)
    conn.execute(f"INSERT OR REPLACE INTO groups ({', '.join(GROUP_COLUMNS)}) VALUES "
                 f"({', '.join('?' * len(GROUP_COLUMNS))})", values)


def _group(row) -> Group:
    values = list(row)
    values[3] = json.loads(values[3])
    return Group(*values)


def groups(conn: sqlite3.Connection, live_only: bool = False) -> list[Group]:
    where = f"WHERE state IN ({', '.join('?' * len(GROUP_LIVE))})" if live_only else ""
    rows = conn.execute(f"SELECT {', '.join(GROUP_COLUMNS)} FROM groups {where} ORDER BY owner",
                        GROUP_LIVE if live_only else ()).fetchall()
    return [_group(r) for r in rows]


# ------------------------------------------------------------ nodes


def save_node(conn: sqlite3.Connection, node: Node) -> None:
    conn.execute(f"INSERT OR REPLACE INTO nodes ({', '.join(NODE_COLUMNS)}) VALUES "
                 f"({', '.join('?' * len(NODE_COLUMNS))})", [getattr(node, c) for c in NODE_COLUMNS])


def nodes(conn: sqlite3.Connection) -> dict[str, Node]:
    rows = conn.execute(f"SELECT {', '.join(NODE_COLUMNS)} FROM nodes ORDER BY name").fetchall()
    return {r[0]: Node(*r) for r in rows}


__all__ = ["GROUP_LIVE", "Group", "KINDS", "Node", "Request", "StoreError", "add_request", "begin", "commit", "connect", "db_path", "ensure_schema",
           "groups", "mark_taken", "new_group", "nodes", "open_store", "save_group", "save_node", "untaken"]
