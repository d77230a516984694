"""A step that vanished with its instances: preempted when Mithril's records say so, though no look at
the bid saw the notice; a node failure when the machine died with no preemption on record.

Every look at the bid fails while it happens (an outage of the calls the worker polls with), so the
verdict rests on the instances' status history alone.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from mithril_harness import REGION, site_fixture, slurm_conf

KEY = "fkey_unseen_5ecret_value_31"
CONF = slurm_conf("unseen")
# What the worker looks at a bid with: the bid itself, the bids' list and the instances' list.
LOOKS = [("GET", r"/v2/spot/bids(/[^/]+)?"), ("GET", r"/v2/instances")]

site = site_fixture("mithril-unseen", CONF, KEY, notice=1.0)


@contextlib.contextmanager
def looks_failing(site):
    with site.emu.service.lock:
        site.emu.service.faults.outages.extend(LOOKS)
    try:
        yield
    finally:
        with site.emu.service.lock:
            site.emu.service.faults.outages.clear()


def script(requeue: bool) -> str:
    return f"""#!/bin/bash
#SBATCH -p gpu -N 1 --gpus-per-node=h100:8 -t 10 -o out-%j.txt {'' if requeue else '--no-requeue'}
#SFLOW --region={REGION} --limit-price=$10.00
echo "start restart=${{SLURM_RESTART_COUNT:-0}}"
if [ "${{SLURM_RESTART_COUNT:-0}}" = 0 ]; then sleep 600; fi
echo done
"""


def test_a_notice_that_ran_out_unseen_is_a_preemption(site):
    job_id = site.sbatch(script(requeue=True), name="unseen.sh")
    out = f"out-{job_id}.txt"
    assert "start restart=0" in site.wait_output(out, "start restart=0"), site.log()
    try:
        with looks_failing(site):
            site.demand(("$20.00", 32))  # outbid for the whole region: notice, then the instance is gone
            rec = site.wait(job_id, lambda r: r.restart_count == 1, timeout=60, what="requeued")
            assert rec.state in ("PENDING", "RUNNING")
    finally:
        site.demand(("$0.00", 0))
    rec = site.wait(job_id, lambda r: r.state == "COMPLETED", timeout=60, what="completed")
    assert rec.restart_count == 1
    text = site.output(out)
    assert "DUE TO PREEMPTION ***" in text and "start restart=1" in text and text.endswith("done\n"), text
    first, second = site.settled(job_id)
    assert (first.run, first.outcome, second.run, second.outcome) == (0, "PREEMPTED", 1, "COMPLETED")
    # Billed as a seen notice is: what Mithril's ledger says for each bid.
    deadline = time.monotonic() + 20
    while not all(r.cost_final for r in site.bids(job_id)) and time.monotonic() < deadline:
        time.sleep(0.1)
    ledger = site.emu.ledger()
    for row in site.bids(job_id):
        assert row.cost_final, row
        assert abs(row.cost_cents - ledger[row.bid_id]["cost_cents"]) < 1.0, (row, ledger[row.bid_id])
    # The last cost event reaches the job record in one of the controller's next turns.
    billed = sum(row.cost_cents for row in site.bids(job_id))  # the final costs, as billed
    deadline = time.monotonic() + 20
    while site.job(job_id).cost_cents != pytest.approx(billed) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert site.job(job_id).cost_cents == pytest.approx(billed)


def test_a_machine_that_died_unpreempted_is_a_node_failure(site):
    job_id = site.sbatch(script(requeue=False), name="died.sh")
    out = f"out-{job_id}.txt"
    assert "start restart=0" in site.wait_output(out, "start restart=0"), site.log()
    (row,) = site.bids(job_id)
    (instance,) = [i["fid"] for i in row.instances]
    with looks_failing(site):
        with site.emu.service.lock:
            stop = site.emu.service.hosts.pop(instance)
        stop()  # the machine is gone; Mithril never took it back
        rec = site.wait(job_id, lambda r: r.state not in ("RUNNING", "COMPLETING"), timeout=60, what="ended")
    assert (rec.state, rec.reason, rec.restart_count) == ("NODE_FAIL", "NodeDown", 0)
    assert "DUE TO PREEMPTION" not in site.output(out)
    (row,) = site.settled(job_id)
    assert row.outcome == "NODE_FAIL"
