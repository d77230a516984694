"""The burst service end to end against the Mithril emulator: SLURM and the instances are recording fakes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from .burst_harness import (FakeBooter, FakeSlurm, KEY, demand, emulator, live_bids, market_bids, running,
                           settings_for, settings_toml, wait_for)
from sflow.burst import store
from sflow.burst.programs import service_running
from sflow.mithril import bids


@pytest.fixture
def emu(monkeypatch):
    monkeypatch.setenv("MITHRIL_API_KEY", KEY)
    with emulator() as emu:
        yield emu


def resume_payload(job_id: int, nodes: str) -> dict:
    """What slurmctld 22.05 writes into SLURM_RESUME_FILE (compat/golden/power_save.json)."""
    return {"jobs": [{"job_id": job_id, "nodes": nodes}], "all_nodes": nodes}


def _read(state_dir: str, what):
    """``what(conn)`` on the burst store, which is closed again."""
    with contextlib.closing(store.open_store(state_dir)) as conn:
        return what(conn)


def request(state_dir: str, kind: str, hostlist: str, payload: dict | None = None) -> None:
    _read(state_dir, lambda conn: store.add_request(conn, kind, hostlist, payload, time.time()))


def groups(state_dir: str) -> list[store.Group]:
    return _read(state_dir, store.groups)


def nodes(state_dir: str) -> dict[str, store.Node]:
    return _read(state_dir, store.nodes)


def bid_rows(state_dir: str) -> list[bids.BidRow]:
    return _read(state_dir, bids.read)


def test_a_job_of_two_nodes_is_one_bid_and_suspend_gives_it_back(emu, tmp_path):
    state = str(tmp_path / "state")
    slurm = FakeSlurm(jobs={41: "JobId=41 UserId=alice(1000) Account=physics"})
    booter = FakeBooter()
    with running(settings_for(state, emu.url), slurm, booter):
        request(state, "resume", "mithril-gpu-[1-2]", resume_payload(41, "mithril-gpu-[1-2]"))
        assert wait_for(lambda: len(booter.calls) == 2), (booter.calls, groups(state))
        (bid,) = market_bids(emu)
        assert bid.quantity == 2 and bid.limit_cents == 3000
        assert sorted(c[0] for c in booter.calls) == ["mithril-gpu-1", "mithril-gpu-2"]
        assert {c[2] for c in booter.calls} == {"ctl:6817"}
        assert wait_for(lambda: all(n.state == "up" for n in nodes(state).values()))
        shown = nodes(state)
        with emu.service.lock:
            fids = list(emu.market.bids[bid.fid].instances)
        assert sorted(n.instance for n in shown.values()) == sorted(fids)
        (group,) = groups(state)
        assert group.slurm_job == 41 and group.state == "up" and group.user == "alice" and group.account == "physics"

        request(state, "suspend", "mithril-gpu-1")
        time.sleep(1.0)
        assert live_bids(emu), "one node of the job is still up: the bid stays"
        request(state, "suspend", "mithril-gpu-2")
        assert wait_for(lambda: not live_bids(emu)), market_bids(emu)
        assert wait_for(lambda: all(r.ended is not None for r in bid_rows(state)))
        assert wait_for(lambda: slurm.of("update_job")), "the bid's cost is written on the job"
        (call,) = slurm.of("update_job")[-1:]
        assert call[1] == 41 and call[2]["AdminComment"].startswith("mithril_cost=$")
        assert {n.state for n in nodes(state).values()} == {"idle"}
        (group,) = groups(state)
        assert group.state == "released" and group.cost_cents is not None


def test_nodes_of_no_job_are_one_bid_each(emu, tmp_path):
    state = str(tmp_path / "state")
    booter = FakeBooter()
    with running(settings_for(state, emu.url), FakeSlurm(), booter):
        request(state, "resume", "mithril-gpu-[3-4]")
        assert wait_for(lambda: len(booter.calls) == 2)
        assert sorted(b.quantity for b in market_bids(emu)) == [1, 1]
        request(state, "resume_fail", "mithril-gpu-[3-4]")
        assert wait_for(lambda: not live_bids(emu))
        assert {n.state for n in nodes(state).values()} == {"down"}


def test_the_jobs_limit_price_is_bid(emu, tmp_path):
    state = str(tmp_path / "state")
    slurm = FakeSlurm(scripts={7: "#!/bin/sh\n#SBATCH -p gpu -N 1\n#SFLOW --limit-price=$2.50/gpu-hr\nhostname\n"})
    with running(settings_for(state, emu.url), slurm, FakeBooter()):
        request(state, "resume", "mithril-gpu-1", resume_payload(7, "mithril-gpu-1"))
        assert wait_for(lambda: market_bids(emu))
        (bid,) = market_bids(emu)
        assert bid.limit_cents == 2000  # 8 GPUs at $2.50
        request(state, "resume_fail", "mithril-gpu-1")
        assert wait_for(lambda: not live_bids(emu))


def test_a_limit_below_the_market_is_given_back_before_slurm_gives_up(emu, tmp_path):
    state = str(tmp_path / "state")
    demand(emu, "$30.00", 32)  # every 8xh100 in the region is taken
    slurm = FakeSlurm()
    booter = FakeBooter()
    # ResumeTimeout 63 s, given back 60 s before it: after 3 s.
    with running(settings_for(state, emu.url, limit="$20.00/hr", resume_timeout=63, margin=60), slurm, booter):
        request(state, "resume", "mithril-gpu-[1-2]", resume_payload(5, "mithril-gpu-[1-2]"))
        assert wait_for(lambda: slurm.of("update_node"), timeout=60)
        ((_, names, fields),) = slurm.of("update_node")
        assert names == ("mithril-gpu-1", "mithril-gpu-2") and fields["State"] == "DOWN"
        assert fields["Reason"].startswith("BidOpen: "), fields
        assert wait_for(lambda: market_bids(emu) and not live_bids(emu)), market_bids(emu)
        assert booter.calls == []
        (group,) = groups(state)
        assert group.state == "timed_out" and group.reason == fields["Reason"]
        assert {n.reason for n in nodes(state).values()} == {fields["Reason"]}


def test_preemption_signals_requeues_then_powers_down(emu, tmp_path):
    state = str(tmp_path / "state")
    slurm = FakeSlurm(scripts={9: "#!/bin/sh\n#SBATCH -p gpu --signal=B:USR1@60\nsleep 100\n"})
    booter = FakeBooter()
    with running(settings_for(state, emu.url, limit="$10.00/hr"), slurm, booter):
        request(state, "resume", "mithril-gpu-1", resume_payload(9, "mithril-gpu-1"))
        assert wait_for(lambda: booter.calls)
        demand(emu, "$30.00", 32)  # outbid: the instance is taken back
        assert wait_for(lambda: slurm.of("update_node"), timeout=60), slurm.calls
        kinds = [c[0] for c in slurm.calls if c[0] != "update_job"]
        assert kinds == ["signal", "requeue", "update_node"], slurm.calls
        assert slurm.of("signal") == [("signal", 9, "USR1", True)]
        assert slurm.of("requeue") == [("requeue", 9)]
        ((_, names, fields),) = slurm.of("update_node")
        assert names == ("mithril-gpu-1",)
        assert fields == {"State": "POWER_DOWN_FORCE", "Reason": "preempted by the Mithril spot market"}
        assert wait_for(lambda: not live_bids(emu))


def test_a_preempted_job_has_its_grace_to_checkpoint_before_its_requeue(emu, tmp_path):
    state = str(tmp_path / "state")
    slurm = FakeSlurm(scripts={9: "#!/bin/sh\nsleep 100\n"}, jobs={9: "JobId=9 JobState=RUNNING"})
    booter = FakeBooter()
    with running(settings_for(state, emu.url, limit="$10.00/hr", preempt_grace=600), slurm, booter):
        request(state, "resume", "mithril-gpu-1", resume_payload(9, "mithril-gpu-1"))
        assert wait_for(lambda: booter.calls)
        demand(emu, "$30.00", 32)
        assert wait_for(lambda: slurm.of("signal"), timeout=60), slurm.calls
        assert slurm.of("signal") == [("signal", 9, "TERM", False)]  # no --signal: SIGTERM to every step
        time.sleep(1.0)  # turns pass while it still runs: nothing more is done to it
        assert slurm.of("requeue") == [] and live_bids(emu)  # the instance lasts the notice
        slurm.jobs[9] = "JobId=9 JobState=FAILED"  # it ended on its signal
        assert wait_for(lambda: slurm.of("requeue"), timeout=30), slurm.calls
        assert slurm.of("requeue") == [("requeue", 9)]
        assert slurm.of("update_node")[-1][2]["State"] == "POWER_DOWN_FORCE"
        assert wait_for(lambda: not live_bids(emu))


def test_a_service_killed_during_a_resume_places_no_second_bid(emu, tmp_path):
    state = str(tmp_path / "state")
    config = tmp_path / "burst.toml"
    config.write_text(settings_toml(state, emu.url))
    env = {**os.environ, "SFLOW_BURST_CONFIG": str(config), "MITHRIL_API_KEY": KEY,
           "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}
    request(state, "resume", "mithril-gpu-[1-2]", resume_payload(3, "mithril-gpu-[1-2]"))
    # Not a single bid yet: the service is killed as soon as its bid record is committed.
    child = subprocess.Popen([sys.executable, "-m", "sflow.burst.service"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: os.path.exists(store.db_path(state)) and bid_rows(state), timeout=60)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert not service_running(state)
    booter = FakeBooter()
    with running(settings_for(state, emu.url), FakeSlurm(), booter):
        assert wait_for(lambda: len(booter.calls) == 2)
        assert len(market_bids(emu)) == 1, market_bids(emu)
        assert len(bid_rows(state)) == 1
        request(state, "suspend", "mithril-gpu-[1-2]")
        assert wait_for(lambda: not live_bids(emu))
    assert len(market_bids(emu)) == 1


def test_a_second_service_for_the_same_state_is_refused(emu, tmp_path):
    from sflow.burst.service import BurstService
    from sflow.burst.settings import BurstError

    state = str(tmp_path / "state")
    with running(settings_for(state, emu.url), FakeSlurm(), FakeBooter()):
        assert wait_for(lambda: service_running(state))
        other = BurstService(settings_for(state, emu.url), slurm=FakeSlurm(), booter=FakeBooter())
        try:
            with pytest.raises(BurstError, match="already runs"):
                other.serve()
        finally:
            other.close()


def test_a_programs_probe_of_the_lock_does_not_turn_a_starting_service_away(emu, tmp_path):
    import fcntl

    from sflow.burst.programs import lock_path
    from sflow.burst.service import BurstService

    state = str(tmp_path / "state")
    service = BurstService(settings_for(state, emu.url), slurm=FakeSlurm(), booter=FakeBooter())
    probe = os.open(lock_path(state), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(probe, fcntl.LOCK_EX)  # a program's service_running() at the very moment the service starts
    stop = threading.Event()
    thread = threading.Thread(target=service.serve, args=(stop, 0.05), daemon=True)
    try:
        thread.start()
        time.sleep(0.2)
        os.close(probe)  # the probe lets go at once
        assert wait_for(lambda: service_running(state) or not thread.is_alive(), 10)
        assert thread.is_alive()  # it waited the probe out and runs
    finally:
        stop.set()
        thread.join(10)
        service.close()
