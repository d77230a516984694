"""Mithril end to end: job arrays (one bid per task, ``%N`` respected) and reserved capacity.

The same harness as test_backend_e2e.py: the real shims and controller, the
emulated API in this process, its instances real SSH servers on loopback.
"""

from __future__ import annotations

import threading
import time

from mithril_harness import REGION, site_fixture, slurm_conf
from sflow.mithril.emulator.market import LIVE_BID

KEY = "fkey_arrays_reserved_0123"
CONF = slurm_conf("e2e", gpu_max_time="INFINITE")
OVER = ("PENDING", "RUNNING", "COMPLETING")


site = site_fixture("mithril-arrays", CONF, KEY)


class LiveBids(threading.Thread):
    """The most bids live at once in the emulated market, sampled until stopped."""

    def __init__(self, emu):
        super().__init__(daemon=True)
        self.emu, self.most, self.done = emu, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            with self.emu.service.lock:
                live = [b for b in self.emu.market.bids.values() if b.status in LIVE_BID]
            self.most = max(self.most, len(live))
            time.sleep(0.01)

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.most


def test_array_tasks_bid_one_by_one_within_the_throttle(site):
    done = site.run("sbatch", "--test-only", "--array=0-3%2", "-p", "gpu", "--gpus-per-node=1", "-t", "5",
                    "--wrap=true")
    assert done.returncode == 0 and done.stderr.startswith("Mithril plan: 1 x 1xa100"), done.stderr
    watcher = LiveBids(site.emu)
    watcher.start()
    try:
        array_id = site.sbatch(f"""#!/bin/bash
#SBATCH --array=0-3%2 -p gpu --gpus-per-node=1 -t 5
#SFLOW --region={REGION}
echo "task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_JOB_ID ($SLURM_ARRAY_TASK_COUNT) job $SLURM_JOB_ID"
sleep 0.5
""", "array.sh")
        records = site.wait_jobs(array_id, lambda rs: len(rs) == 4 and all(r.state not in OVER for r in rs),
                                 timeout=40, what="ran every task")
    finally:
        most = watcher.stop()
    assert sorted(r.array_task_id for r in records) == [0, 1, 2, 3]
    assert all(r.state == "COMPLETED" and r.backend == "mithril" for r in records), records
    assert most == 2, most  # two at a time: never more, and the throttle is used
    for rec in records:
        out = site.read(f"slurm-{array_id}_{rec.array_task_id}.out")
        assert out == f"task {rec.array_task_id} of {array_id} (4) job {rec.job_id}\n"
        assert rec.nodelist == f"sflow-{array_id}_{rec.array_task_id}-0"
    rows = site.settled(*{r.job_id for r in records}, timeout=20)
    assert sorted(r.plan["task"] for r in rows) == [0, 1, 2, 3]
    assert {(r.job_id, r.plan["task"]) for r in rows} == {(r.job_id, r.array_task_id) for r in records}
    assert all(r.outcome == "COMPLETED" and r.cost_cents > 0 for r in rows)
    with site.emu.service.lock:
        placed = [b for b in site.emu.market.bids.values() if b.name.startswith(f"sflow-{array_id}_")]
        assert len(placed) == 4 and all(b.status == "Terminated" for b in placed)
        assert {r.bid_id: r.name for r in rows} == {b.fid: b.name for b in placed}
    for rec in records:
        row = next(r for r in rows if r.job_id == rec.job_id)
        assert site.jobs(rec.job_id)[0].cost_cents == row.cost_cents


