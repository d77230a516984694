"""Mithril as a backend: a job's nodes are the instances of one all-or-nothing spot bid.

``allocate`` is asked each scheduling pass for a Mithril job that passed
every gate. The first time it writes a bid record (with its idempotency key)
and, once that is committed, has the worker thread place the bid; the job
waits with a reason that explains the market (``BidOpen: ...``). When every
instance of the bid is running with an SSH destination, ``allocate`` answers
an ``Allocation`` of whole instances, named after them, reached at their
``ssh_destination``. ``release`` (the job's run is over) and ``withdraw``
(the job left the queue, or a gate closed again) mark the bid "must delete"
in the store before the worker deletes it, so a crash cannot leave it billing.

A spot bid also gets an API key of its own, for the dead-man switch on its
instances (``sflow.mithril.deadman``): recorded with the bid, made before it
(its secret is in the bid's startup script), revoked after the bid is gone.

Every change to a bid record happens in the transaction of the turn that made
it (``BackendContext.write``); every API call happens on the worker thread
after its COMMIT (``BackendContext.after_commit``; ``sflow.mithril.worker``).
``apply`` turns the worker's reports into record changes and into events for
whoever runs it (sflow's controller): a pending job's bid moved, a running
job's bid is being preempted, a job's cost changed, the market arrived.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict

from sflow.backends.base import (Allocation, BackendContext, Changed, Checked, CostSettled, Deferred, Event,
                                 MarketReady, Pending, Preempting, Refused)
from sflow.backends.local import Need
from sflow.backends.mithril_reserved import READY, ReservedCapacity, is_reserved
from sflow.errors import MithrilError, SflowError
from sflow.exec.layout import block_layout
from sflow.mithril import deadman, translate
from sflow.mithril.client import load_api_key, new_idempotency_key
from sflow.mithril.fetch import load_settings
from sflow.mithril.money import dollars
from sflow.mithril.worker import Worker
from sflow.mithril import bids
from sflow.mithril.bids import BidRow, KeyRow
from sflow.records import AllocatedNode, INFINITE

FRESH_CATALOG = 30.0  # seconds a fetched market is good for checking submissions
USABLE_CATALOG = 600.0  # older than this, a submission waits for a new one
ERROR_SHOWN = 5.0  # a failed fetch is reported to the submissions waiting for it, then retried
BILLABLE = ("STATUS_RUNNING", "STATUS_PREEMPTING")  # Mithril bills running instances, not start-up
BROKEN = ("STATUS_ERROR",)  # an instance that will never come up
RECHECK_SECONDS = 30.0  # a waiting Mithril job is planned again at least this often
# How long a vanished step waits for Mithril's records when Mithril does not answer, before it is a
# node failure: SLURM's default SlurmdTimeout, the time it takes to declare a silent node down.
LOOK_BACK_PATIENCE = 300.0
# Mithril's settings on this machine (the API key, its address) never reach a job's environment.
WITHHELD_ENV = ("MITHRIL_",)


def gpus_held(request, tasks: list[int], capacity: int) -> list[tuple[int, ...]]:
    """Each instance's GPUs the job may use, as SLURM grants them on a node: all with --exclusive,
    else what it asked (none when it asked none), though the whole instance is billed to it.
    A job that named its instance type and asked no GPUs chose that machine for its GPUs: all of them."""
    need = Need.of(request)
    chose_machine = request.cloud.instance_type and not (need.gpus_total or need.gpus_per_node or need.gpus_per_task)
    if request.exclusive or chose_machine:
        return [tuple(range(capacity))] * len(tasks)
    held, left = [], need.gpus_total
    for count in tasks:
        wanted = min(capacity, max(need.gpus_per_node, need.gpus_per_task * count))
        extra = min(left, capacity - wanted)  # --gpus=N fills the first instances first, as on a cluster
        left -= extra
        held.append(tuple(range(wanted + extra)))
    return held


def node_name(instance: dict) -> str:
    """A SLURM node name from an instance's name (or id): letters, digits, '.', '_' and '-'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", instance.get("name") or "").strip("-")
    return name or re.sub(r"[^A-Za-z0-9-]+", "-", instance["fid"])


