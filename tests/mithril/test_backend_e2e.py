"""Mithril end to end: the real shims and controller, the emulated API, emulated instances on loopback.

The harness is mithril_harness.py: the emulator runs in this process with a
fast auction and a real SSH server per instance on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from mithril_harness import REGION, site_fixture, slurm_conf
from sflow.queue import store
from sflow.views.costs import billed

KEY = "fkey_e2e_5ecret_value_42"
CONF = slurm_conf("e2e")


site = site_fixture("mithril-e2e", CONF, KEY)


def test_refusals_and_plans_at_submission(site):
    done = site.run("sbatch", "-p", "gpu", "-N", "1", "--gpus-per-node=16", "--wrap=true")
    assert done.returncode == 1
    assert done.stderr.startswith("sbatch: error: no Mithril instance type has 16 GPUs per node")
    assert done.stderr.count("\n") == 1
    done = site.run("sbatch", "--test-only", "-p", "gpu", "-N", "2", "--gpus-per-node=h100:8", "-t", "60",
                    "--wrap=true")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("Mithril plan: 2 x 8xh100 in "), done.stderr
    assert "time limit 01:00:00: at most $" in done.stderr
    done = site.run("flow", "run", "--dry-run", "-p", "gpu", "-N", "2", "--gpus-per-node=h100:8", "-t", "60",
                    "--wrap=true")
    assert done.returncode == 0, done.stderr
    assert "Mithril plan: 2 x 8xh100 in " in done.stdout
    with site.emu.service.lock:
        assert not site.emu.market.bids  # neither places anything


def test_multi_node_job_runs_srun_across_instances(site):
    with open(os.path.join(site.work, "input.txt"), "w") as handle:
        handle.write("staged from the submit directory\n")
    job_id = site.sbatch(f"""#!/bin/bash
#SBATCH -p gpu -N 3 --ntasks-per-node=2 --gpus-per-node=h100:8 -t 10 -o out-%j.txt
#SFLOW --region={REGION}
echo "batch $SLURMD_NODENAME $SLURM_JOB_NUM_NODES $SLURM_NTASKS $SLURM_TASKS_PER_NODE"
echo "key=${{MITHRIL_API_KEY:-none}}"
cat input.txt
srun bash -c 'echo "task $SLURM_PROCID/$SLURM_NTASKS node $SLURMD_NODENAME id $SLURM_NODEID host $(hostname)"'
""")
    rec = site.wait(job_id, lambda r: r.state not in ("PENDING", "RUNNING", "COMPLETING"), what="ended")
    with open(os.path.join(site.work, f"out-{job_id}.txt")) as handle:
        out = handle.read()
    assert rec.state == "COMPLETED", out + site.log()
    assert rec.backend == "mithril" and rec.num_nodes == 3
    nodes = rec.nodelist
    (row,) = site.settled(job_id)
    rec = site.job(job_id)
    bid = site.market_bid(row.bid_id)
    with site.emu.service.lock:
        instances = [site.emu.market.instances[fid] for fid in bid.instances]
    names = sorted(i.name for i in instances)
    hosts = {i.name: i.hostname for i in instances}
    lines = out.splitlines()
    assert lines[0] == f"batch {names[0]} 3 6 2(x3)"
    assert lines[1] == "key=none"
    assert lines[2] == "staged from the submit directory"
    tasks = sorted(line.split() for line in lines if line.startswith("task "))
    assert [t[1] for t in sorted(tasks, key=lambda t: int(t[1].split("/")[0]))] == [f"{r}/6" for r in range(6)]
    for _, rank_total, _, node, _, node_id, _, host in tasks:
        rank = int(rank_total.split("/")[0])
        assert node == names[rank // 2] and node_id == str(rank // 2)
        assert host == hosts[node]  # the task ran on that instance
    assert nodes == f"{names[0].rsplit('-', 1)[0]}-[0-2]"

    # The bid is gone, and sflow's cost is the emulator's ledger.
    assert row.ended is not None and row.must_delete is False and row.outcome == "COMPLETED"
    assert bid.status == "Terminated"
    ledger = site.emu.cost_cents(row.bid_id)
    per_second = 800 * 3 / 3600  # 3 x 8xh100 at the reserve price, cents per second
    assert ledger > 0 and abs(row.cost_cents - ledger) <= per_second * 0.6, (row.cost_cents, ledger)
    assert rec.cost_cents == row.cost_cents  # as billed, fractions of a cent too
    sacct = site.run("sacct", "-j", str(job_id), "-n", "-P", "-o", "JobID,State,Cost,NodeList").stdout.splitlines()
    assert sacct[0] == f"{job_id}|COMPLETED|{billed(rec.cost_cents)}|{nodes}"
    assert any(line.startswith(f"{job_id}.0|COMPLETED") for line in sacct), sacct
    status = site.run("flow", "status", str(job_id)).stdout
    assert f"3 x 8xh100 in {REGION}" in status and billed(rec.cost_cents) in status

    # The API key went nowhere near the job.
    for path in (os.path.join(site.home, "controller.log"), os.path.join(site.home, "jobs", str(job_id), "agent.log"),
                 os.path.join(site.home, "jobs", str(job_id), "context.json"),
                 os.path.join(site.home, "jobs", str(job_id), "remote.json")):
        with open(path) as handle:
            assert KEY not in handle.read(), path


def test_cancel_while_the_bid_is_open_deletes_it(site):
    site.demand(("$30.00", 32))  # every 8xh100 in the region is taken
    try:
        job_id = site.sbatch(f"""#!/bin/sh