def test_reserved_job_runs_on_its_reservation_and_costs_its_price(site):
    job_id = site.sbatch(f"""#!/bin/bash
#SBATCH -p gpu -N 1 --gpus-per-node=1 -t 20 -o res-%j.out
#SFLOW --reserved --region={REGION}
echo "reserved on $SLURMD_NODENAME with $SLURM_JOB_NUM_NODES node"
""", "reserved.sh")
    (rec,) = site.wait_jobs(job_id, lambda rs: rs[0].state not in OVER, what="ended")
    assert rec.state == "COMPLETED", site.read(f"res-{job_id}.out") + site.log()
    (row,) = site.settled(job_id, timeout=20)
    assert row.plan["capacity"] == "reserved" and row.plan["hours"] == 3
    assert row.bid_id.startswith("res_") and row.status == "Released" and row.outcome == "COMPLETED"
    with site.emu.service.lock:
        res = site.emu.market.reservations[row.bid_id]
        instances = [site.emu.market.instances[f] for f in res.instances]
        assert res.status == "Ended" and res.total_cents == 150 * 3  # 1xa100 at $1.50 for 3 hours
        assert not instances  # given back
    assert site.read(f"res-{job_id}.out") == f"reserved on {rec.nodelist} with 1 node\n"
    rec = site.jobs(job_id)[0]
    assert rec.cost_cents == 450 and row.cost_cents == 450
    sacct = site.run("sacct", "-j", str(job_id), "-n", "-P", "-o", "JobID,State,Cost").stdout.splitlines()
    assert sacct[0] == f"{job_id}|COMPLETED|$4.50"
    assert not site.emu.market.bids or all(not b.name.startswith(f"sflow-{job_id}") for b in
                                           site.emu.market.bids.values())


def test_cancel_while_the_reservation_is_pending(site):
    with site.emu.service.lock:  # no 4xa100 free for a while: the window starts later
        site.emu.service.script({"region": REGION, "instance_type": "4xa100", "supply": [[0, 0], [6, 8]]},
                                site.emu.service.clock())
    job_id = site.sbatch(f"""#!/bin/bash
#SBATCH -p gpu -N 1 --gpus-per-node=4 -t 30 -o /dev/null
#SFLOW --reserved --region={REGION}
echo never
""", "later.sh")
    (rec,) = site.wait_jobs(job_id, lambda rs: " from " in rs[0].reason, what="waited for its window")
    assert rec.state == "PENDING"
    assert rec.reason.startswith(f"ReservationPending: 1 x 4xa100 in {REGION} for 3 hours from "), rec.reason
    shown = site.run("squeue", "-h", "-j", str(job_id), "-o", "%R").stdout.strip()
    assert shown == f"({rec.reason})"
    (row,) = [r for r in site.rows() if r.job_id == job_id]
    with site.emu.service.lock:
        assert site.emu.market.reservations[row.bid_id].status == "Pending"
    assert site.run("scancel", str(job_id)).returncode == 0
    site.wait_jobs(job_id, lambda rs: rs[0].state == "CANCELLED", what="cancelled")
    # Paid for up front and not cancellable: its instances are given back once its window begins.
    (row,) = site.settled(job_id, timeout=20)
    assert row.outcome == "CANCELLED" and row.started is None and row.status == "Released"
    with site.emu.service.lock:
        res = site.emu.market.reservations[row.bid_id]
        assert res.status == "Ended" and not res.instances
    assert site.jobs(job_id)[0].cost_cents == 600 * 3


def test_first_window_joins_back_to_back_slots():
    from types import SimpleNamespace

    from sflow.mithril.reserving import first_window

    def slot(start, end, quantity):
        return SimpleNamespace(start_time=start, end_time=end, quantity=quantity)

    hour = 3600.0
    slots = [slot(0, hour, 1), slot(hour, 2 * hour, 4), slot(2 * hour, 4 * hour, 2), slot(5 * hour, 9 * hour, 2)]
    assert first_window(slots, 2, 3 * hour, 0.5) == hour  # two slots back to back make the window
    assert first_window(slots, 2, 4 * hour, 0.5) == 5 * hour
    assert first_window(slots, 1, 3 * hour, 10.2) == 11.0  # whole seconds, never before now
    assert first_window(slots, 3, 3 * hour, 0) is None