def run_name(job, task: int | None = None) -> str:
    """What a run's bid (or reservation) is called: ``sflow-12``, ``sflow-12_3`` for an array task, ``r<n>`` after
    restart ``n``; its instances are named after it."""
    rec = job.rec
    if task is not None:
        base = f"sflow-{rec.job_id}_{task}"
    elif rec.array_task_id is not None and rec.array_job_id is not None:
        base = f"sflow-{rec.array_job_id}_{rec.array_task_id}"
    else:
        base = f"sflow-{rec.job_id}"
    return base + (f"r{rec.restart_count}" if rec.restart_count else "")


class MithrilBackend(ReservedCapacity):
    name = "mithril"
    on_this_machine = False
    recheck_seconds = RECHECK_SECONDS

    def __init__(self, context: BackendContext, settings=None, api_key: str | None = None):
        """``settings``, ``api_key``: given by a caller with its own configuration (the burst service);
        else this user's (``load_settings``, ``load_api_key``)."""
        self.context = context
        self.settings = load_settings() if settings is None else settings
        self.api_key = api_key
        if api_key is None:
            try:
                self.api_key = load_api_key()
            except Exception:  # an unreadable config file: said when a call needs the key
                self.api_key = None
        self.wake_fd, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.worker = Worker(context.home, self.settings, self.api_key, self._wake_w)
        self.rows: dict[str, BidRow] = {}  # live bid records by idempotency key
        self.costing: dict[str, BidRow] = {}  # deleted bids whose billing record is still to be read
        self.keys: dict[str, KeyRow] = {}  # dead-man keys not yet revoked, by their bid's idempotency key
        self.markets: dict[str, tuple] = {}  # key -> (clearing cents, free capacity), last seen
        # Bids under a vanished step whose instances' status history was asked for, by idempotency
        # key: None until it answers, then whether the market took them back (None again: no answer).
        self.looked_back: dict[str, bool | None] = {}
        self.catalog = None
        self.catalog_time = 0.0
        self.catalog_error: tuple[float, str] | None = None
        self.catalog_asked = False

    # ------------------------------------------------------------ the seam

    def check(self, request, partitions: list, limit: int, env: dict, now: float) -> Checked:
        """The translator's plan against the market (raises its refusal, or ``Deferred`` until there is
        a market): kept with the job, and bid as it is."""
        if limit is not None and limit != request.time_limit:
            request = request.model_copy(update={"time_limit": limit})  # the partition's limit bounds the cost
        plan = translate.plan(request, self.catalog_for_submit(env, now), self.settings.plan)
        return Checked(plan=asdict(plan), num_nodes=plan.instance_quantity, limit_price=plan.limit_price,
                       partition_node_limits=False)

    def allocate(self, job, request, now: float | None = None, task: int | None = None) -> Allocation | Pending:
        """``task``: an array task not yet split off its array's record (its bid is the task's own).
        ``request`` None: ``job.plan`` says everything, and each instance is one node with 1 task and
        all its GPUs."""
        now = time.time() if now is None else now
        row = self.current(job.job_id, task)
        if row is None:
            plan = translate.Plan.from_dict(job.plan) if job.plan else self._plan(request, now, job.rec.time_limit)
            if isinstance(plan, Pending):
                return plan
            extra = {"task": task, "array": job.rec.array_job_id} if job.rec.array_job_id is not None else {}
            if task is None and job.rec.array_task_id is not None:
                extra["task"] = job.rec.array_task_id
            if plan.capacity == "reserved":
                return self._place_reservation(job, plan, now, run_name(job, task), extra)
            self._place(job, plan, now, run_name(job, task), extra)
            return Pending("BidPlacing")
        allocation = self._allocation(job, request, row)
        if allocation is None:
            return Pending(self.reason(row))
        row.started = now
        self._save(row)
        return allocation

    def release(self, allocation: Allocation) -> None:
        self.withdraw(allocation.job_id)

    def restore(self, allocation: Allocation) -> None:
        pass  # what is in use is the bid records, which the store keeps

    # ------------------------------------------------------------ bids

    def current(self, job_id: int, task: int | None = None) -> BidRow | None:
        """The job's live bid, not being deleted (the newest); of one array task when ``task`` is given."""
        found = [r for r in self.rows.values() if r.job_id == job_id and not r.must_delete
                 and (task is None or r.plan.get("task") == task)]
        return max(found, key=lambda r: r.created) if found else None

    MARKET_GONE = ("STATUS_PREEMPTING", "STATUS_PREEMPTED", "STATUS_TERMINATED", "STATUS_STOPPING")

    def lost_to_market(self, job) -> bool:
        """The bid under ``job`` is being taken back (or its instances already were): the market's
        doing, so a step that vanished with them was preempted, not a node failure."""
        row = self.current(job.job_id)
        if row is None:
            return False
        if row.status in ("Preempting", "Open") or self.looked_back.get(row.idempotency_key) is True:
            return True
        mine = self._instances_of(job)
        return any(i["fid"] in mine and i["status"] in self.MARKET_GONE for i in row.instances)

    def look_back(self, job) -> None:
        """A step of ``job`` vanished before any look at its bid saw a notice: ask Mithril's status
        history whether its instances were preempted all the same (a notice that ran out between two
        looks, or while the looks failed)."""
        row = self.current(job.job_id)
        if row is None or row.bid_id is None or is_reserved(row) or row.idempotency_key in self.looked_back:
            return
        self.looked_back[row.idempotency_key] = None
        # Asked at once, not after the commit: no record depends on the answer.
        self.worker.look_back(row.idempotency_key, row.bid_id, sorted(self._instances_of(job)))

    def still_looking(self, job) -> bool:
        """Mithril's records on ``job``'s instances were asked for and have not answered yet."""
        row = self.current(job.job_id)
        return row is not None and row.idempotency_key in self.looked_back \
            and self.looked_back[row.idempotency_key] is None

    @staticmethod
    def _instances_of(job) -> set[str]:
        return {n.instance for n in (job.alloc.nodes if job.alloc else []) if n.instance}

    def withdraw(self, job_id: int, task: int | None = None) -> None:
        """Delete the job's bids (one array task's, with ``task``): committed as "must delete" first, then
        asked of the worker."""
        for row in [r for r in self.rows.values() if r.job_id == job_id and not r.must_delete
                    and (task is None or r.plan.get("task") == task)]:
            row.must_delete = True
            self._save(row)
            if is_reserved(row):
                self._release_reservation(row)
                continue
            key, bid_id, spec = row.idempotency_key, row.bid_id, self._spec(row)
            self.context.after_commit(lambda k=key, b=bid_id, s=spec: self.worker.delete(k, b, s))

    def task_rows(self, array_job_id: int) -> dict[int, BidRow]:
        """The live bids of an array's tasks (started or not, deleting or not), by task index."""
        mine = [r for r in self.rows.values() if r.plan.get("array") == array_job_id and r.plan.get("task") is not None]
        # A task's bid being deleted counts only when it has no other: the live one wins.
        return {r.plan["task"]: r for r in sorted(mine, key=lambda r: not r.must_delete)}

    def split_task(self, array_job_id: int, task: int, task_job_id: int) -> None:
        """An array task started under its own job id: its bid follows it."""
        for row in self.rows.values():
            if row.job_id == array_job_id and row.plan.get("task") == task and not row.must_delete:
                row.job_id = task_job_id
                self._save(row)

    def record_outcome(self, job_id: int, run: int, outcome: str) -> None:
        """How the job's run on its bids ended (the first word stays: PREEMPTED, then REQUEUED)."""
        self.context.write()
        bids.record_outcome(self.context.conn, job_id, run, outcome)
        for row in self.rows.values():
            if row.job_id == job_id and row.run == run and row.outcome is None:
                row.outcome = outcome

    def busy(self) -> bool:
        return bool(self.rows or self.costing or self.keys) or self.worker.busy()

    def _plan(self, request, now: float, time_limit: int | None = None):
        """The translator's plan for a job stored without one (queued by a version that planned at
        each bid), or why the job waits."""
        if self.catalog is None or now - self.catalog_time > 2 * FRESH_CATALOG:
            self.refresh_catalog()
            if self.catalog is None:
                return Pending("BidPlacing")
        if request.time_limit is None and time_limit is not None:  # the partition's limit sizes a reservation
            request = request.model_copy(update={"time_limit": time_limit})
        try:
            return translate.plan(request, self.catalog, self.settings.plan)
        except SflowError as err:  # the market moved since submission: wait for it to move back
            return Pending(f"MithrilRefused: {err}")

    def _place(self, job, plan, now: float, name: str, extra: dict) -> None:
        row = BidRow(
            idempotency_key=new_idempotency_key(), job_id=job.job_id, run=job.rec.restart_count, status="Placing",
            plan={"type_id": plan.instance_type_id, "type_name": plan.instance_type, "region": plan.region,
                  "quantity": plan.instance_quantity, "gpus": plan.gpus_per_instance, "gpu_type": plan.gpu_type,
                  "cpus": plan.cpus_per_instance, "memory_gb": plan.memory_gb_per_instance, "name": name,
                  **extra},
            limit_cents=plan.limit_price_cents, created=now)
        self.rows[row.idempotency_key] = row
        self._save(row)
        if self.settings.deadman is not None:
            watch = deadman.plan_for(self.settings, self._limit_seconds(job))
            key_row = KeyRow(row.idempotency_key, f"sflow-deadman-{row.idempotency_key}",
                             now + deadman.key_lifetime(self.settings, watch), watch, now)
            self.keys[row.idempotency_key] = key_row
            bids.save_key(self.context.conn, key_row)  # in the bid's transaction: no key is made unrecorded
        key, spec = row.idempotency_key, self._spec(row)
        # Only once the key is on disk may the create be sent.
        self.context.after_commit(lambda: self.worker.create(key, spec))

    def _limit_seconds(self, job) -> float | None:
        """The job's time limit (else its partition's MaxTime) in seconds; None when unlimited."""
        limit = job.rec.time_limit
        if limit is None or limit >= INFINITE:  # a partition gone since submission: the documented cap stands
            limit = self.context.partition_max_time(job.rec.partition)
        return None if limit is None or limit >= INFINITE else limit * 60.0

    def _spec(self, row: BidRow) -> dict:
        plan = row.plan
        spec = {"name": row.name, "region": plan["region"], "type_id": plan["type_id"],
                "limit_cents": row.limit_cents, "quantity": plan["quantity"]}
        key_row = self.keys.get(row.idempotency_key)
        if key_row is not None:
            spec["deadman"] = {"name": key_row.name, "expires": key_row.expires, "watch": key_row.watch,
                               "secret": key_row.secret}
        return spec

    def _key_made(self, key: str, key_fid: str, secret: str) -> list[Event]:
        """The bid's key exists: recorded (secret included, for the create's retries), then the bid is
        asked for, unless it was withdrawn meanwhile (its delete finds no bid, and the key is revoked)."""
        key_row = self.keys.get(key)
        if key_row is None:
            return []
        key_row.key_fid, key_row.secret = key_fid, secret
        self.context.write()
        bids.save_key(self.context.conn, key_row)
        row = self.rows.get(key)
        if row is not None and not row.must_delete and row.bid_id is None:
            spec = self._spec(row)
            self.context.after_commit(lambda: self.worker.create(key, spec))
        return []

    def _revoke_key(self, key: str) -> None:
        """The bid is gone: its key goes too (after the commit that records the bid's end)."""
        key_row = self.keys.get(key)
        if key_row is not None:
            fid, name = key_row.key_fid, key_row.name
            self.context.after_commit(lambda: self.worker.revoke_key(key, fid, name))

    def _key_revoked(self, key: str, when: float) -> None:
        key_row = self.keys.pop(key, None)
        if key_row is not None:
            key_row.revoked, key_row.secret = when, None
            self.context.write()
            bids.save_key(self.context.conn, key_row)

    def _save(self, row: BidRow) -> None:
        self.context.write()
        bids.save(self.context.conn, row)

    def _allocation(self, job, request, row: BidRow) -> Allocation | None:
        """Whole instances, once all of them run and can be reached."""
        plan = row.plan
        ready = [i for i in row.instances if i["status"] == "STATUS_RUNNING" and i.get("ssh")]
        if row.status != READY.get(plan.get("capacity"), "Allocated") or row.bid_id is None \
                or len(ready) < plan["quantity"]:
            return None
        ready.sort(key=lambda i: (i.get("name") or "", i["fid"]))
        cpus = max(1, plan["cpus"])
        if request is None:  # whole machines for someone else's scheduler (a burst node each): all of each
            tasks, gpus = [1] * len(ready), [tuple(range(plan["gpus"]))] * len(ready)
        else:
            tasks = block_layout(max(1, request.ntasks), [cpus] * len(ready), max(1, request.cpus_per_task),
                                 request.ntasks_per_node)
            gpus = gpus_held(request, tasks, plan["gpus"])
        nodes = [AllocatedNode(node_name(inst), cpus, plan["memory_gb"] * 1024, held, "",
                               inst["ssh"], count, instance=inst["fid"])
                 for inst, count, held in zip(ready, tasks, gpus)]
        switch = self.settings.deadman
        return Allocation(job.job_id, nodes, exclusive=True, withheld_env=WITHHELD_ENV,
                          lease_renew_seconds=switch["lease_renew_seconds"] if switch else None)

    def reason(self, row: BidRow) -> str:
        """Why a job waits on its bid, in one line for squeue's %R."""
        if is_reserved(row):
            return self.reservation_reason(row)
        if row.bid_id is None:
            return f"MithrilUnavailable: {row.error}" if row.error else "BidPlacing"
        plan = row.plan
        if row.status == "Open":
            clearing, capacity = self.markets.get(row.idempotency_key, (None, None))
            if capacity is not None and capacity < plan["quantity"]:
                return (f"BidOpen: waiting for {plan['quantity']} x {plan['type_name']} in {plan['region']} "
                        f"({capacity} free)")
            if clearing is not None and clearing > row.limit_cents:
                return f"BidOpen: limit {dollars(row.limit_cents)}/hr below spot {dollars(clearing)}/hr"
            return "BidOpen: waiting for the next auction"
        if row.status == "Allocated":
            return "BidAllocated: instances starting"
        return f"Bid{row.status}"

    # ------------------------------------------------------------ the market

    def refresh_catalog(self) -> None:
        if not self.catalog_asked:
            self.catalog_asked = True
            self.worker.catalog()  # no record depends on it: asked at once

    def catalog_for_submit(self, env: dict, now: float):
        """The market to check a submission against; raises ``Deferred`` until one has been fetched."""
        self.adopt_credentials(env)
        age = now - self.catalog_time
        if self.catalog is not None and age < FRESH_CATALOG:
            return self.catalog
        if self.catalog is not None and age < USABLE_CATALOG:
            self.refresh_catalog()
            return self.catalog  # a failed refresh must not refuse what the market of minutes ago takes
        if self.catalog_error is not None and now - self.catalog_error[0] < ERROR_SHOWN:
            raise MithrilError(self.catalog_error[1])
        self.refresh_catalog()
        raise Deferred()

    def adopt_credentials(self, env: dict) -> None:
        """A controller started without the API key (or address) takes the submitter's, in memory only."""
        changed = False
        if not self.api_key and (env.get("MITHRIL_API_KEY") or "").strip():
            self.api_key = env["MITHRIL_API_KEY"].strip()
            changed = True
        if not self.settings.api_url and env.get("MITHRIL_API_URL"):
            self.settings.api_url = env["MITHRIL_API_URL"]
            changed = True
        if changed:
            self.worker.set_api_key(self.api_key)

    # ------------------------------------------------------------ what the worker saw

    def events(self, now: float) -> list[Event]:
        """What the worker reported since the last call, recorded; what the controller must do about it."""
        reports = self.worker.take_reports()
        if not reports:
            return []
        # A job's cost is read once every report is recorded: what the bids say after all of them.
        return [CostSettled(e.job_id, self.job_cost_cents(e.job_id)) if isinstance(e, CostSettled) else e
                for e in self.apply(reports, now)]

    @staticmethod
    def _cost(job_id: int) -> CostSettled:
        """The job's cost changed; ``events`` reads it."""
        return CostSettled(job_id, None)

    @staticmethod
    def _refused(job_id: int, message: str) -> Refused:
        return Refused(job_id, f"MithrilRefused: {message.removeprefix('mithril: ')}")

    def apply(self, reports: list, now: float) -> list[Event]:
        """Record what the worker reported; the events for the controller (costs still to be read)."""
        events: list[Event] = []
        for report in reports:
            kind = report[0]
            if kind == "catalog":
                _, catalog, error = report
                self.catalog_asked = False
                if catalog is not None:
                    self.catalog, self.catalog_time, self.catalog_error = catalog, now, None
                else:
                    self.catalog_error = (now, error)
                events.append(MarketReady())
                continue
            if kind.startswith("res_"):
                events += self.apply_reservation(report, now)
                continue
            if kind == "final_cost":
                events += self._billed(report[1], report[2])
                continue
            row = self.rows.get(report[1]) if kind != "bids" else None
            if kind == "key_made":
                events += self._key_made(report[1], report[2], report[3])
            elif kind == "key_revoked":
                self._key_revoked(report[1], report[2])
            elif kind == "created" and row is not None:
                row.bid_id, row.status, row.error = report[2], report[3], None
                self._save(row)
                events.append(Changed(row.job_id))
            elif kind == "create_failed" and row is not None:
                row.error = report[2]
                if report[3]:  # refused for good: there is no bid
                    row.status, row.ended = "Refused", now
                    self.rows.pop(row.idempotency_key, None)
                    self._revoke_key(row.idempotency_key)
                    if not row.must_delete:
                        events.append(self._refused(row.job_id, report[2]))
                else:
                    events.append(Changed(row.job_id))
                self._save(row)
            elif kind in ("delete_failed", "poll_failed") and row is not None:
                if row.error != report[2]:
                    row.error = report[2]
                    self._save(row)
            elif kind == "looked_back":
                if report[1] in self.looked_back:
                    self.looked_back[report[1]] = report[2]
            elif kind == "deleted" and row is not None:
                row.bid_id = row.bid_id or report[3]
                events += self._deleted(row, report[2])
            elif kind == "bids":
                for key, snapshot in report[1].items():
                    row = self.rows.get(key)
                    if row is not None:
                        events += self._observe(row, snapshot)
        return events

    def _deleted(self, row: BidRow, when: float) -> list[Event]:
        self._accrue(row, when)  # billing stops when the bid is deleted
        row.instances = [{**i, "status": "STATUS_TERMINATED"} for i in row.instances]
        row.status, row.ended, row.must_delete, row.error = "Terminated", when, False, None
        self.rows.pop(row.idempotency_key, None)
        self.markets.pop(row.idempotency_key, None)
        self.looked_back.pop(row.idempotency_key, None)
        if not row.cost_settled:  # the worker reads its billing record next
            self.costing[row.idempotency_key] = row
        self._save(row)
        self._revoke_key(row.idempotency_key)
        return [self._cost(row.job_id), Changed(row.job_id)]

    def _billed(self, key: str, cents: float | None) -> list[Event]:
        """A deleted bid's cost as Mithril billed it replaces the estimate from the looks (``None``: no
        record to be had, the estimate stands)."""
        row = self.costing.pop(key, None)
        if row is None:
            return []
        if cents is not None:
            row.cost_cents = cents
        row.cost_final = True
        self._save(row)
        return [self._cost(row.job_id), Changed(row.job_id)]

    def _observe(self, row: BidRow, snapshot: dict) -> list[Event]:
        when = snapshot.get("when") or time.time()
        before = (row.status, row.price_cents, [(i["fid"], i["status"], i.get("ssh")) for i in row.instances])
        cost_before = round(row.cost_cents)
        reason_before = self.reason(row)
        last_seen = row.accrued_to
        was_running = {i["fid"] for i in row.instances if i["status"] == "STATUS_RUNNING"}
        self._accrue(row, when, {i["fid"]: i["status"] for i in snapshot["instances"]})
        status = snapshot["status"]
        seen = {i["fid"]: i for i in row.instances}
        instances, started_running = [], []
        for inst in snapshot["instances"]:
            since = seen.get(inst["fid"], {}).get("running_since")
            if since is None and inst["status"] == "STATUS_RUNNING":
                # Billing starts when the instance runs (start-up is free), some time since the last
                # look: halfway is unbiased, where "now" undercounted every instance by half a poll.
                since = (last_seen + when) / 2 if last_seen is not None and last_seen < when else when
                started_running.append(since)
            instances.append({**inst, "running_since": since})
        row.instances = instances
        clearing = snapshot.get("clearing")
        self.markets[row.idempotency_key] = (clearing, snapshot.get("capacity"))
        if status == "Allocated" and clearing is not None:
            row.price_cents = min(clearing, row.limit_cents)  # second price: never above the limit
        # Until the market is seen the price stays unknown (what flow run says it won at is never a
        # guess); the running estimate meanwhile counts the limit, the most it can cost.
        # A bid under notice keeps the price it had: it is leaving, not bidding.
        row.status = "Terminated" if status == "Gone" else status
        price = row.price_cents if row.price_cents is not None else row.limit_cents
        if price is not None:  # from when each newly running instance started to now
            row.cost_cents += price * sum(when - since for since in started_running) / 3600.0
        after = (row.status, row.price_cents, [(i["fid"], i["status"], i.get("ssh")) for i in row.instances])
        if after != before or round(row.cost_cents) != cost_before:
            self._save(row)
        events: list[Event] = []
        if round(row.cost_cents) != cost_before:
            events.append(self._cost(row.job_id))
        if row.must_delete:
            return events
        key_row = self.keys.get(row.idempotency_key)
        if row.started is None:
            if row.status == "Allocated" and any(i["status"] in BROKEN for i in row.instances):
                row.outcome = "INSTANCE_ERROR"  # won, but an instance failed: bid again
                self.withdraw(row.job_id, task=row.plan.get("task"))
                events.append(Changed(row.job_id))
            elif row.status == "Open" and key_row is not None and deadman.must_rebid(key_row.watch, key_row.expires,
                                                                                        when):
                row.outcome = "REPLACED"  # waited so long that its key could expire during the run: a fresh one
                self.withdraw(row.job_id, task=row.plan.get("task"))
                events.append(Changed(row.job_id))
            elif after != before or self.reason(row) != reason_before:
                events.append(Changed(row.job_id))
        elif row.status in ("Preempting", "Open") or was_running - {
                i["fid"] for i in row.instances if i["status"] == "STATUS_RUNNING"}:
            # Open again: the notice ran out unseen. An instance the job runs on that stopped
            # running is the same, even with the bid Allocated again (a new allocation between two
            # looks), or when the job was started on a look already stale.
            events.append(Preempting(row.job_id))
        return events

    def _accrue(self, row: BidRow, until: float, now_seen: dict | None = None) -> None:
        """Add price x billed instance time since the last accrual (the previous snapshot's view).

        ``now_seen`` (instance id -> status, the new snapshot's): an instance no longer billed there
        stopped some time since the last look, counted as halfway (a notice that ran out unseen)."""
        price = row.price_cents if row.price_cents is not None else row.limit_cents
        if price is not None:
            for inst in row.instances:
                since = inst.get("running_since")
                if since is None or inst["status"] not in BILLABLE:
                    continue
                start = max(since, row.accrued_to or since)
                end = until
                if now_seen is not None and now_seen.get(inst["fid"]) not in BILLABLE:
                    end = (start + until) / 2
                if end > start:
                    row.cost_cents += price * (end - start) / 3600.0
        row.accrued_to = until

    def job_cost_cents(self, job_id: int) -> float | None:
        """Every run's cost in fractional cents, as billed: a short job's is less than a cent."""
        return bids.job_cost_cents(self.context.conn, job_id)

    # ------------------------------------------------------------ start, stop, crash

    def reload(self) -> None:
        """The live records from the store (at start, and after a turn was undone)."""
        self.rows = {r.idempotency_key: r for r in bids.live(self.context.conn)}
        self.costing = {r.idempotency_key: r for r in bids.unsettled(self.context.conn)}
        self.keys = {k.idempotency_key: k for k in bids.keys(self.context.conn, "revoked IS NULL")}

    def kick(self) -> None:
        """Hand the worker every live record again: deletes, creates never answered, bids to watch.
        Repeats are harmless: creates carry their keys, a second delete finds nothing."""
        for row in self.costing.values():
            self.worker.final_cost(row.idempotency_key, row.bid_id, row.ended)
        for key, key_row in self.keys.items():
            if key not in self.rows:  # its bid is gone (or never was)
                self.worker.revoke_key(key, key_row.key_fid, key_row.name)
        for row in self.rows.values():
            if is_reserved(row):
                self._send_reservation(row)
                continue
            spec = self._spec(row)
            if row.must_delete:
                self.worker.delete(row.idempotency_key, row.bid_id, spec)
            elif row.bid_id is None:
                if "deadman" in spec and self.keys[row.idempotency_key].key_fid is None:
                    spec["deadman"]["lost"] = True  # a dead controller may have made the key: look for it
                self.worker.create(row.idempotency_key, spec)
            else:
                self.worker.watch(row.idempotency_key, row.bid_id)

    def recover(self, live_jobs: set[int]) -> None:
        """At start: bids of jobs that are over are deleted; every live bid goes back to the worker."""
        for row in list(self.rows.values()):
            if not row.must_delete and row.job_id not in live_jobs:
                self.withdraw(row.job_id)
        self.kick()

    def resync(self) -> None:
        self.reload()
        self.kick()

    @property
    def verdict_seconds(self) -> float:
        """A vanished step's bid is looked at within two polls: how long to wait for that look."""
        return 2 * self.settings.poll_seconds + 1.0

    verdict_patience = LOOK_BACK_PATIENCE  # after that, how long Mithril's records are waited for

    def close(self, timeout: float = 5.0) -> None:
        self.worker.close(timeout)


__all__ = ["BILLABLE", "MithrilBackend", "node_name", "run_name"]
