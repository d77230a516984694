"""The burst service under a hostile market: 20 jobs through the burst path, an API that fails a
fifth of its calls, and competing demand that preempts the cheaper bids at seeded moments.

The test plays slurmctld: it asks for each job's nodes (a resume), lets the job run once its
nodes are booted, gives them back when it ends (a suspend), and, when the service requeues a
preempted job, powers its nodes down and asks for them again, as slurmctld does. Every job must
finish; no group of nodes may ever hold two bids; no bid may be left live; and each job's cost
as written to SLURM (AdminComment) must match the emulator's billing ledger to the cent.
"""

from __future__ import annotations

import collections
import random
import threading
import time

from .burst_harness import FakeBooter, FakeSlurm, KEY, REGION, demand, emulator, live_bids, market_bids, running
from polling import wait_for
from sflow.burst import store
from sflow.burst.settings import BurstSettings, PartitionSettings
from sflow.mithril import bids

SEED = 20261203
JOBS = 20
LOW_LIMIT = "$9.00/hr"  # below the competing demand: preempted while it stands
DEMAND = "$10.00"  # above the reserve, below the partition's limit


class Slurmctld(FakeSlurm):
    """The fake SLURM, with the jobs' states as the test moves them."""

    def __init__(self, scripts: dict):
        super().__init__(scripts=scripts)
        self.requeued: collections.deque = collections.deque()

    def requeue(self, job_id):
        super().requeue(job_id)
        self.requeued.append(job_id)


class Booter(FakeBooter):
    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.booted: set[str] = set()

    def boot(self, node_name, ssh_destination, conf_server, instance=None):
        super().boot(node_name, ssh_destination, conf_server, instance)
        with self.lock:
            self.booted.add(node_name)

    def take(self, names: list[str]) -> bool:
        """Whether every one of ``names`` was booted since the last take (then forgotten)."""
        with self.lock:
            if not set(names) <= self.booted:
                return False
            self.booted -= set(names)
            return True


def request(conn, kind: str, names: list[str], job_id: int | None = None) -> None:
    hostlist = ",".join(names)
    payload = {"jobs": [{"job_id": job_id, "nodes": hostlist}], "all_nodes": hostlist} if job_id else None
    store.add_request(conn, kind, hostlist, payload, time.time())