#SBATCH -p gpu -N 2 --gpus-per-node=h100:8 -t 5 -o /dev/null
#SFLOW --region={REGION}
echo never
""")
        rec = site.wait(job_id, lambda r: r.reason.endswith("free)"), what="waited on an open bid")
        assert rec.state == "PENDING"
        assert rec.reason == f"BidOpen: waiting for 2 x 8xh100 in {REGION} (0 free)"
        shown = site.run("squeue", "-h", "-j", str(job_id), "-o", "%R").stdout.strip()
        assert shown == f"({rec.reason})"
        (row,) = site.bids(job_id)
        assert site.market_bid(row.bid_id).status == "Open"
        assert site.run("scancel", str(job_id)).returncode == 0
        site.wait(job_id, lambda r: r.state == "CANCELLED", what="cancelled")
        (row,) = site.settled(job_id)
        assert site.market_bid(row.bid_id).status == "Terminated"
        assert row.outcome == "CANCELLED" and row.cost_cents == 0
    finally:
        site.demand(("$0.00", 0))


def test_a_controller_killed_before_recording_its_bid_does_not_bid_twice(site):
    site.demand(("$30.00", 32))
    try:
        job_id = site.sbatch(f"""#!/bin/sh
#SBATCH -p gpu -N 1 --gpus-per-node=h100:8 -t 5 -o /dev/null
#SFLOW --region={REGION}
true
""")
        site.wait(job_id, lambda r: r.reason.startswith("BidOpen"), what="waited on an open bid")
        (row,) = site.bids(job_id)
        with open(os.path.join(site.home, "watchdog.pid")) as handle:
            os.kill(int(handle.read()), signal.SIGTERM)  # it would start a controller before the row is forged
        time.sleep(0.2)
        with open(os.path.join(site.home, "ctl.pid")) as handle:
            os.kill(int(handle.read()), signal.SIGKILL)
        time.sleep(0.2)
        # As if it died with the create sent but its answer not yet written down.
        conn = store.open_db(site.home)
        conn.execute("UPDATE bids SET bid_id = NULL, status = 'Placing' WHERE idempotency_key = ?",
                     (row.idempotency_key,))
        conn.close()
        site.run("squeue")  # reads only, but a bid is live: it starts a controller, which sends the create again
        site.run("scontrol", "hold", str(job_id))  # holding withdraws the bid
        site.wait(job_id, lambda r: r.held, what="held")
        (again,) = site.settled(job_id)
        assert again.bid_id == row.bid_id and again.ended is not None  # found by its key, then deleted
        with site.emu.service.lock:
            placed = [b for b in site.emu.market.bids.values() if b.name == row.name]
        assert len(placed) == 1 and placed[0].status == "Terminated"
        site.run("scancel", str(job_id))
    finally:
        site.demand(("$0.00", 0))


def test_preempted_job_is_requeued_and_completes(site):
    job_id = site.sbatch(f"""#!/bin/bash
