"""The backend seam: how a job's nodes are obtained and given back.

The controller decides *when* a job may start (priority, dependencies, holds,
limits); a backend decides *where*: the local backend hands out this
machine's virtual nodes, a cloud backend places bids. Both answer
``allocate`` with an ``Allocation`` or a ``Pending`` reason, and take nodes
back with ``release``. Allocations are plain data: the controller stores them
as JSON beside the job so a restarted controller knows what is in use.

A backend with durable state of its own (Mithril's bids) is handed a
``BackendContext``: the store and the hooks of the turn it changes it in,
never the controller, so it can run under something else (a real cluster).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Callable, Protocol

from sflow.records import AllocatedNode


@dataclass
class Allocation:
    job_id: int
    nodes: list[AllocatedNode] = field(default_factory=list)
    exclusive: bool = False  # whole nodes: nobody else may share them
    # Prefixes of environment variables that stay on this machine: the backend's own settings.
    withheld_env: tuple[str, ...] = ()
    # How often the batch step's agent renews its nodes' leases (None: no node is watched for them).
    lease_renew_seconds: float | None = None

    @property
    def nodelist(self) -> str:
        """SLURM's compressed host list, e.g. ``node[1-3]``."""
        from sflow.slurm.values import compress_hostlist  # deferred: squeue reads allocations, parses no values

        return compress_hostlist([n.name for n in self.nodes])

    @property
    def num_cpus(self) -> int:
        return sum(n.cpus for n in self.nodes)

    @property
    def tasks_per_node(self) -> list[int]:
        return [n.tasks for n in self.nodes]

    def to_json(self) -> dict:
        data = {"job_id": self.job_id, "exclusive": self.exclusive, "nodes": [n.to_json() for n in self.nodes]}
        if self.withheld_env:
            data["withheld_env"] = list(self.withheld_env)
        if self.lease_renew_seconds is not None:
            data["lease_renew_seconds"] = self.lease_renew_seconds
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Allocation":
        nodes = [AllocatedNode.from_json(n) for n in data["nodes"]]
        return cls(int(data["job_id"]), nodes, bool(data.get("exclusive", False)),
                   tuple(data.get("withheld_env") or ()), data.get("lease_renew_seconds"))


@dataclass(frozen=True)
class Pending:
    """No allocation now; ``reason`` is SLURM's word for why (``Resources``...)."""

    reason: str


@dataclass(frozen=True)
class Checked:
    """A backend's answer to a submission it can run (one it never can, it refuses with ``SlurmError``)."""

    never: str | None = None  # the reason it will wait with until the cluster changes (PartitionConfig...)
    # What ``allocate`` will place, as JSON data: stored with the job, so the plan the user was
    # shown is the one placed (a cloud backend's translated plan); None: decided at allocation.
    plan: dict | None = None
    num_nodes: int | None = None  # the nodes the plan gives it, when the backend decides their count
    limit_price: str | None = None  # the price it will pay at most, as shown
    partition_node_limits: bool = True  # the partitions' node counts bound it (a plan's nodes are its own)


class Deferred(Exception):
    """A submission needs what a backend is still fetching (Mithril's market): it is answered later."""


@dataclass(frozen=True)
class BackendContext:
    """What a backend with records of its own is handed by whoever runs it."""

    conn: sqlite3.Connection  # the store its tables live in
    home: str  # the state directory (its worker's files)
    write: Callable[[], None]  # begin the turn's write transaction: called before every change
    after_commit: Callable[[Callable[[], None]], None]  # run once the turn's changes are committed
    partition_max_time: Callable[[str], int | None]  # a partition's MaxTime in minutes; None: none or unknown


# ------------------------------------------------------------ what a backend tells the controller
# A backend that learns things on its own (a worker thread watching a market) returns them from
# ``events(now)``; the controller applies each the same way whichever backend said it.


@dataclass(frozen=True)
class Changed:
    """A pending job's placement moved (a bid placed, won, lost): plan it again."""

    job_id: int


@dataclass(frozen=True)
class Preempting:
    """The job's nodes are being taken back: it is signalled now, then requeued (or PREEMPTED)."""

    job_id: int
    notice_seconds: float | None = None  # how long it has, when the backend knows


@dataclass(frozen=True)
class NodeLost:
    """A node of the running job failed: the job ends as NODE_FAIL (requeued when allowed)."""

    job_id: int
    node: str | None = None


@dataclass(frozen=True)
class CostSettled:
    """What the job has cost so far, every run, in fractional cents (None: nothing known)."""

    job_id: int
    cents: float | None


@dataclass(frozen=True)
class Refused:
    """The job can never be placed as asked: held, with ``reason`` shown by squeue (its first word
    ends in ``Refused``, ``MithrilRefused: ...``, which keeps it shown while the job is held)."""

    job_id: int
    reason: str


@dataclass(frozen=True)
class MarketReady:
    """What submissions were deferred for has arrived (or failed): they are taken up again."""


Event = Changed | Preempting | NodeLost | CostSettled | Refused | MarketReady


class Backend(Protocol):
    """What the controller needs of a place that runs jobs.

    Every backend has the hooks below; one that answers at once (local) has trivial ones.
    A backend whose nodes are not this machine's (``on_this_machine`` False) is also asked, by
    the same names: ``allocate(job, request, now, task=None)``, ``withdraw(job_id, task=None)``
    (a job's claim given up while it waits), ``record_outcome(job_id, run, outcome)``,
    ``split_task(array_id, task, task_job_id)``, ``task_rows(array_id)``, ``job_cost_cents(job_id)``,
    ``lost_to_market(job)`` (a vanished step was taken back, not a node failure), ``verdict_seconds``
    (how long to wait for that answer), ``look_back(job)`` (ask the backend's own records about the
    vanished step's nodes), ``still_looking(job)`` (they have not answered), ``verdict_patience`` (how
    much longer they are waited for) and ``recheck_seconds`` (how often a waiting job is planned again).
    """

    name: str
    # Its nodes are this machine's: the controller tracks their use and its wrapper reports a step's exit.
    on_this_machine: bool

    def check(self, request, partitions: list, limit: int, env: dict, now: float) -> Checked:
        """At submit, for a job that may run in any of ``partitions`` within ``limit`` minutes: raise
        ``SlurmError`` if it can never run here, ``Deferred`` if the answer needs what is still being
        fetched; else what it will wait with and what will be placed (``env``: the submitter's)."""

    def allocate(self, job, request) -> Allocation | Pending:
        """Resources for ``job`` now (``job.rec``: its record; ``job.plan``: what ``check`` planned), or why not."""

    def release(self, allocation: Allocation) -> None:
        """Give an allocation's resources back."""

    def restore(self, allocation: Allocation) -> None:
        """Mark an allocation in use again (a restarted controller adopting a job)."""

    # A pipe's read end that becomes readable when ``events`` has news; None: never.
    wake_fd: int | None

    def events(self, now: float) -> list[Event]:
        """What happened since the last call."""

    def busy(self) -> bool:
        """Work of its own in flight (the controller stays up for it)."""

    def recover(self, live_jobs: set[int]) -> None:
        """At start: let go of what jobs no longer live hold; resume the rest."""

    def resync(self) -> None:
        """A turn was undone: its records as stored again."""

    def close(self) -> None:
        """The controller stops."""
