"""The burst service: slurmctld's requests turned into Mithril bids, won instances into SLURM nodes.

One runs per state directory (an exclusive flock); ``flow burst serve`` runs it in
the foreground and the programs start the same loop detached when nobody holds
the lock. Each turn, in one transaction of the store:

- requests are taken in order. A resume groups its nodes by the job
  SLURM_RESUME_FILE says got them (a node of no job is a group of its own);
  each group is one all-or-nothing bid of that many instances, owned by a
  burst-local id (the bid's ``job_id`` in the capacity layer's tables). A
  suspend gives a group's bid back once all its nodes are suspended; a
  resume-fail gives it back at once.
- the capacity layer (``MithrilBackend``) is asked for each group's nodes; once
  it answers an ``Allocation`` the group's nodes are mapped to the instances in
  order and each is handed to a ``NodeBooter`` (off the loop).
- a bid not won ``timeout_margin`` seconds before ``ResumeTimeout`` is given
  back first, and its nodes set DOWN with the market's reason for the admin.
- what the capacity layer reports: preemption (the jobs signalled, requeued,
  their nodes powered down), costs (the job's AdminComment), refusals.

SLURM commands run after the turn's commit, through ``Slurm`` (``sflow.burst.slurm``).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import queue
import selectors
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Callable

from sflow.backends.base import (Allocation, BackendContext, CostSettled, NodeLost, Pending, Preempting, Refused)
from sflow.burst import store
from sflow.burst.booter import NodeBooter, SshBooter
from sflow.burst.programs import lock_path, wake_path
from sflow.burst.settings import BurstError, BurstSettings, load, read_startup_script
from sflow.burst.slurm import Slurm, SlurmCommandFailed, limit_price_of, signal_of
from sflow.errors import SflowError
from sflow.mithril.money import dollars
from sflow.mithril.translate import Plan, parse_limit_price
from sflow.slurm.values import InvalidValue, expand_hostlist

TICK_SECONDS = 1.0
LOCK_PATIENCE = 1.0  # seconds a starting service waits out a program's probe of its lock
PREEMPTED_REASON = "preempted by the Mithril spot market"
RESUME_FAILED_REASON = "not registered within ResumeTimeout"


@dataclass
class OwnerRecord:
    """What the capacity layer reads of a job's record, for a group of burst nodes."""

    job_id: int
    partition: str
    restart_count: int = 0
    array_job_id: int | None = None
    array_task_id: int | None = None
    time_limit: int | None = None


@dataclass
class BidOwner:
    """A group of nodes as the capacity layer sees a job: its id, its plan (a ``Plan`` as a dict), its record."""

    job_id: int
    plan: dict
    rec: OwnerRecord


def cost_text(cents: float) -> str:
    """A job's AdminComment: what its Mithril instances cost, ``mithril_cost=$1.23``."""
    return f"mithril_cost=${cents / 100:.2f}"


def mithril_settings(settings: BurstSettings):
    """The capacity layer's settings from burst.toml: no dead-man switch (no sflow agent renews a
    lease on a burst node: slurmctld watches it), and sflow not installed by the bid: its startup
    script is the admin's ``startup_script`` file, if any (slurmd and munge for the image)."""
    from sflow.mithril.fetch import Settings  # deferred: brings the API client

    env = os.environ
    poll = settings.poll_seconds
    return Settings(api_url=env.get("MITHRIL_API_URL") or settings.api_url,
                    project=env.get("MITHRIL_PROJECT") or settings.project,
                    poll_seconds=poll if poll else 5.0, install="none", deadman=None,
                    own_startup_script=read_startup_script(settings))


def api_key(settings: BurstSettings) -> str | None:
    from sflow.mithril.client import load_api_key

    env = {"MITHRIL_API_KEY": os.environ.get("MITHRIL_API_KEY", "")}
    if settings.api_key_file:
        env["SFLOW_CONFIG"] = settings.api_key_file
    try:
        return load_api_key(env)
    except Exception:  # an unreadable key file: the API says so when a call needs it
        return None