#SBATCH -p gpu -N 2 --gpus-per-node=h100:8 -t 10 -o pre-%j.out
#SFLOW --region={REGION} --limit-price=$10.00
echo "start restart=${{SLURM_RESTART_COUNT:-0}}"
if [ "${{SLURM_RESTART_COUNT:-0}}" = 0 ]; then
  trap 'echo "got TERM"; exit 143' TERM
  while :; do sleep 0.1; done
fi
srun hostname >/dev/null
echo done
""", name="pre.sh")
    out = f"pre-{job_id}.out"
    assert "start restart=0" in site.wait_output(out, "start restart=0"), site.log()
    site.demand(("$20.00", 31))  # outbid: 31 of 32 go to others, our 2 no longer fit
    try:
        rec = site.wait(job_id, lambda r: r.restart_count == 1, what="requeued")
        assert rec.state in ("PENDING", "RUNNING")
        rec = site.wait(job_id, lambda r: r.reason.startswith("BidOpen"), what="waited for a new bid")
        assert rec.restart_count == 1
    finally:
        site.demand(("$0.00", 0))
    site.wait(job_id, lambda r: r.state == "COMPLETED", what="completed")
    text = site.output(out)
    assert "got TERM" in text and "DUE TO PREEMPTION ***" in text
    assert "start restart=1" in text and text.endswith("done\n"), text
    first, second = site.settled(job_id)
    rec = site.job(job_id)
    assert (first.run, first.outcome, second.run, second.outcome) == (0, "PREEMPTED", 1, "COMPLETED")
    assert first.ended is not None and second.ended is not None
    assert site.market_bid(first.bid_id).status == site.market_bid(second.bid_id).status == "Terminated"
    assert rec.cost_cents == pytest.approx(first.cost_cents + second.cost_cents)


def test_running_job_is_adopted_after_a_crash_signalled_and_cancelled(site):
    job_id = site.sbatch(f"""#!/bin/bash
#SBATCH -N 2 --gpus-per-node=h100:8 -t 10 -o run-%j.out
#SFLOW --backend=mithril --region={REGION}
trap 'echo "got USR1"' USR1
echo started
while :; do sleep 0.1; done
""", name="run.sh")
    out = f"run-{job_id}.out"
    assert "started" in site.wait_output(out, "started"), site.log()
    assert site.job(job_id).partition == "debug" and site.job(job_id).backend == "mithril"
    with open(os.path.join(site.home, "ctl.pid")) as handle:
        os.kill(int(handle.read()), signal.SIGKILL)
    with open(os.path.join(site.home, "jobs", str(job_id), "pid")) as handle:
        agent = int(handle.read().split()[0])
    time.sleep(0.3)
    os.kill(agent, 0)  # the job's agent outlives its controller
    # The next command starts a controller, which adopts the agent; -b reaches the batch shell only.
    assert site.run("scancel", "-b", "-s", "USR1", str(job_id)).returncode == 0
    assert "got USR1" in site.wait_output(out, "got USR1", timeout=20)
    assert site.job(job_id).state == "RUNNING"
    assert site.run("scancel", str(job_id)).returncode == 0
    rec = site.wait(job_id, lambda r: r.state == "CANCELLED", what="cancelled")
    assert rec.exit_signal == signal.SIGTERM
    (row,) = site.settled(job_id)
    assert site.market_bid(row.bid_id).status == "Terminated"
    assert "CANCELLED AT" in site.output(out)
    assert row.outcome == "CANCELLED" and row.cost_cents > 0
    assert site.job(job_id).cost_cents == row.cost_cents