def test_twenty_jobs_through_the_burst_path_under_faults_and_preemption(tmp_path, monkeypatch):
    monkeypatch.setenv("MITHRIL_API_KEY", KEY)
    rng = random.Random(SEED)
    state = str(tmp_path / "state")
    jobs, next_node = {}, 1
    for job_id in range(1, JOBS + 1):
        count = 1 + (job_id % 3 == 0)
        names = [f"mithril-gpu-{next_node + i}" for i in range(count)]
        next_node += count
        cheap = job_id % 4 == 1
        jobs[job_id] = {"nodes": names, "cheap": cheap, "state": "queued", "runs": 0,
                        "length": 60 if cheap else rng.uniform(0.5, 2.0)}  # a cheap job's first run: until preempted
    scripts = {j: f"#!/bin/sh\n#SFLOW --limit-price={LOW_LIMIT}\nsleep 9\n" if v["cheap"] else "#!/bin/sh\ntrue\n"
               for j, v in jobs.items()}
    slurm, booter = Slurmctld(scripts), Booter()
    part = PartitionSettings("gpu", f"mithril-gpu-[1-{next_node - 1}]", "8xh100", "8xh100", REGION, "$30.00/hr")
    settings = BurstSettings(path="burst.toml", state_dir=state, poll_seconds=0.2, preempt_grace=1.0,
                             resume_timeout=600, partitions={"gpu": part})
    with emulator(notice=2.0, fault_rate=0.2, seed=SEED, slow_seconds=0.3, retry_after=1) as emu:
        settings = BurstSettings(**{**settings.__dict__, "api_url": emu.url})
        conn = store.open_store(state)
        started = time.monotonic()
        windows: list[float] = []
        with running(settings, slurm, booter):
            deadline = time.monotonic() + 240
            while any(v["state"] != "done" for v in jobs.values()) and time.monotonic() < deadline:
                now = time.monotonic()
                while slurm.requeued:  # preempted: its nodes powered down, then asked for again
                    job_id = slurm.requeued.popleft()
                    if jobs[job_id]["state"] in ("resuming", "running"):
                        request(conn, "suspend", jobs[job_id]["nodes"])
                        jobs[job_id]["state"] = "queued"
                        slurm.jobs.pop(job_id, None)
                for job_id, job in jobs.items():
                    if job["state"] == "queued":
                        request(conn, "resume", job["nodes"], job_id)
                        job["state"] = "resuming"
                    elif job["state"] == "resuming" and booter.take(job["nodes"]):
                        job["state"], job["ends"] = "running", now + (job["length"] if job["runs"] == 0 else 0.5)
                        job["runs"] += 1
                        slurm.jobs[job_id] = f"JobId={job_id} JobState=RUNNING"
                    elif job["state"] == "running" and now >= job["ends"]:
                        slurm.jobs[job_id] = f"JobId={job_id} JobState=COMPLETED"
                        request(conn, "suspend", job["nodes"])
                        job["state"] = "done"
                cheap = [v for v in jobs.values() if v["cheap"]]
                if not windows and all(v["state"] == "running" for v in cheap):
                    windows.append(now)  # other users outbid the cheap jobs while all of them run
                    demand(emu, DEMAND, 2, bids=16)  # the whole pool: only the dearer bids keep theirs
                elif len(windows) == 1 and (now - windows[0] > 6 or all(v["runs"] > 1 for v in cheap)):
                    windows.append(now)
                    demand(emu, DEMAND, 0)
                time.sleep(0.1)
            finished = time.monotonic() - started
            assert all(v["state"] == "done" for v in jobs.values()), {j: v["state"] for j, v in jobs.items()}
            # Every bid deleted and its billing record read.
            assert wait_for(lambda: not live_bids(emu) and all(r.cost_settled for r in bids.read(conn)), 120), \
                ([b.status for b in live_bids(emu)], [r for r in bids.read(conn) if not r.cost_settled])
            assert wait_for(lambda: _costs_written(slurm, conn), 30)
        rows, groups = bids.read(conn), store.groups(conn)
        owners = collections.Counter(r.job_id for r in rows if r.bid_id is not None)
        placed = {b.fid: b for b in market_bids(emu)}
        # One bid per group of nodes: the emulator never saw two for one (a create retried after a lost
        # answer is the same bid, by its idempotency key).
        assert max(collections.Counter(b.name for b in placed.values()).values()) == 1
        assert max(owners.values()) == 1
        ledger = emu.ledger()
        gaps = {r.bid_id: r.cost_cents - ledger[r.bid_id]["cost_cents"] for r in rows if r.bid_id in ledger}
        assert max(map(abs, gaps.values()), default=0) < 1.0, gaps
        written = _last_cost_per_job(slurm)
        for job_id in jobs:
            mine = [g.owner for g in groups if g.slurm_job == job_id]
            billed = sum(ledger[r.bid_id]["cost_cents"] for r in rows if r.job_id in mine and r.bid_id in ledger)
            assert abs(written.get(job_id, 0.0) - billed / 100) < 0.01 + 1e-9, (job_id, written.get(job_id), billed)
        preempted = [g for g in groups if g.state == "preempted"]
        with emu.service.lock:
            history = list(emu.service.faults.history)
        faults = collections.Counter(f.kind for _, _, _, f in history if f is not None)
        assert len(preempted) >= 2, "the demand window preempted (almost) nothing"
        # Each preemption signalled its job once (the notice is seen at every look) and requeued it once.
        per_job = collections.Counter(g.slurm_job for g in preempted)
        assert collections.Counter(c[1] for c in slurm.of("signal")) == per_job
        assert collections.Counter(c[1] for c in slurm.of("requeue")) == per_job
        assert sum(faults.values()) > 0.1 * len(history), faults
        print(f"\nburst soak: {JOBS} jobs done in {finished:.1f} s; {len(placed)} bids, {len(preempted)} preempted; "
              f"{len(history)} API calls, faults {dict(faults)}; largest cost gap "
              f"{max(map(abs, gaps.values()), default=0):.4f} cents")
        conn.close()


def _last_cost_per_job(slurm: FakeSlurm) -> dict[int, float]:
    """The dollars each job's last AdminComment says."""
    written = {}
    for _, job_id, fields in slurm.of("update_job"):
        text = fields.get("AdminComment", "")
        if text.startswith("mithril_cost=$"):
            written[job_id] = float(text.removeprefix("mithril_cost=$"))
    return written


def _costs_written(slurm: FakeSlurm, conn) -> bool:
    """Every group's final cost has reached SLURM."""
    written = _last_cost_per_job(slurm)
    totals = collections.defaultdict(float)
    for group in store.groups(conn):
        if group.slurm_job is not None:
            totals[group.slurm_job] += group.cost_cents or 0.0
    return all(abs(written.get(job, 0.0) - cents / 100) < 0.005 + 1e-9 for job, cents in totals.items())