def mithril_backend(context: BackendContext, settings: BurstSettings):
    from sflow.backends.mithril import MithrilBackend

    return MithrilBackend(context, mithril_settings(settings), api_key(settings))


def log(message: str) -> None:
    print(f"[{time.strftime('%Y-%m-%dT%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BurstService:
    def __init__(self, settings: BurstSettings, slurm: Slurm | None = None, booter: NodeBooter | None = None,
                 backend_factory: Callable = mithril_backend, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.slurm = slurm or Slurm(settings.slurm_bin, settings.scontrol)
        self.booter = booter or SshBooter(settings.state_dir, settings.boot_command)
        self.clock = clock
        self.conn = store.open_store(settings.state_dir)
        self.in_transaction = False
        self.effects: list[Callable[[], None]] = []
        context = BackendContext(conn=self.conn, home=settings.state_dir, write=self.write,
                                 after_commit=self.effects.append, partition_max_time=lambda name: None)
        self.backend = backend_factory(context, settings)
        self.partition_of: dict[str, str] = {}
        for part in settings.partitions.values():
            for name in expand_hostlist(part.nodes):
                self.partition_of[name] = part.name
        self.groups = {g.owner: g for g in store.groups(self.conn, live_only=True)}
        self.nodes = store.nodes(self.conn)
        self.booting: set[int] = set()  # groups whose nodes are being booted now
        # Each bidding group's plan, until its bid record holds it (recorded in the same turn).
        self.owner_plans: dict[int, dict] = {}
        self.boot_results: queue.Queue = queue.Queue()
        self.boot_wake_r, self.boot_wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sflow-burst-boot")
        self.conf_server = settings.conf_server or socket.getfqdn()
        self.started = False

    # ------------------------------------------------------------ the turn's transaction

    def write(self) -> None:
        if not self.in_transaction:
            store.begin(self.conn)
            self.in_transaction = True

    def commit(self) -> None:
        if self.in_transaction:
            store.commit(self.conn)
            self.in_transaction = False
        effects, self.effects[:] = list(self.effects), []
        for effect in effects:
            try:
                effect()
            except SlurmCommandFailed as err:
                log(f"slurm: {err}")
            except Exception as err:  # one failed effect must not stop the others
                log(f"error: {type(err).__name__}: {err}")

    def later(self, effect: Callable[[], None]) -> None:
        self.effects.append(effect)

    def save_group(self, group: store.Group) -> None:
        self.write()
        store.save_group(self.conn, group)

    def save_node(self, node: store.Node) -> None:
        self.write()
        store.save_node(self.conn, node)
        self.nodes[node.name] = node

    # ------------------------------------------------------------ start and turns

    def start(self) -> None:
        """Bids of groups that are over are deleted; every live bid is followed again."""
        self.backend.reload()
        self.backend.recover(set(self.groups))
        self.commit()
        self.started = True

    def turn(self) -> None:
        if not self.started:
            self.start()
        now = self.clock()
        for request in store.untaken(self.conn):
            self.write()
            store.mark_taken(self.conn, request.seq, now)
            handler = {"resume": self.resume, "suspend": self.suspend, "resume_fail": self.resume_fail}[request.kind]
            try:
                names = expand_hostlist(request.hostlist)
            except InvalidValue:
                log(f"request {request.seq}: not a hostlist: {request.hostlist}")
                continue
            handler(request, names, now)
        for event in self.backend.events(now):
            self.apply_event(event, now)
        self.take_boot_results(now)
        if self.backend.catalog is None and any(g.state == "planning" for g in self.groups.values()):
            self.backend.refresh_catalog()
        for group in list(self.groups.values()):
            self.advance(group, now)
        self.commit()

    def advance(self, group: store.Group, now: float) -> None:
        if group.state == "preempting":
            if now >= (group.deadline or 0) or not self._jobs_running(group):
                self.requeue_preempted(group, now)
            return
        if group.state == "planning" and self.backend.catalog is not None:
            self.place(group, now)
        if group.state in ("planning", "bidding") and \
                now - group.created >= self.settings.resume_timeout - self.settings.timeout_margin:
            self.give_up(group, now)
            return
        if group.state in ("bidding", "booting") and group.owner not in self.booting:
            self.allocate(group, now)

    # ------------------------------------------------------------ requests

    def resume(self, request: store.Request, names: list[str], now: float) -> None:
        wanted = [n for n in names if n in self.partition_of]
        for name in sorted(set(names) - set(wanted)):
            log(f"resume {name}: not a node of any burst partition in {self.settings.path}")
        # slurmctld may run ResumeProgram again for nodes already coming (after its restart).
        wanted = [n for n in wanted if not self._live_owner(n)]
        grouped: list[tuple[int | None, list[str]]] = []
        taken: set[str] = set()
        for job in (request.payload or {}).get("jobs") or []:
            try:
                # 22.05 writes "nodes"; later releases split it into nodes_resume and nodes_alloc.
                job_nodes = expand_hostlist(job.get("nodes") or job.get("nodes_resume") or job.get("nodes_alloc") or "")
                job_id = int(job["job_id"])
            except (InvalidValue, KeyError, TypeError, ValueError):
                continue
            mine = [n for n in job_nodes if n in wanted and n not in taken]
            taken.update(mine)
            by_partition: dict[str, list[str]] = {}
            for name in mine:
                by_partition.setdefault(self.partition_of[name], []).append(name)
            grouped += [(job_id, members) for members in by_partition.values()]
        grouped += [(None, [name]) for name in wanted if name not in taken]
        for job_id, members in grouped:
            group = store.Group(0, self.partition_of[members[0]], job_id, members, request.seq, now, "planning",
                                "BidPlacing: waiting for the market")
            self.write()
            store.new_group(self.conn, group)
            self.groups[group.owner] = group
            for name in members:
                self.save_node(store.Node(name, group.partition, "resuming", now, job_id, group.owner,
                                          reason=group.reason))
            log(f"resume {','.join(members)}" + (f" for job {job_id}" if job_id else "") + f": bid {group.owner}")

    def _live_owner(self, name: str) -> bool:
        node = self.nodes.get(name)
        return node is not None and node.owner in self.groups and node.state in ("resuming", "up")

    def suspend(self, request: store.Request, names: list[str], now: float) -> None:
        owners = set()
        for name in names:
            node = self.nodes.get(name)
            if node is None:
                continue
            node.state, node.since = "suspending", now
            self.save_node(node)
            if node.owner in self.groups:
                owners.add(node.owner)
            else:
                self._idle(node, now)
        for owner in sorted(owners):
            group = self.groups[owner]
            if all(self.nodes[n].state in ("suspending", "idle", "down") for n in group.nodes):
                self.release(group, "released", None, now)

    def resume_fail(self, request: store.Request, names: list[str], now: float) -> None:
        owners = {self.nodes[n].owner for n in names if n in self.nodes and self.nodes[n].owner in self.groups}
        for owner in sorted(owners):
            self.release(self.groups[owner], "failed", RESUME_FAILED_REASON, now, node_state="down")

    def _idle(self, node: store.Node, now: float) -> None:
        node.state, node.since, node.slurm_job, node.reason = "idle", now, None, None
        self.save_node(node)

    def release(self, group: store.Group, state: str, reason: str | None, now: float, node_state: str = "idle") -> None:
        """The group's bid given back (committed as "must delete" before the delete is sent)."""
        self.backend.withdraw(group.owner)
        group.state, group.ended = state, now
        if reason:
            group.reason = reason
        self.save_group(group)
        self.groups.pop(group.owner, None)
        for name in group.nodes:
            node = self.nodes.get(name)
            if node is not None and node.owner == group.owner:
                if node_state == "idle":
                    self._idle(node, now)
                else:
                    node.state, node.since, node.reason = node_state, now, reason
                    self.save_node(node)
        log(f"bid {group.owner} ({','.join(group.nodes)}) given back: {state}" + (f", {reason}" if reason else ""))

    # ------------------------------------------------------------ bidding

    def limit_for(self, group: store.Group, kind) -> tuple[int, str]:
        """(cents per instance-hour, as text): the job's ``#SFLOW --limit-price``, else the partition's."""
        part = self.settings.partitions[group.partition]
        if group.slurm_job is not None:
            script = self.slurm.batch_script(group.slurm_job)
            given = limit_price_of(script)
            if given:
                try:
                    return parse_limit_price(given, kind.gpus, kind.name), given
                except SflowError as err:
                    log(f"job {group.slurm_job}: #SFLOW --limit-price {given}: {err}; the partition's stands")
        return parse_limit_price(part.limit_price, kind.gpus, kind.name), part.limit_price

    def place(self, group: store.Group, now: float) -> None:
        part = self.settings.partitions[group.partition]
        catalog = self.backend.catalog
        kind = catalog.instance_type(part.instance_type) or catalog.instance_type(part.instance_type_name)
        if kind is None:
            self.fail(group, f"MithrilRefused: no instance type {part.instance_type_name} in the catalog", now)
            return
        try:
            cents, _ = self.limit_for(group, kind)
        except SflowError as err:
            self.fail(group, f"MithrilRefused: {err}", now)
            return
        market = catalog.market(kind.id, part.region)
        plan = Plan(instance_type_id=kind.id, instance_type=kind.name, instance_quantity=len(group.nodes),
                    region=part.region, capacity="spot", gpus_per_instance=kind.gpus, gpu_type=kind.gpu_type,
                    cpus_per_instance=kind.cpus, memory_gb_per_instance=kind.memory_gb, limit_price_cents=cents,
                    limit_source="given", spot_price_cents=market.spot_price_cents if market else None,
                    minimum_price_cents=market.minimum_price_cents if market else None, time_limit_minutes=None,
                    max_cost_cents=None, current_cost_cents=None)
        group.state, group.limit_price = "bidding", f"{dollars(cents)}/hr"
        if group.slurm_job is not None:
            shown = self.slurm.show_job(group.slurm_job)
            group.user = shown.get("UserId", "").split("(")[0] or None
            group.account = shown.get("Account") or None
        self.save_group(group)
        self.owner_plans[group.owner] = asdict(plan)

    def owner(self, group: store.Group) -> BidOwner:
        return BidOwner(group.owner, self.owner_plans.get(group.owner) or {}, OwnerRecord(group.owner, group.partition))

    def allocate(self, group: store.Group, now: float) -> None:
        if not self.owner_plans.get(group.owner) and self.backend.current(group.owner) is None:
            group.state = "planning"  # a restart before its bid was recorded: planned again
            self.save_group(group)
            return
        answer = self.backend.allocate(self.owner(group), None, now)
        if isinstance(answer, Pending):
            if answer.reason != group.reason:
                group.reason = answer.reason
                self.save_group(group)
                for name in group.nodes:
                    node = self.nodes[name]
                    node.reason = answer.reason
                    self.save_node(node)
            return
        self.boot(group, answer, now)

    def boot(self, group: store.Group, allocation: Allocation, now: float) -> None:
        """Each node of the group gets the instance at its place, in order, and slurmd on it."""
        group.state, group.reason = "booting", "BidAllocated: booting slurmd"
        self.save_group(group)
        pairs = list(zip(group.nodes, allocation.nodes))
        for name, instance in pairs:
            node = self.nodes[name]
            node.instance, node.address, node.reason = instance.instance, instance.address, group.reason
            self.save_node(node)
        self.booting.add(group.owner)
        owner = group.owner
        self.later(lambda: self.pool.submit(self._boot_all, owner, [(n, i.address, i.instance) for n, i in pairs]))

    def _boot_all(self, owner: int, nodes: list[tuple[str, str, str | None]]) -> None:
        for name, address, instance in nodes:
            try:
                self.booter.boot(name, address, self.conf_server, instance)
                error = None
            except Exception as err:
                error = str(err) or type(err).__name__
            self.boot_results.put((owner, name, error))
        self.boot_results.put((owner, None, None))
        try:
            os.write(self.boot_wake_w, b"!")
        except OSError:
            pass

    def take_boot_results(self, now: float) -> None:
        while True:
            try:
                owner, name, error = self.boot_results.get_nowait()
            except queue.Empty:
                return
            group = self.groups.get(owner)
            if name is None:
                self.booting.discard(owner)
                if group is not None and all(self.nodes[n].state == "up" for n in group.nodes):
                    group.state, group.reason = "up", None
                    self.save_group(group)
                continue
            node = self.nodes.get(name)
            if group is None or node is None or node.owner != owner:
                continue  # given back meanwhile
            if error is None:
                node.state, node.since, node.reason = "up", now, None
                self.save_node(node)
                if self.settings.set_node_addr and node.address:
                    host = node.address.rpartition("@")[2].rsplit(":", 1)[0]
                    self.later(lambda n=name, h=host: self.slurm.update_node([n], NodeAddr=h, NodeHostname=n))
                log(f"{name}: slurmd started on {node.instance} ({node.address})")
            else:
                node.state, node.since, node.reason = "down", now, f"boot failed: {error}"
                self.save_node(node)
                reason = node.reason
                self.later(lambda n=name, r=reason: self.slurm.update_node([n], State="DOWN", Reason=r))
                log(f"{name}: {reason}")

    def give_up(self, group: store.Group, now: float) -> None:
        """Not won before slurmctld gives up: given back first, and the nodes DOWN with the market's reason."""
        row = self.backend.current(group.owner)
        reason = self.backend.reason(row) if row is not None else (group.reason or "BidPlacing")
        nodes = list(group.nodes)
        self.release(group, "timed_out", reason, now, node_state="down")
        self.later(lambda: self.slurm.update_node(nodes, State="DOWN", Reason=reason))

    def fail(self, group: store.Group, reason: str, now: float) -> None:
        nodes = list(group.nodes)
        self.release(group, "failed", reason, now, node_state="down")
        self.later(lambda: self.slurm.update_node(nodes, State="DOWN", Reason=reason))

    # ------------------------------------------------------------ what the capacity layer reports

    def apply_event(self, event, now: float) -> None:
        match event:
            case Preempting(job_id=owner) if owner in self.groups and self.groups[owner].state != "preempting":
                self.preempted(self.groups[owner], now)  # signalled once: the notice is seen at every look
            case CostSettled(job_id=owner, cents=cents) if cents is not None:
                self.cost(owner, cents)
            case Refused(job_id=owner, reason=reason) if owner in self.groups:
                self.fail(self.groups[owner], reason, now)
            case NodeLost(job_id=owner, node=lost) if owner in self.groups:
                group = self.groups[owner]
                names = [n for n in group.nodes if lost in (None, n, self.nodes[n].instance)] or group.nodes
                for name in names:
                    node = self.nodes[name]
                    node.state, node.since, node.reason = "down", now, "instance lost"
                    self.save_node(node)
                self.later(lambda: self.slurm.update_node(names, State="DOWN", Reason="instance lost"))

    def preempted(self, group: store.Group, now: float) -> None:
        """Under the market's notice: the jobs on the group's nodes get their signal now; they are
        requeued, and the nodes powered down and the bid given back, once the jobs end or
        ``preempt_grace`` has passed (a checkpoint takes time; the instances last the notice)."""
        nodes, job = list(group.nodes), group.slurm_job
        group.state, group.reason, group.deadline = "preempting", PREEMPTED_REASON, now + self.settings.preempt_grace
        self.save_group(group)
        for name in nodes:
            node = self.nodes[name]
            node.reason = PREEMPTED_REASON
            self.save_node(node)

        def signal_jobs() -> None:
            for job_id in self._jobs_on(nodes, job):
                sig, batch_only = signal_of(self.slurm.batch_script(job_id))
                try:
                    self.slurm.signal(job_id, sig, batch_only)
                except SlurmCommandFailed as err:
                    log(f"job {job_id}: {err}")

        self.later(signal_jobs)
        log(f"bid {group.owner} ({','.join(nodes)}) preempted: jobs signalled, requeued within "
            f"{self.settings.preempt_grace:.0f} s")

    def requeue_preempted(self, group: store.Group, now: float) -> None:
        nodes, job = list(group.nodes), group.slurm_job

        def requeue_jobs() -> None:
            for job_id in self._jobs_on(nodes, job):
                try:
                    self.slurm.requeue(job_id)
                except SlurmCommandFailed as err:
                    log(f"job {job_id}: {err}")
            self.slurm.update_node(nodes, State="POWER_DOWN_FORCE", Reason=PREEMPTED_REASON)

        self.later(requeue_jobs)
        self.release(group, "preempted", PREEMPTED_REASON, now, node_state="down")

    def _jobs_on(self, nodes: list[str], job: int | None) -> list[int]:
        """The jobs on ``nodes`` now, the one they were resumed for first (requeued even if it ended)."""
        jobs = self.slurm.jobs_on(nodes)
        return jobs if job is None or job in jobs else [job, *jobs]

    def _jobs_running(self, group: store.Group) -> bool:
        """Whether what was signalled still runs: the group's job, else any job on its nodes."""
        try:
            if group.slurm_job is None:
                return bool(self.slurm.jobs_on(list(group.nodes)))
            state = self.slurm.show_job(group.slurm_job).get("JobState", "")
        except SlurmCommandFailed:
            return False
        return state in ("RUNNING", "COMPLETING", "SUSPENDED", "CONFIGURING")

    def cost(self, owner: int, cents: float) -> None:
        rows = [g for g in store.groups(self.conn) if g.owner == owner]
        if not rows:
            return
        group = self.groups.get(owner) or rows[0]
        group.cost_cents = cents
        self.save_group(group)
        if group.slurm_job is None:
            return
        total = sum(g.cost_cents or 0.0 for g in store.groups(self.conn) if g.slurm_job == group.slurm_job)
        job = group.slurm_job
        self.later(lambda: self.slurm.set_admin_comment(job, cost_text(total)))

    # ------------------------------------------------------------ the loop

    def serve(self, stop: threading.Event | None = None, tick: float = TICK_SECONDS) -> None:
        """Hold the state directory's lock and run turns until ``stop`` is set (or forever)."""
        lock = os.open(lock_path(self.settings.state_dir), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if not _take(lock):
            os.close(lock)
            raise BurstError(f"a burst service already runs for {self.settings.state_dir}")
        wake = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            os.unlink(wake_path(self.settings.state_dir))
        except FileNotFoundError:
            pass
        wake.bind(wake_path(self.settings.state_dir))
        wake.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(wake, selectors.EVENT_READ)
        sel.register(self.boot_wake_r, selectors.EVENT_READ)
        if self.backend.wake_fd is not None:
            sel.register(self.backend.wake_fd, selectors.EVENT_READ)
        log(f"burst service for {self.settings.state_dir} started (pid {os.getpid()})")
        try:
            while stop is None or not stop.is_set():
                self.turn()
                for key, _ in sel.select(tick):
                    try:
                        if key.fileobj is wake:
                            while wake.recv(64):
                                pass
                        else:
                            while os.read(key.fd, 4096):
                                pass
                    except (BlockingIOError, InterruptedError):
                        pass
        finally:
            sel.close()
            wake.close()
            os.close(lock)

    def close(self) -> None:
        self.backend.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.conn.close()


def _take(lock: int, patience: float = LOCK_PATIENCE) -> bool:
    """The service's lock, unless another service holds it. A program asking whether a service
    runs holds it for an instant (``programs.service_running``): that is waited out, not taken
    for a service, else a program's probe would turn away the service another just started."""
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flow burst serve", description="Run the burst service.")
    parser.add_argument("--config", default=None, help="burst.toml (default $SFLOW_BURST_CONFIG or /etc/sflow/burst.toml)")
    args = parser.parse_args(argv)
    try:
        settings = load(args.config)
        service = BurstService(settings)
        stop = threading.Event()
        # systemd's stop (SIGTERM) ends the loop between turns: no turn is cut in half.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            service.serve(stop)
        finally:
            service.close()
    except BurstError as err:
        print(f"flow burst serve: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["BidOwner", "BurstService", "OwnerRecord", "cost_text", "main", "mithril_backend", "mithril_settings"]
