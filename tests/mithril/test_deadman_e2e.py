"""The dead-man switch end to end: every spot bid sflow places comes with an expiring key of its own,
revoked when the bid ends, and a controller killed between the key and the bid leaks neither.

The harness is mithril_harness.py (the emulator in this process, instances as loopback SSH hosts).
"""

from __future__ import annotations

import glob
import os
import signal
import threading
import time

from mithril_harness import REGION, site_fixture, slurm_conf, wait_for
from sflow.mithril import deadman
from sflow.mithril.emulator.service import Response
from sflow.mithril.fetch import Settings
from sflow.mithril import bids
from sflow.queue import store

KEY = "fkey_deadman_e2e_secret_77"
site = site_fixture("mithril-deadman", slurm_conf("deadman"), KEY,
                    env={"SFLOW_MITHRIL_LEASE_RENEW_SECONDS": "0.3"})

JOB = f"""#!/bin/sh
#SBATCH -p gpu -N 1 --gpus-per-node=h100:8 -t 5 -o out-%j.txt
#SFLOW --region={REGION}
env
sleep 2
"""


def _keys(site, name: str | None = None):
    with site.emu.service.lock:
        return [k for k in site.emu.service.account.api_keys.values() if name is None or k.name == name]


def _key_rows(site):
    conn = store.reader(site.home)
    try:
        return {k.idempotency_key: k for k in bids.keys(conn)}
    finally:
        conn.close()


def _placed(site, name: str):
    with site.emu.service.lock:
        return [b for b in site.emu.market.bids.values() if b.name == name]


def test_each_bid_comes_with_an_expiring_key_revoked_when_it_ends(site):
    job_id = site.sbatch(JOB)
    site.wait(job_id, lambda r: r.state == "RUNNING", what="ran")
    (row,) = site.bids(job_id)
    (made,) = _keys(site, f"sflow-deadman-{row.idempotency_key}")
    assert made.deactivated_at is None
    # The key expires by itself: after the longest wait for the auction, the boot window, the
    # job's 5 minutes and the margin.
    defaults = Settings(deadman=dict(deadman.DEFAULTS))
    lifetime = deadman.key_lifetime(defaults, deadman.plan_for(defaults, 300.0))
    assert lifetime - 5 <= made.expires_at - made.created_at <= lifetime
    assert made.secret in site.market_bid(row.bid_id).launch_specification["startup_script"]
    # While the job runs, its agent renews the instance's lease.
    leases = os.path.join(site.home, "mithril", "instances", "*", ".sflow", "lease")
    assert wait_for(lambda: any(time.time() - os.stat(p).st_mtime < 5 for p in glob.glob(leases)), timeout=20)
    site.wait(job_id, lambda r: r.state == "COMPLETED", what="completed")
    site.settled(job_id)
    assert wait_for(lambda: made.deactivated_at is not None), "the bid's key outlived it"
    assert wait_for(lambda: _key_rows(site)[row.idempotency_key].revoked is not None)
    assert _key_rows(site)[row.idempotency_key].secret is None
    # The key is in no log and in no job's environment.
    out = site.wait_output(f"out-{job_id}.txt", "SLURM_JOB_ID")
    for text in (out, site.log(100_000), *(open(p, errors="replace").read() for p in
                                          glob.glob(os.path.join(site.home, "**", "*.log"), recursive=True))):
        assert made.secret not in text and KEY not in text


def _kill_controller(site) -> None:
    with open(os.path.join(site.home, "watchdog.pid")) as handle:
        os.kill(int(handle.read()), signal.SIGTERM)  # it would restart the controller at once
    time.sleep(0.2)
    with open(os.path.join(site.home, "ctl.pid")) as handle:
        os.kill(int(handle.read()), signal.SIGKILL)
    time.sleep(0.2)


def _stall(site, path: str, handled: bool):
    """Hold the first ``POST path`` until released; ``handled``: the service acts on it first (the
    answer is what is lost), else it never reaches the service (answered 503 once released)."""
    service = site.emu.service
    original = service.handle
    entered, release = threading.Event(), threading.Event()

    def handle(method, where, query, headers, body):
        if method == "POST" and where == path and not entered.is_set():
            answer = original(method, where, query, headers, body) if handled else None
            entered.set()
            release.wait(60)
            return Response(0, drop=True) if handled else Response(503, {"detail": "Service Unavailable"})
        return original(method, where, query, headers, body)

    service.handle = handle
    return entered, release, lambda: service.__dict__.pop("handle", None)


def _killed_while(site, path: str, handled: bool) -> int:
    entered, release, undo = _stall(site, path, handled)
    try:
        job_id = site.sbatch(JOB)
        assert entered.wait(30), site.log()
        _kill_controller(site)
    finally:
        release.set()
        undo()
    site.run("squeue")  # a bid is live: a controller starts again and takes up where this one died
    site.wait(job_id, lambda r: r.state == "COMPLETED", what="completed after the restart")
    site.settled(job_id)
    return job_id


def test_a_controller_killed_once_the_key_was_made_but_not_recorded_leaks_no_key(site):
    job_id = _killed_while(site, "/v2/api-keys", handled=True)
    (row,) = site.bids(job_id)
    made = _keys(site, f"sflow-deadman-{row.idempotency_key}")
    assert len(made) == 2  # the one whose answer died with the controller, and the one the bid carries
    assert wait_for(lambda: all(k.deactivated_at is not None for k in made)), "a key was leaked"
    (bid,) = _placed(site, row.name)
    assert bid.status == "Terminated"
    lost = min(made, key=lambda k: k.created_at)
    assert lost.deactivated_at <= bid.created_at  # revoked before the bid was placed
    assert lost.secret not in bid.launch_specification["startup_script"]


def test_a_controller_killed_between_the_key_and_the_bid_places_one_bid_and_revokes_its_key(site):
    job_id = _killed_while(site, "/v2/spot/bids", handled=False)
    (row,) = site.bids(job_id)
    (made,) = _keys(site, f"sflow-deadman-{row.idempotency_key}")
    (bid,) = _placed(site, row.name)
    assert bid.status == "Terminated" and row.bid_id == bid.fid
    assert made.secret in bid.launch_specification["startup_script"]  # the key recorded before the crash
    assert wait_for(lambda: made.deactivated_at is not None), "the key outlived its bid"


def test_a_controller_killed_with_the_bids_create_answer_lost_places_one_bid(site):
    job_id = _killed_while(site, "/v2/spot/bids", handled=True)
    (row,) = site.bids(job_id)
    (made,) = _keys(site, f"sflow-deadman-{row.idempotency_key}")
    (bid,) = _placed(site, row.name)  # the create sent again with its idempotency key found it
    assert bid.status == "Terminated" and row.bid_id == bid.fid
    assert wait_for(lambda: made.deactivated_at is not None), "the key outlived its bid"
